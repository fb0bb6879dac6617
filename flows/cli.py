"""The ``misterp`` command: run, re-run and validate tracking waves, a demo tracker, alerts.

Wiring like the flows, so it lives beside them. Prefect is imported only by the commands that
start a flow: ``misterp validate`` and ``misterp --version`` run without it. Every outcome has
one exit code (:class:`ExitCode`) and one line on stderr, chosen in one place
(:func:`exit_code_for`, :func:`failure_line`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows.logs import configure_logging
from flows.mmm_cli import mmm_app
from flows.outcome import (
    EXIT_CODE_MEANINGS,
    ExitCode,
    Invocation,
    conclude,
    exit_code_for,
    failure_line,
    hide_expected_tracebacks,
    output,
    quiet_prefect_shutdown,
    say,
)
from misterp import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from misterp.mrp.config import WaveConfig
    from misterp.mrp.prepare import PreparedWave
    from misterp.mrp.records import WaveRunSummary

__all__ = [
    "EXIT_CODE_MEANINGS",
    "ExitCode",
    "Invocation",
    "app",
    "exit_code_for",
    "failure_line",
    "main",
    "summary_of",
]

logger = logging.getLogger("misterp.cli")

#: Models per fit-batch flow run unless --batch-size says otherwise; equals
#: ``flows.dispatch.DEFAULT_BATCH_SIZE`` (a test keeps them equal), repeated here so that
#: ``--help`` can show it without importing Prefect.
DEFAULT_BATCH_SIZE = 15


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _rerun_command(wave: str | None, config: str | None, output: str | None = None) -> str:
    """``misterp rerun`` of a wave, with the config and output the failed command used."""
    parts = ["misterp rerun", f"--wave {wave or 'WAVE'}"]
    if config:
        parts.append(f"--config {config}")
    if output:
        parts.append(f"--output {output}")
    return " ".join(parts)


def _run_command(wave: str, config: str, input: str | None, output: str | None) -> str:
    """``misterp run`` of a wave again, with the overrides the failed run was given."""
    parts = ["misterp run", f"--wave {wave}", f"--config {config}"]
    if input:
        parts.append(f"--input {input}")
    if output:
        parts.append(f"--output {output}")
    return " ".join(parts)


def _resume_failed_run(
    wave: str, config: str, input: str | None, output: str | None, resolved: WaveConfig
) -> Callable[[BaseException], str]:
    """After a failed ``misterp run``: ``rerun`` if the wave was staged, else ``run`` again.

    ``rerun`` fits from what the run staged and answers "never prepared" when nothing was (a
    run that failed before staging, or a store that lost its contents); ``run`` always works
    (it reuses the converged fits in the store), so it is the answer whenever the store cannot
    tell, and after an outage the store is not asked at all.
    """

    def resume(exc: BaseException) -> str:
        from misterp.mrp.staging import is_staged
        from misterp.storage import ResultStore, StoreUnavailable

        again = _run_command(wave, config, input, output)
        if isinstance(exc, StoreUnavailable):
            return again
        store = ResultStore(resolved.output, resolved.storage_options)
        return _rerun_command(wave, config, output) if is_staged(store, wave) else again

    return resume


def summary_of(state: Any) -> WaveRunSummary:
    """The wave summary of a finished run, also of one that ended Failed after publishing.

    A run that raised (invalid input, a missing staged wave) raises that exception here.
    """
    from misterp.mrp.records import WaveRunSummary

    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, WaveRunSummary):
        raise RuntimeError(f"wave run ended {state.type.value} without a result: {state.message}")
    return result


def _report(summary: WaveRunSummary) -> ExitCode:
    """Say where the wave went; the last line is its headline, on stderr when flagged."""
    from misterp.health import HEALTH_FILE

    quiet_prefect_shutdown()
    say(
        f"wave {summary.wave} written to {summary.output} "
        f"({summary.fitted} fitted, {summary.reused} reused)"
    )
    if summary.counts.healthy:
        say(summary.headline, exit_code=ExitCode.OK)
        return ExitCode.OK
    say(
        f"{summary.headline}; see {summary.output}/{HEALTH_FILE}",
        err=True,
        exit_code=ExitCode.FLAGGED,
    )
    return ExitCode.FLAGGED


# -- the command tree ------------------------------------------------------------------------

_EXIT_CODES_HELP = "**Exit codes**\n\n" + "\n".join(
    f"- {int(code)}: {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
)

app = typer.Typer(
    name="misterp",
    help="Bayesian brand tracking with MRP: run, re-run and validate tracking waves.\n\n"
    "Logs go to stderr, results to the wave's output URI; the last line says how the wave "
    "ended.\n\nExample: misterp run --config wave.yaml --wave 2026-11",
    epilog=_EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
alerts_app = typer.Typer(
    help="Alerts for fits and waves that need attention (on a Prefect server).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")
app.add_typer(mmm_app, name="mmm")
# More groups are Typers added here the way `alerts` and `mmm` are. `misterp waves` (the
# catalog) and `misterp report` are plain commands below.


class LogLevel(StrEnum):
    """Levels ``--log-level`` accepts."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"misterp {__version__}")
        raise typer.Exit(int(ExitCode.OK))


@app.callback()
def _main(
    ctx: typer.Context,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            "--log-level",
            case_sensitive=False,
            envvar="MISTERP_LOG_LEVEL",
            help="Level of misterp's and Prefect's logs.",
        ),
    ] = LogLevel.INFO,
    log_json: Annotated[
        bool,
        typer.Option(
            "--log-json",
            envvar="MISTERP_LOG_JSON",
            help="Logs as one JSON object per line (for pods and log collectors).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # No docstring: Typer would show it as the top-level help instead of ``help=`` above.
    output.json_lines = log_json
    configure_logging(
        log_level.value, log_json, console=ctx.invoked_subcommand in ("validate", "import")
    )
    # With no PREFECT_API_URL, Prefect starts a temporary local server; its first start
    # (database migrations) takes longer than the 20 s default on a small machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


ConfigOption = Annotated[
    str, typer.Option("--config", help="Path or URI of the wave's YAML config.", show_default=False)
]
FitDeploymentOption = Annotated[
    str | None,
    typer.Option(
        "--fit-deployment",
        help="Run the fits as flow runs of this fit-batch deployment, e.g. fit-batch/fit-batch. "
        "Default: worker processes of this run.",
        show_default=False,
    ),
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Models per fit-batch flow run.")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Take the wave over even if another run holds its lock (only when that run is "
        "dead: two live runs of one wave overwrite each other's results).",
    ),
]


@app.command(
    epilog="Example: misterp run --config wave.yaml --wave 2026-11 "
    "--fit-deployment fit-batch/fit-batch",
)
def run(
    config: ConfigOption,
    input: Annotated[
        str | None,
        typer.Option("--input", help="Override the config's input URI.", show_default=False),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", help="Override the config's output URI.", show_default=False),
    ] = None,
    wave: Annotated[
        str | None,
        typer.Option(
            "--wave",
            help="Wave id, substituted for {wave} in the URIs. Default: the config's 'wave', "
            "else the current month (YYYY-MM).",
            show_default=False,
        ),
    ] = None,
    fit_deployment: FitDeploymentOption = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    refit_all: Annotated[
        bool,
        typer.Option("--refit-all", help="Refit converged models whose inputs did not change."),
    ] = False,
    force: ForceOption = False,
) -> None:
    """Run a wave from a YAML config: validate, plan, fit and publish.

    Converged fits already in the store with the same spec, data and settings are reused, so
    running a wave again refits only what is missing, failed or not converged.
    """
    invocation = Invocation("run", rerun=_rerun_command(wave, config, output))

    def body() -> ExitCode:
        from misterp.mrp.config import load_config
        from misterp.mrp.prepare import default_wave_id

        # Check the config before Prefect starts, so a typo fails in a second, not a minute.
        # Without --wave the flow takes the month it starts in, as default_wave_id does.
        parsed = load_config(config)
        wave_id = wave or parsed.wave or default_wave_id()
        resolved = parsed.resolved(wave=wave_id, input=input, output=output)
        invocation.stores = (resolved.input, resolved.output)
        invocation.rerun = _run_command(wave_id, config, input, output)
        invocation.resume = _resume_failed_run(wave_id, config, input, output, resolved)
        from flows.runtime import local_prefect_api
        from flows.wave import run_wave  # Prefect: only now, after logging is configured

        hide_expected_tracebacks()
        with local_prefect_api():  # a temporary API that dies with this process
            # its path, with the overrides: a run parameter is never the config, whose
            # storage options may hold credentials (flows.config_flow)
            state = run_wave(
                config=config,
                input=input,
                output=output,
                wave=wave_id,
                fit_deployment=fit_deployment,
                batch_size=batch_size,
                refit_all=refit_all,
                force=force,
                return_state=True,
            )
        return _report(summary_of(state))

    conclude(invocation, body)


@app.command(
    epilog="Example: misterp rerun --wave 2026-11 --config wave.yaml",
)
def rerun(
    wave: Annotated[str, typer.Option("--wave", help="Wave id to re-run.", show_default=False)],
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="The wave's YAML config (for its output and storage options).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", help="Results root URI the wave was written to.", show_default=False
        ),
    ] = None,
    fit_deployment: FitDeploymentOption = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    force: ForceOption = False,
) -> None:
    """Refit only the missing, failed and not converged models of a wave, then publish it.

    Works from what the first run staged in the output; the raw input is not read again.
    Needs --config or --output.
    """
    invocation = Invocation(
        "rerun", stores=(output,) if output else (), rerun=_rerun_command(wave, config, output)
    )

    def body() -> ExitCode:
        from misterp.config import ConfigError
        from misterp.mrp.config import check_wave_id, load_config

        if output is None and config is None:
            raise ConfigError("misterp rerun needs --output URI or --config FILE (for its output)")
        check_wave_id(wave)
        if config is not None:  # check it before Prefect starts
            resolved = load_config(config).resolved(wave=wave, output=output)
            invocation.stores = (resolved.output,)
        from flows.runtime import local_prefect_api
        from flows.wave import rerun_wave

        hide_expected_tracebacks()
        with local_prefect_api():  # a temporary API that dies with this process
            state = rerun_wave(
                wave=wave,
                output=output,
                config=config,
                fit_deployment=fit_deployment,
                batch_size=batch_size,
                force=force,
                return_state=True,
            )
        return _report(summary_of(state))

    conclude(invocation, body)


@app.command(
    epilog="Example: misterp validate --config wave.yaml --wave 2026-11",
)
def validate(
    config: ConfigOption,
    wave: Annotated[
        str | None,
        typer.Option(
            "--wave",
            help="Wave id, substituted for {wave} in the input URI. Default: the config's "
            "'wave', else the current month (YYYY-MM).",
            show_default=False,
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option("--input", help="Override the config's input URI.", show_default=False),
    ] = None,
) -> None:
    """Check a wave's config and input files without fitting anything (and without Prefect).

    Reads and validates every input file, plans the models and aggregates their cells, as a run
    would before its first fit. Exit 0 with a summary, or 2 with every problem and its fix.
    """
    invocation = Invocation("validate", rerun=f"misterp validate --config {config}")

    def body() -> ExitCode:
        from misterp.mrp.config import load_config
        from misterp.mrp.prepare import default_wave_id, prepare_wave

        parsed = load_config(config)
        resolved = parsed.resolved(wave=wave or parsed.wave or default_wave_id(), input=input)
        invocation.stores = (resolved.input,)
        prepared = prepare_wave(resolved)
        from misterp.storage import ResultStore
        from misterp.tracking.smoothed import check_smoothing_window

        store = ResultStore(resolved.output, resolved.storage_options)
        check_smoothing_window(store, prepared.wave_id, resolved.tracking)
        say(_valid_line(prepared, resolved), exit_code=ExitCode.OK)
        return ExitCode.OK

    conclude(invocation, body)


def _valid_line(prepared: PreparedWave, config: WaveConfig) -> str:
    """``wave 2026-11 is valid: 3,000 respondents, 2 markets (DE, FR), ...``: validate's line."""
    groups = ", ".join(["all", *config.target_groups])
    respondents = (
        f"{_count(prepared.n_respondents, 'respondent')}, "
        if prepared.n_respondents is not None
        else ""
    )
    return (
        f"wave {prepared.wave_id} is valid: {respondents}"
        f"{_count(len(prepared.layouts), 'market')} ({', '.join(prepared.layouts)}), "
        f"{_count(len(prepared.specs), 'model')} planned, target groups: {groups}"
    )


@app.command(
    "import",
    epilog="Example: misterp import --mapping examples/mapping.yaml --source "
    "examples/fieldwork.sav --wave 2026-12 --output import-example/waves",
)
def import_survey(
    mapping: Annotated[
        str,
        typer.Option(
            "--mapping",
            help="The mapping YAML: columns, recodes, questions, the config and census.",
            show_default=False,
        ),
    ],
    source: Annotated[
        str,
        typer.Option(
            "--source", help="The survey export: .sav, .zsav, .csv or .xlsx.", show_default=False
        ),
    ],
    wave: Annotated[str, typer.Option("--wave", help="Wave id of the import.", show_default=False)],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            help="Folder that gets the wave folder OUTPUT/WAVE/ (the config's input without "
            "/{wave}).",
            show_default=False,
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Dry run: print respondents per market, the questions and every recoding "
            "table, validate, write nothing.",
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite the input files of a wave imported before."),
    ] = False,
) -> None:
    """Turn a survey export (SPSS or wide CSV/XLSX) into a validated wave folder.

    Recodes the export as the mapping says, writes respondents, answers and questions (with
    labels) and the mapping's census, and validates the wave as misterp validate does. Fits
    nothing and needs no Prefect. Nothing is written unless the whole wave is valid.
    """
    invocation = Invocation(
        "import",
        stores=(output,),
        rerun=f"misterp import --mapping {mapping} --source {source} --wave {wave} "
        f"--output {output}",
    )

    def body() -> ExitCode:
        from misterp.mrp.config import check_wave_id
        from misterp.mrp.survey_import import ImportedWave
        from misterp.mrp.survey_import import import_survey as run_import

        def show(imported: ImportedWave, name: str) -> None:
            if check:
                say(imported.check_text(name))

        done = run_import(
            mapping,
            source,
            check_wave_id(wave),
            output,
            check=check,
            replace=replace,
            on_built=show,
        )
        line = _valid_line(done.prepared, done.config)
        if done.written is None:
            say(f"{line}; nothing written (--check)", exit_code=ExitCode.OK)
            return ExitCode.OK
        say(f"{line}; written to {done.written}")
        say(
            f"next: misterp run --config {done.config_uri} --wave {wave}"
            + ("" if done.reads_written else f" --input {done.written}"),
            exit_code=ExitCode.OK,
        )
        return ExitCode.OK

    conclude(invocation, body)


@app.command(
    epilog="Example: misterp demo --output demo-results --markets DE,FR --brands 3 --waves 3",
)
def demo(
    output: Annotated[
        Path, typer.Option("--output", help="Folder for the input and the results.")
    ] = Path("demo-results"),
    markets: Annotated[
        str, typer.Option("--markets", help="Comma-separated market codes.")
    ] = "DE,FR",
    brands: Annotated[
        int, typer.Option("--brands", min=1, help="Number of brands per market.")
    ] = 3,
    respondents: Annotated[
        int, typer.Option("--respondents", min=1, help="Respondents per market and wave.")
    ] = 1500,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated waves.")] = 7,
    n_waves: Annotated[
        int,
        typer.Option(
            "--waves", min=1, help="Consecutive monthly waves; the last one has true changes."
        ),
    ] = 3,
) -> None:
    """Simulate monthly waves with known truth and changes, track them, compare with the truth.

    The last wave has a few declared true changes; the others are the same population. Prints
    the last wave's estimates and its changes against the previous wave beside the truth. Needs
    no cluster and no Prefect server (one temporary local API serves every wave). Exits 1 only
    when a fit failed: on simulated data a not converged fit is part of what the demo shows.
    """
    root = output.resolve()
    invocation = Invocation(
        "demo",
        stores=(str(root / "results"),),
        rerun=_rerun_command(None, str(root / "demo-config.yaml")),
    )
    conclude(
        invocation, lambda: _demo(root, markets, brands, respondents, seed, n_waves, invocation)
    )


def _demo(
    output: Path,
    markets: str,
    brands: int,
    respondents: int,
    seed: int,
    n_waves: int,
    invocation: Invocation,
) -> ExitCode:
    """Simulate, run and track the demo waves, then print the last one beside the truth."""
    import pandas as pd
    import yaml

    from flows.demo import (
        DEMO_AUDIENCE,
        DEMO_PROFILE,
        SHOWN_GROUPS,
        audience_sizes,
        audience_table,
        demo_wave_ids,
        plan_demo_changes,
        rule_in_force,
        score_changes,
        summarise_scores,
    )
    from misterp.mrp.simulate import WaveTruthSpec, simulate_wave, simulate_waves
    from misterp.mrp.wave import AUDIENCES_FILE
    from misterp.reporting.write import index_location
    from misterp.storage import ResultStore
    from misterp.tracking.changes import CHANGES_FILE

    wave_ids = demo_wave_ids(n_waves)
    last = wave_ids[-1]
    brand_names = tuple(f"brand{i:02d}" for i in range(1, brands + 1))
    spec = WaveTruthSpec(
        markets=tuple(markets.split(",")),
        brands=brand_names,
        n_respondents=respondents,
        rare_brand=brand_names[-1],  # the last brand is the small, rarely known one
        profile=DEMO_PROFILE,  # category users: an audience beyond the census
    )
    declared = (
        plan_demo_changes(simulate_wave(seed, spec).truth, brand_names, last) if n_waves > 1 else []
    )
    series = simulate_waves(seed, spec, wave_ids, declared)
    for wave_id, simulated in series.waves.items():
        simulated.write(str(output / "input" / wave_id), include_truth=True)
    results = str(output / "results")
    config = series.waves[last].config(str(output / "input" / "{wave}"), results)
    config["tracking"] = {"period": "month"}  # wave ids are months: changes and trends
    config_path = output / "demo-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    moves = ", ".join(
        f"{c.question_id} {c.delta * 100:+.0f} pts in {c.target_group} ({c.market})"
        for c in declared
    )
    say(
        f"demo: {n_waves} monthly waves ({', '.join(wave_ids)}), {respondents:,} respondents "
        f"per market each; true changes in {last}: {moves or 'none'}; config {config_path}"
    )

    from flows.runtime import local_prefect_api
    from flows.wave import run_wave

    hide_expected_tracebacks()
    started = time.perf_counter()
    summaries = []
    with local_prefect_api():  # one temporary API for every wave; it dies with this process
        for wave_id in wave_ids:
            invocation.rerun = _rerun_command(wave_id, str(config_path))
            state = run_wave(config=str(config_path), wave=wave_id, return_state=True)
            summaries.append(summary_of(state))
            say(f"{summaries[-1].headline} ({time.perf_counter() - started:.0f} s so far)")
    seconds = time.perf_counter() - started
    invocation.rerun = _rerun_command(last, str(config_path))

    store = ResultStore(results)
    truth = series.waves[last].truth
    estimates = store.read_parquet(f"{last}/estimates.parquet")
    table = estimates.merge(
        truth, on=["market", "question_id", "option", "target_group"], how="left"
    )
    columns = ["market", "question_id", "option", "true_value", "mean", "q05", "q95"]
    columns += ["raw_mean", "n", "status"]
    with pd.option_context("display.width", 200, "display.max_rows", 400):
        say(f"\nwave {last}, whole population: estimates beside the truth")
        say(table.loc[table["target_group"] == "all", columns].round(3).to_string(index=False))
        say(
            f"\nwave {last}, audience {DEMO_AUDIENCE} (a profile the census does not count): "
            "estimates beside the truth, raking within the audience and its raw share"
        )
        say(audience_table(estimates, truth, DEMO_AUDIENCE).round(3).to_string(index=False))
    if store.exists(f"{last}/{AUDIENCES_FILE}"):
        sizes = store.read_parquet(f"{last}/{AUDIENCES_FILE}")
        for line in audience_sizes(sizes, series.waves[last].audience_truth, DEMO_AUDIENCE):
            say(line)
    inside = ((table["q05"] <= table["true_value"]) & (table["true_value"] <= table["q95"])).mean()
    mrp_error = (table["mean"] - table["true_value"]).abs().mean()
    raw_error = (table["raw_mean"] - table["true_value"]).abs().mean()
    say(
        f"all target groups: 90% intervals cover the truth in {inside:.0%} of {len(table)} "
        f"estimates; mean abs error MRP {mrp_error:.3f} vs raw sample share {raw_error:.3f}"
    )

    published = [w for w in wave_ids[1:] if store.exists(f"{w}/{CHANGES_FILE}")]
    for wave_id in sorted(set(wave_ids[1:]) - set(published)):
        say(f"wave {wave_id} has no {CHANGES_FILE}: see {store.uri(f'{wave_id}/tracking.json')}")
    if published:
        changes = pd.concat([store.read_parquet(f"{w}/{CHANGES_FILE}") for w in published])
        scored = score_changes(changes, series.true_changes)
        shown = scored[(scored["wave"] == last) & scored["target_group"].isin(SHOWN_GROUPS)]
        shown = shown.assign(declared=shown["declared"].map({True: "*", False: ""}))
        columns = ["market", "question_id", "option", "target_group", "declared", "true_change"]
        columns += ["mean", "lower", "upper", "p_up", "p_down", "p_error", "flag"]
        with pd.option_context("display.width", 200, "display.max_rows", 400):
            say(
                f"\nchanges {wave_ids[-2]} -> {last} beside the true change "
                f"(* declared; flag rule in force: {rule_in_force(shown)})"
            )
            say(shown[columns].round(3).to_string(index=False))
        for wave_id in published:
            score = summarise_scores(scored[scored["wave"] == wave_id])
            say(f"{wave_id} vs previous: {score.line()}")
    say(
        f"\n{n_waves} waves, {sum(s.counts.models for s in summaries)} models in {seconds:.0f} s; "
        f"results: {results}/WAVE/ (changes.parquet per wave); trends: "
        f"{store.uri('trends.parquet')}; report of {last}: {index_location(store, last)}"
    )
    failed = [s.headline for s in summaries if s.counts.failed]
    if failed:
        say("; ".join(failed), err=True, exit_code=ExitCode.FLAGGED)
        return ExitCode.FLAGGED
    say(summaries[-1].headline, exit_code=ExitCode.OK)
    return ExitCode.OK


@app.command(
    epilog="Example: misterp waves --output s3://brand-tracker/misterp",
)
def waves(
    output: Annotated[
        str,
        typer.Option(
            "--output", help="Results root URI the waves are written to.", show_default=False
        ),
    ],
) -> None:
    """List the waves under a results root in period order, one line each (without Prefect).

    A complete wave (its manifest published) shows its model count and health; an incomplete
    one is named as such: it is running or stopped, and changes and trends never use it.
    """
    invocation = Invocation("waves", stores=(output,))

    def body() -> ExitCode:
        from misterp.storage import ResultStore
        from misterp.tracking.catalog import list_waves

        entries = list_waves(ResultStore(output))
        if not entries:
            say(f"no waves in {output}")
        for entry in entries:
            say(entry.line())
        complete = sum(entry.complete for entry in entries)
        if entries:
            say(f"{complete} of {_count(len(entries), 'wave')} complete in {output}")
        return ExitCode.OK

    conclude(invocation, body)


@app.command(
    epilog="Example: misterp report --output s3://brand-tracker/misterp --wave 2026-11",
)
def report(
    output: Annotated[
        str,
        typer.Option(
            "--output", help="Results root URI the wave was written to.", show_default=False
        ),
    ],
    wave: Annotated[
        str, typer.Option("--wave", help="Wave id of a complete wave.", show_default=False)
    ],
    trend_waves: Annotated[
        int | None,
        typer.Option(
            "--trend-waves",
            min=1,
            help="Waves in the trend charts. Default: the wave's reporting.trend_waves (12).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a published wave's report to OUTPUT/WAVE/report/ and print where index.html is.

    The report (index.html, tables.xlsx and CSVs) is written after every published wave; this
    writes it again, e.g. for a wave published before reports existed. Without Prefect.
    """
    invocation = Invocation("report", stores=(output,))

    def body() -> ExitCode:
        from misterp.mrp.config import check_wave_id
        from misterp.reporting.write import index_location, write_report
        from misterp.storage import ResultStore

        check_wave_id(wave)
        store = ResultStore(output)
        write_report(store, wave, trend_waves=trend_waves)
        say(index_location(store, wave), exit_code=ExitCode.OK)
        return ExitCode.OK

    conclude(invocation, body)


@alerts_app.command(
    "install",
    epilog="Example: PREFECT_API_URL=http://prefect:4200/api misterp alerts install "
    "--webhook https://hooks.slack.com/services/T000/B000/XXXX",
)
def alerts_install(
    webhook: Annotated[
        str,
        typer.Option(
            "--webhook",
            help="URL to POST alerts to (Slack incoming webhooks work).",
            show_default=False,
        ),
    ],
    per_fit: Annotated[
        bool,
        typer.Option(
            "--per-fit/--no-per-fit",
            help="Also alert for every fit that needs attention, not only once per wave.",
        ),
    ] = True,
) -> None:
    """Create the webhook block and the automations on the Prefect server (PREFECT_API_URL).

    Running it again replaces them.
    """

    def body() -> ExitCode:
        from prefect.settings import PREFECT_API_URL

        from flows.alerts import FIT_AUTOMATION, WAVE_AUTOMATION, install_alerts
        from misterp.config import ConfigError

        if not PREFECT_API_URL.value():
            raise ConfigError(
                "PREFECT_API_URL is not set: alerts live on a Prefect server; point the CLI at "
                "it (export PREFECT_API_URL=http://HOST:4200/api) and run this again"
            )
        ids = install_alerts(webhook, per_fit=per_fit)
        names = [FIT_AUTOMATION, WAVE_AUTOMATION] if per_fit else [WAVE_AUTOMATION]
        say(f"installed on {PREFECT_API_URL.value()}: automations {', '.join(names)}")
        say(f"webhook block misterp-alerts ({ids['webhook_block']}) -> {webhook}")
        return ExitCode.OK

    conclude(Invocation("alerts install"), body)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misterp`` command; returns the exit code."""
    try:
        app(args=argv, prog_name="misterp")
    except SystemExit as exc:
        if exc.code is None:
            return int(ExitCode.OK)
        return exc.code if isinstance(exc.code, int) else int(ExitCode.INVALID)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
