"""The tracking-wave flows: ``run-wave`` (validate, plan, stage, fit, publish) and ``rerun-wave``.

Only wiring lives here: the steps are the tasks of ``flows.tasks``, the fan-out is
``flows.dispatch``. Both flows end Completed when every model converged and Failed (after
publishing, with the estimates flagged) when some did not, so a cron run shows red.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from prefect import State, get_run_logger
from prefect.states import Failed

from flows.config_flow import config_path_flow
from flows.dispatch import DEFAULT_BATCH_SIZE, fit_in_processes, fit_on_deployment
from flows.steps import PrefectSteps
from flows.tasks import report_health, show_wave_report
from misterp.config import ConfigError
from misterp.health import RunHealth
from misterp.mrp.config import WaveConfig, check_wave_id, load_config
from misterp.mrp.fits import RefitPlan
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.records import WaveRunSummary
from misterp.pipeline.sequence import FanOut
from misterp.pipeline.wave import (
    TrackedWave,
    WaveRun,
    open_staged_run,
    run_wave_steps,
    tracked,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "dispatch_fan_out",
    "read_config",
    "rerun_wave",
    "resolve_config",
    "run_wave",
]


def dispatch_fan_out(fit_deployment: str | None, batch_size: int) -> FanOut[WaveRun]:
    """The flows' fan-out: the fit units in worker processes or on the ``fit-batch`` deployment.

    Every fit checks the lease of ``run_id`` (the run holding the wave) before writing.
    """

    def fit_units(run: WaveRun, units: Sequence[str], run_id: str) -> None:
        config = run.prepared.config
        if fit_deployment:
            fit_on_deployment(
                fit_deployment,
                config.output,
                run.wave,
                list(units),
                config.storage_options,
                config.workers,
                batch_size,
                run_id=run_id,
            )
        else:
            fit_in_processes(
                config.output,
                run.wave,
                list(units),
                config.storage_options,
                config.workers,
                run_id=run_id,
            )

    return fit_units


def lease_note() -> str | None:
    """What a lease says of its holder: this flow run, so whoever finds it locked can look it up."""
    from prefect.runtime import flow_run

    return f"prefect flow run {flow_run.name} ({flow_run.id})" if flow_run.id else None


def read_config(config: str) -> WaveConfig:
    """The config at a path or URI, ``{wave}`` not yet substituted."""
    return load_config(config)


def resolve_config(
    config: str,
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
) -> WaveConfig:
    """The config at a path or URI, with run-time overrides applied."""
    return read_config(config).resolved(wave=wave, input=input, output=output)


def scheduled_wave_id(lag_months: int = 0) -> str:
    """The wave a scheduled run is for: its scheduled month, ``lag_months`` earlier.

    A cron run on the 3rd of December with lag 1 fits the November wave, and a late or
    retried run still fits November, because the scheduled time, not the clock, decides.
    """
    from prefect.runtime import flow_run

    start: dt.datetime = flow_run.scheduled_start_time
    months = start.year * 12 + (start.month - 1) - lag_months
    return f"{months // 12:04d}-{months % 12 + 1:02d}"


def _finish(outcome: TrackedWave, plan: RefitPlan, health: RunHealth) -> WaveRunSummary | State:
    """Completed when every model converged; otherwise Failed, after publishing.

    A wave with failed or not converged models is published (its estimates flagged) but its
    run ends Failed, so a cron user sees red in the UI and a retry of the run refits only those.
    """
    get_run_logger().info("wave %s published to %s", outcome.wave_id, outcome.output_uri)
    summary = WaveRunSummary(
        wave=outcome.wave_id,
        output=outcome.output_uri,
        counts=outcome.counts,
        fitted=len(plan.to_fit),
        reused=len(plan.reused),
        headline=health.headline(),
    )
    if health.healthy:
        return summary
    return Failed(message=f"{health.headline()}; see the wave-health artifact", data=summary)


@config_path_flow(name="run-wave")
def run_wave(
    config: str,
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    refit_all: bool = False,
    wave_lag_months: int = 0,
    force: bool = False,
) -> WaveRunSummary | State:
    """Run one tracking wave end to end and return its summary.

    Converged fits already in the store with the same spec, data and settings are reused, so
    retrying a wave run (from the UI or the CLI) refits only what is missing or failed.

    Parameters
    ----------
    config
        Path or URI of the YAML config, never the config itself: run parameters are stored
        in Prefect's database, and a config's storage options may hold credentials (anything
        else is refused before a run exists: ``flows.config_flow``).
    input, output
        Override the config's input and output URIs.
    wave
        Wave id (substituted for ``{wave}``); default: the config's, else the month of the
        run's scheduled start minus ``wave_lag_months``.
    fit_deployment
        ``flow/deployment`` name of a ``fit-batch`` deployment to run the fits on (one flow
        run per batch); default: worker processes of this run.
    batch_size
        Models per ``fit-batch`` flow run.
    refit_all
        Fit every model again, even converged ones whose inputs did not change.
    wave_lag_months
        For scheduled runs: how many months before the scheduled start the wave is.
    force
        Take the wave's lease over from another run that looks alive (it is dead, but its
        lease is not stale yet); that run's later writes are refused.
    """
    started = time.perf_counter()
    parsed = read_config(config)
    if wave is None and parsed.wave is None:
        wave = scheduled_wave_id(wave_lag_months)
    resolved = parsed.resolved(wave=wave, input=input, output=output)

    def validate() -> WaveRun:
        return WaveRun(prepare_wave(resolved), refit_all=refit_all, started=started)

    return _run(validate, f"wave {resolved.wave}", fit_deployment, batch_size, force)


@config_path_flow(name="rerun-wave")
def rerun_wave(
    wave: str,
    output: str | None = None,
    config: str | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    force: bool = False,
) -> WaveRunSummary | State:
    """Refit only the models of a staged wave that are missing, failed or not converged.

    Works from what the first run staged in ``output`` (config, cells, counts); the raw input
    is not read again, so the re-run fits exactly the data the first run planned.

    Parameters
    ----------
    wave
        Wave id to re-run.
    output
        Results root URI the wave was written to; default: the config's output.
    config
        Path or URI of the wave's YAML config, read for its output and storage options. Run
        parameters are stored in Prefect's database, so the config is never one (anything but
        a path is refused before a run exists); credentials come from the environment
        (``AWS_*``) or the config file.
    fit_deployment, batch_size, force
        As for ``run-wave``.
    """
    started = time.perf_counter()
    storage_options: dict[str, Any] = {}
    if config is not None:
        resolved = resolve_config(config, output=output, wave=wave)
        output, storage_options = resolved.output, dict(resolved.storage_options)
    if not output:
        raise ConfigError("rerun-wave needs output (the results root URI) or config")
    check_wave_id(wave)
    staged_output = output

    def validate() -> WaveRun:
        return open_staged_run(staged_output, wave, storage_options, started=started)

    return _run(validate, f"wave {wave}", fit_deployment, batch_size, force)


def _run(
    validate: Callable[[], WaveRun],
    subject: str,
    fit_deployment: str | None,
    batch_size: int,
    force: bool,
) -> WaveRunSummary | State:
    """The pipeline with each step a task and the fits fanned out; artifacts and state after."""
    steps = run_wave_steps(
        validate,
        fan_out=dispatch_fan_out(fit_deployment, batch_size),
        steps=PrefectSteps("wave", subject),
        force=force,
        note=lease_note(),
    )
    outcome = tracked(steps)
    show_wave_report(outcome.report, outcome.wave_id)
    return _finish(outcome, steps.plan, report_health(outcome))
