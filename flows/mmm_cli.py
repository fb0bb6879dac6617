"""``misterp mmm``: run media-mix models per market, and a demo on simulated data.

A Typer sub-app registered in :mod:`flows.cli`. Like ``misterp run``, a run goes through its
Prefect flow (``mmm``, on a temporary local API unless ``PREFECT_API_URL`` is set), so it
fans the markets out and shows health and the report exactly as a deployment run does. Exit
codes and failure lines are the tracker's (:mod:`flows.outcome`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flows.outcome import ExitCode, Invocation, conclude, say

if TYPE_CHECKING:
    from prefect import State

    from flows.mmm_flow import MMMRunSummary

__all__ = ["DEMO_MARKETS", "mmm_app"]

#: Market ids of the demo, in order; ``--markets N`` takes the first N.
DEMO_MARKETS: tuple[str, ...] = ("DE", "FR", "UK", "US", "IT", "ES", "NL", "PL")

mmm_app = typer.Typer(
    help="Media-mix models per market (pymc-marketing): run from a config, or a demo.",
    no_args_is_help=True,
)


def report_lines(summary: MMMRunSummary) -> ExitCode:
    """Say where the run went; the last line is its headline, on stderr when flagged."""
    say(f"media-mix run {summary.run} written to {summary.output}")
    if summary.report_status == "written":
        say(f"report: {summary.report_index}")
    elif summary.report_status is not None:
        say(f"report failed ({summary.report_message}); the run is published", err=True)
    if summary.counts.healthy:
        say(summary.headline, exit_code=ExitCode.OK)
        return ExitCode.OK
    say(
        f"{summary.headline}; flagged: {', '.join(summary.flagged)} "
        f"(see {summary.output}/diagnostics.parquet)",
        err=True,
        exit_code=ExitCode.FLAGGED,
    )
    return ExitCode.FLAGGED


def _summary_of(state: State[Any]) -> MMMRunSummary:
    """The summary of a finished media-mix flow run, also of one that ended Failed.

    A run that raised (invalid input, a locked run) raises that exception here.
    """
    from flows.mmm_flow import MMMRunSummary

    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, MMMRunSummary):
        raise RuntimeError(
            f"media-mix run ended {state.type.value} without a result: {state.message}"
        )
    return result


def run_through_prefect(config: str, **options: object) -> MMMRunSummary:
    """Run the ``mmm`` flow, as a deployment would, on a temporary local API if none is set.

    The command line runs what a deployment runs (the same tasks, fan-out, artifacts, events
    and alerts), so a run started by hand reads like a scheduled one in the UI.
    """
    from flows.mmm_flow import run_mmm_flow
    from flows.outcome import hide_expected_tracebacks, quiet_prefect_shutdown
    from flows.runtime import local_prefect_api

    hide_expected_tracebacks()
    with local_prefect_api():  # a temporary API that dies with this process
        state = run_mmm_flow(config=config, return_state=True, **options)
    quiet_prefect_shutdown()
    return _summary_of(state)


def _progress(record: object) -> None:
    """One line per fitted market."""
    diagnostics = getattr(record, "diagnostics", None)
    if diagnostics is None:
        return
    row = diagnostics()
    say(
        f"  {row['market']}: {row['status']} after {row['attempts']} attempt(s), "
        f"{row['seconds']:.0f} s, R-hat {row['r_hat_max'] or float('nan'):.3f}, "
        f"divergences {row['divergences']}"
    )


@mmm_app.command(
    "run",
    epilog="Example: misterp mmm run --config mmm.yaml --output s3://bucket/results",
)
def run_command(
    config: Annotated[
        str,
        typer.Option("--config", help="Path or URI of the run's YAML config.", show_default=False),
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", help="Override the config's output URI.", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Markets fitted at once (default: the config's, else one per 2 cores).",
            show_default=False,
        ),
    ] = None,
    refit_all: Annotated[
        bool,
        typer.Option("--refit-all", help="Refit converged markets whose inputs did not change."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take the run over even if another run of the same run id holds its lock "
            "(only when that run is dead: two live runs overwrite each other's results).",
        ),
    ] = False,
    fit_deployment: Annotated[
        str | None,
        typer.Option(
            "--fit-deployment",
            help="flow/deployment name of an mmm-fit-batch deployment to fit the markets on "
            "(default: worker processes of this run).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Markets per mmm-fit-batch flow run."),
    ] = 1,
) -> None:
    """Validate the input, fit one media-mix model per market and publish (manifest last).

    A re-run of the same run id reuses every converged market whose data and settings did not
    change. Exit 0 when every market converged, 1 when some are flagged, 2 on invalid input,
    4 while another run of the same run id holds its lock (``--force`` takes it over).
    """
    invocation = Invocation("mmm run", rerun=f"misterp mmm run --config {config}")

    def body() -> ExitCode:
        # Check the config before Prefect starts, so a typo fails in a second, not a minute.
        from misterp.mmm.config import load_mmm_config

        parsed = load_mmm_config(config)
        if output is not None:
            parsed = parsed.model_copy(update={"output": output})
        invocation.stores = (parsed.input, parsed.output)
        summary = run_through_prefect(  # its path: a run parameter is never the config
            config,
            output=output,
            workers=workers,
            refit_all=refit_all,
            fit_deployment=fit_deployment,
            batch_size=batch_size,
            force=force,
        )
        return report_lines(summary)

    conclude(invocation, body)


@mmm_app.command(
    "report",
    epilog="Example: misterp mmm report --output s3://brand-tracker/misterp --run 2025-12-22",
)
def report_command(
    output: Annotated[
        str,
        typer.Option(
            "--output", help="Results root URI the run was written to.", show_default=False
        ),
    ],
    run: Annotated[
        str, typer.Option("--run", help="Run id of a published run.", show_default=False)
    ],
) -> None:
    """Write a published run's report to OUTPUT/mmm/RUN/report/ and print where index.html is.

    The report (index.html and CSVs) is written after every published run; this writes it
    again from what the run published, e.g. after an upgrade. Nothing is refitted. Exit 0 when
    written, 2 for an unknown or unpublished run, 3 when writing failed.
    """
    invocation = Invocation(
        "mmm report", stores=(output,), rerun=f"misterp mmm report --output {output} --run {run}"
    )

    def body() -> ExitCode:
        from misterp.reporting.mmm_report import check_published_run, update_mmm_report
        from misterp.storage import ResultStore

        store = ResultStore(output)
        outcome = update_mmm_report(store, check_published_run(store, run))
        if outcome.status == "written" and outcome.index is not None:
            say(outcome.index, exit_code=ExitCode.OK)
            return ExitCode.OK
        # update_mmm_report never raises (it records report.json); say its failure the way
        # conclude says a crash: one line, what failed and the command to run again.
        reason = outcome.message.strip().splitlines()[0] if outcome.message.strip() else ""
        say(
            f"misterp {invocation.command} crashed: {reason}; re-run with: {invocation.rerun}",
            err=True,
            exit_code=ExitCode.CRASHED,
        )
        return ExitCode.CRASHED

    conclude(invocation, body)


@mmm_app.command(
    "demo",
    epilog="Example: misterp mmm demo --output mmm-demo --markets 2",
)
def demo_command(
    output: Annotated[
        Path, typer.Option("--output", help="Folder for the input and the results.")
    ] = Path("mmm-demo"),
    markets: Annotated[
        int, typer.Option("--markets", min=1, max=len(DEMO_MARKETS), help="Markets to simulate.")
    ] = 2,
    channels: Annotated[
        int, typer.Option("--channels", min=1, max=5, help="Channels per market.")
    ] = 4,
    weeks: Annotated[int, typer.Option("--weeks", min=60, help="Weeks per market.")] = 156,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated data.")] = 7,
) -> None:
    """Simulate weekly media data with a known truth, fit it, and compare ROAS with the truth.

    Prints each market's ROAS per channel beside the true ROAS over the same fitted weeks,
    with the 90% interval and whether it covers the truth.
    """
    root = output.resolve()
    invocation = Invocation("mmm demo", stores=(str(root / "results"),))
    conclude(invocation, lambda: _demo(root, markets, channels, weeks, seed, invocation))


def _demo(
    root: Path, n_markets: int, n_channels: int, n_weeks: int, seed: int, invocation: Invocation
) -> ExitCode:
    import pandas as pd
    import yaml

    from flows.mmm_flow import run_summary
    from misterp.mmm.config import MMMConfig
    from misterp.mmm.simulate import simulate_mmm
    from misterp.pipeline.mmm import run_mmm

    simulated = simulate_mmm(
        seed, markets=DEMO_MARKETS[:n_markets], n_channels=n_channels, n_weeks=n_weeks
    )
    simulated.write(root / "input", include_truth=True)
    config = MMMConfig(input=str(root / "input"), output=str(root / "results"), controls=["price"])
    config_path = root / "mmm-config.yaml"
    config_path.write_text(
        yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    )
    invocation.rerun = f"misterp mmm run --config {config_path}"
    say(
        f"mmm demo: {n_markets} market(s) x {n_channels} channels x {n_weeks} weeks, spend in "
        f"thousands, KPI ~100,000 a week; config {config_path}"
    )
    started = time.perf_counter()
    # In this process, the pipeline's inline path: fits from the prepared inputs in memory, as
    # the demo always has (a worker's fit of the staged inputs is the same posterior, not the
    # same draws: see ARCHITECTURE.md), so the demo's numbers at a seed stay what they were.
    outcome = run_mmm(config, progress=_progress)
    summary = run_summary(outcome)
    roas = outcome.roas
    fitted = sorted(simulated.kpi["date"].unique())[: n_weeks - config.holdout_weeks]
    truth = simulated.roas([pd.Timestamp(d) for d in fitted])
    table = roas.merge(
        truth[["market", "channel", "roas"]], on=["market", "channel"], suffixes=("", "_true")
    )
    table["covered"] = (table["roas_lower"] <= table["roas_true"]) & (
        table["roas_true"] <= table["roas_upper"]
    )
    table["error"] = table["roas"] / table["roas_true"] - 1
    columns = ["market", "channel", "spend_share", "roas_true", "roas", "roas_lower"]
    columns += ["roas_upper", "error", "covered", "marginal_roas", "status"]
    with pd.option_context("display.width", 200):
        say("\nROAS (KPI per unit of spend) over the fitted weeks, beside the truth")
        say(table[columns].round(3).to_string(index=False))
    say(
        f"\n90% intervals cover the true ROAS for {int(table['covered'].sum())} of {len(table)} "
        f"channels; mean abs error {table['error'].abs().mean():.1%}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    return report_lines(summary)
