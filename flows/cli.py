"""``misterp`` command line: run a wave from a config, or a synthetic demo wave end to end.

The CLI is wiring like the flows, so it lives beside them; the core stays importable without
Prefect.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from misterp.records import WaveRunSummary


def _run(args: argparse.Namespace) -> int:
    from flows.wave import read_config, run_wave
    from misterp.config import ConfigError
    from misterp.mrp.specs import FormulaError
    from misterp.mrp.validation import InputValidationError

    try:
        # Check the config before Prefect starts, so a typo fails in a second, not a minute.
        # Without --wave the flow takes the month of its (scheduled) start.
        read_config(args.config).resolved(
            wave=args.wave or "0000-00", input=args.input, output=args.output
        )
        summary = summary_of(
            run_wave(
                config=args.config,
                input=args.input,
                output=args.output,
                wave=args.wave,
                fit_deployment=args.fit_deployment,
                batch_size=args.batch_size,
                refit_all=args.refit_all,
                return_state=True,
            )
        )
    except (InputValidationError, ConfigError, FormulaError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return _report(summary)


def summary_of(state: Any) -> WaveRunSummary:
    """The wave summary of a finished run, also of one that ended Failed after publishing.

    A run that raised (invalid input, a missing staged wave) raises that exception here.
    """
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, WaveRunSummary):
        raise RuntimeError(f"wave run ended {state.type.value} without a result: {state.message}")
    return result


def _report(summary: WaveRunSummary) -> int:
    """Print the outcome; exit 0 when every model converged, 1 when some need attention."""
    print(
        f"{summary.headline}; written to {summary.output} "
        f"({summary.fitted} fitted, {summary.reused} reused)"
    )
    if not summary.counts.healthy:
        print(f"see {summary.output}/health.md", file=sys.stderr)
        return 1
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from flows.wave import rerun_wave, resolve_config
    from misterp.config import ConfigError
    from misterp.mrp.staging import StagedWaveMissing

    try:
        if args.output is None and args.config is None:
            raise ConfigError("misterp rerun needs --output URI or --config FILE (for its output)")
        if args.config is not None:  # check it before Prefect starts
            resolve_config(args.config, output=args.output, wave=args.wave)
        summary = summary_of(
            rerun_wave(
                output=args.output,
                wave=args.wave,
                config=args.config,
                fit_deployment=args.fit_deployment,
                batch_size=args.batch_size,
                return_state=True,
            )
        )
    except (ConfigError, StagedWaveMissing) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return _report(summary)


def _demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from flows.wave import run_wave
    from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
    from misterp.storage import ResultStore

    output = Path(args.output).resolve()
    wave_id = "demo"
    brands = tuple(f"brand{i:02d}" for i in range(1, args.brands + 1))
    spec = WaveTruthSpec(
        markets=tuple(args.markets.split(",")),
        brands=brands,
        n_respondents=args.respondents,
        rare_brand=brands[-1],  # the last brand is the small, rarely known one
    )
    simulated = simulate_wave(args.seed, spec)
    input_uri = str(output / "input" / wave_id)
    simulated.write(input_uri, include_truth=True)
    config = simulated.config(input_uri, str(output / "results"))
    config["wave"] = wave_id
    config_path = output / "demo-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"demo wave: {len(simulated.respondents)} respondents, config {config_path}")
    started = time.perf_counter()
    summary = summary_of(run_wave(config=str(config_path), return_state=True))
    seconds = time.perf_counter() - started
    estimates = ResultStore(str(output / "results")).read_parquet(f"{wave_id}/estimates.parquet")
    table = estimates.merge(
        simulated.truth, on=["market", "question_id", "option", "target_group"], how="left"
    )
    shown = table[table["target_group"].isin(["all", "women_18_34"])]
    columns = ["market", "question_id", "option", "target_group", "true_value", "mean", "q05"]
    columns += ["q95", "raw_mean", "raked_mean", "n", "status"]
    with pd.option_context("display.width", 200, "display.max_rows", 400):
        print(shown[columns].round(3).to_string(index=False))
    inside = ((table["q05"] <= table["true_value"]) & (table["true_value"] <= table["q95"])).mean()
    mrp_error = (table["mean"] - table["true_value"]).abs().mean()
    raw_error = (table["raw_mean"] - table["true_value"]).abs().mean()
    print(
        f"\n{summary.counts.models} models in {seconds:.0f} s: {summary.counts.sentence()}; "
        f"90% intervals cover the truth in {inside:.0%} of {len(table)} estimates; "
        f"mean abs error MRP {mrp_error:.3f} vs raw sample share {raw_error:.3f}"
    )
    print(f"results: {summary.output}")
    return 0 if summary.counts.failed == 0 else 1


def _alerts_install(args: argparse.Namespace) -> int:
    from prefect.settings import PREFECT_API_URL

    from flows.alerts import FIT_AUTOMATION, WAVE_AUTOMATION, install_alerts

    if not PREFECT_API_URL.value():
        print(
            "PREFECT_API_URL is not set: alerts live on a Prefect server; point the CLI at it "
            "(export PREFECT_API_URL=http://HOST:4200/api) and run this again",
            file=sys.stderr,
        )
        return 2
    ids = install_alerts(args.webhook, per_fit=args.per_fit)
    names = [FIT_AUTOMATION, WAVE_AUTOMATION] if args.per_fit else [WAVE_AUTOMATION]
    print(f"installed on {PREFECT_API_URL.value()}: automations {', '.join(names)}")
    print(f"webhook block misterp-alerts ({ids['webhook_block']}) -> {args.webhook}")
    return 0


def _add_dispatch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fit-deployment",
        help="run fits as flow runs of this fit-batch deployment (e.g. fit-batch/fit-batch); "
        "default: local worker processes",
    )
    parser.add_argument("--batch-size", type=int, default=15, help="models per fit-batch run")


def build_parser() -> argparse.ArgumentParser:
    """The ``misterp`` argument parser."""
    parser = argparse.ArgumentParser(prog="misterp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a wave from a YAML config")
    run.add_argument("--config", required=True, help="path or URI of the YAML config")
    run.add_argument("--input", help="override the config's input URI")
    run.add_argument("--output", help="override the config's output URI")
    run.add_argument("--wave", help="wave id (substituted for {wave}); default: current month")
    _add_dispatch_options(run)
    run.add_argument(
        "--refit-all", action="store_true", help="refit converged unchanged models too"
    )
    run.set_defaults(handler=_run)
    rerun = sub.add_parser(
        "rerun", help="refit only the missing, failed and not converged models of a wave"
    )
    rerun.add_argument("--wave", required=True, help="wave id to re-run")
    rerun.add_argument("--config", help="the wave's YAML config (for output and storage options)")
    rerun.add_argument("--output", help="results root URI the wave was written to")
    _add_dispatch_options(rerun)
    rerun.set_defaults(handler=_rerun)
    demo = sub.add_parser("demo", help="simulate a wave with known truth and run it end to end")
    demo.add_argument("--output", default="demo-results", help="folder for input and results")
    demo.add_argument("--markets", default="DE,FR", help="comma-separated market codes")
    demo.add_argument("--brands", type=int, default=3, help="number of brands per market")
    demo.add_argument("--respondents", type=int, default=1500, help="respondents per market")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(handler=_demo)
    alerts = sub.add_parser("alerts", help="alerts for fits and waves that need attention")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    install = alerts_sub.add_parser(
        "install",
        help="create the webhook block and automations on the Prefect server (PREFECT_API_URL)",
    )
    install.add_argument(
        "--webhook", required=True, help="URL to POST alerts to (Slack incoming webhooks work)"
    )
    install.add_argument(
        "--no-per-fit",
        dest="per_fit",
        action="store_false",
        help="alert once per wave only, not for every fit that needs attention",
    )
    install.set_defaults(handler=_alerts_install)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``misterp`` command."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "misterp")
    # With no PREFECT_API_URL, Prefect starts a temporary local server; its first start
    # (database migrations) takes longer than the 20 s default on a small machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    logging.getLogger("misterp").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
