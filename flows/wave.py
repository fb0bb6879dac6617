"""The tracking-wave flows: validate, plan, stage, fan the fits out, publish.

Only wiring lives here; every step is a function of ``misterp``. Two ways to run the fits,
one code path: every fit reads the staged wave from the result store and writes its record
back, whether it runs in a local worker process (the default) or in a ``fit-batch`` flow run
on a work pool (a Kubernetes pod per batch in production, ``--fit-deployment``).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect.states import Failed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.alerts import emit_fit_event, emit_wave_event
from misterp.config import ConfigError, WaveConfig, load_config, parse_config
from misterp.fitting import CONVERGED, CORES_PER_FIT_ENV, FAILED, NOT_CONVERGED
from misterp.health import WaveHealth
from misterp.specs import FormulaError
from misterp.staging import RefitPlan, plan_refits, read_current_fits, stage_wave
from misterp.storage import ResultStore
from misterp.validation import InputValidationError
from misterp.wave import (
    FitSummary,
    PreparedWave,
    WaveOutcome,
    fit_staged,
    open_staged_wave,
    prepare_wave,
    publish_wave,
)

#: Thread pools inside one fit process would fight the other processes for the same cores.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}

#: Models per ``fit-batch`` flow run: a 1,000-model wave becomes about 67 pods.
DEFAULT_BATCH_SIZE = 15
#: Final flow-run states of a batch (a crashed pod ends ``CRASHED``).
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def limit_threads(cores_per_fit: int = 1) -> None:
    """Process-pool initializer: one BLAS/numba thread per fit, chains on its share of CPUs."""
    os.environ.update(SINGLE_THREAD_ENV)
    os.environ[CORES_PER_FIT_ENV] = str(cores_per_fit)


def pool_size(workers: int | None) -> tuple[int, int]:
    """Fit processes and CPUs per fit for this machine or pod.

    ``workers`` wins, then ``PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS`` (the Kubernetes
    job template sets it from the pod's CPU limit, because ``os.cpu_count()`` in a pod is the
    node's), then the CPUs this process may run on.
    """
    from prefect.settings import get_current_settings

    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = (
        get_current_settings().tasks.runner.process_pool_max_workers
        or (len(affinity) if affinity else os.cpu_count())
        or 1
    )
    processes = workers or cpus
    return processes, max(1, cpus // processes)


def fit_task_name() -> str:
    """Task-run name: the model's key, so the UI lists fits by what they model."""
    from prefect.runtime import task_run

    return f"fit {task_run.parameters.get('key', '')}".strip()


def retry_infrastructure_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an S3 timeout or a lost connection, never input that is simply wrong."""
    try:
        state.result()
    except (InputValidationError, ConfigError, FormulaError, FileNotFoundError):
        return False
    except Exception:
        return True
    return False


# Retries here are for infrastructure only (an S3 read timing out); a bad input fails fast.
@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def prepare(config: WaveConfig) -> PreparedWave:
    """Read, validate and plan the wave."""
    return prepare_wave(config)


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def stage(prepared: PreparedWave, refit_all: bool) -> RefitPlan:
    """Write the prepared cells to the store once and decide which models need a fit."""
    store = ResultStore(prepared.config.output, prepared.config.storage_options)
    stage_wave(prepared, store)
    return plan_refits(prepared, store, refit_all=refit_all)


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def open_staged(output: str, wave: str, storage_options: dict[str, Any]) -> PreparedWave:
    """Read a staged wave back from the store (for a re-run)."""
    return open_staged_wave(output, wave, storage_options)


# Statistical retries (stronger sampler settings) happen inside the fit, and a fit that still
# fails is a result (recorded, alerted, reported), not an exception. What does raise here is
# infrastructure (the store timing out), which Prefect retries: the same settings, once more.
@task(
    task_run_name=fit_task_name,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def fit_model(output: str, wave: str, key: str, storage_options: dict[str, Any]) -> FitSummary:
    """Fit one model of a staged wave, record it in the store, alert if it did not converge."""
    summary = fit_staged(output, wave, key, storage_options)
    emit_fit_event(wave, summary)
    return summary


@task(retries=2, retry_delay_seconds=10)
def publish(prepared: PreparedWave, started: float) -> WaveOutcome:
    """Read every current fit record, then write estimates and draws, and the manifest last."""
    store = ResultStore(prepared.config.output, prepared.config.storage_options)
    return publish_wave(prepared, read_current_fits(prepared, store), started_at=started)


@task
def report_health(outcome: WaveOutcome) -> WaveHealth:
    """Show the wave's health as artifacts and emit the wave event the alerts listen to."""
    health = outcome.health
    key = f"wave-health-{outcome.wave_id}".lower().replace("_", "-")
    create_table_artifact(
        key=key,
        table=health.rows(),
        description=f"misterp wave {outcome.wave_id}: every model, problems first",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=health.to_markdown(),
        description=health.headline(),
    )
    emit_wave_event(health, outcome.output_uri)
    return health


def _final(summary: dict[str, Any], health: WaveHealth) -> dict[str, Any] | State:
    """Completed when every model converged; otherwise Failed, after publishing.

    A wave with failed or not converged models is published (its estimates flagged) but its
    run ends Failed, so a cron user sees red in the UI and a retry of the run refits only those.
    """
    if health.healthy:
        return summary
    return Failed(message=f"{health.headline()}; see the wave-health artifact", data=summary)


def _progress_line(done: int, total: int, counts: dict[str, int], elapsed: float) -> str:
    left = elapsed / done * (total - done) if done else float("nan")
    return (
        f"fits {done}/{total}: {counts[CONVERGED]} converged, {counts[NOT_CONVERGED]} not "
        f"converged, {counts[FAILED]} failed; {elapsed:.0f} s elapsed, ~{left:.0f} s left"
    )


def share_api_with_workers() -> None:
    """Point worker processes at this run's API instead of each starting a temporary server.

    Without ``PREFECT_API_URL`` Prefect starts a temporary local server, and every process of
    the pool would start its own (about 30 s each); the pool starts its processes on the first
    submit and copies this environment.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.client.orchestration import get_client

    os.environ["PREFECT_API_URL"] = str(get_client().api_url).rstrip("/")


def fit_in_processes(
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: dict[str, Any],
    workers: int | None,
) -> list[FitSummary]:
    """Fit ``keys`` as one task each in a pool of worker processes, logging progress.

    With one process to run, the fits run in this one: a second interpreter would only add its
    imports and compiles (about 15 s) to every batch.
    """
    logger = get_run_logger()
    summaries: list[FitSummary] = []
    counts = {CONVERGED: 0, NOT_CONVERGED: 0, FAILED: 0}
    total, started = len(keys), time.perf_counter()
    every = max(1, total // 20)
    processes, cores_per_fit = pool_size(workers)
    processes = min(processes, max(1, total))
    runner: ProcessPoolTaskRunner | ThreadPoolTaskRunner
    if processes == 1:
        os.environ[CORES_PER_FIT_ENV] = str(cores_per_fit)
        runner = ThreadPoolTaskRunner(max_workers=1)
    else:
        share_api_with_workers()
        runner = ProcessPoolTaskRunner(
            max_workers=processes, initializer=limit_threads, initargs=(cores_per_fit,)
        )
    with runner:
        futures = [
            runner.submit(
                fit_model,
                parameters={
                    "output": output,
                    "wave": wave,
                    "key": key,
                    "storage_options": storage_options,
                },
            )
            for key in keys
        ]
        for done, future in enumerate(as_completed(futures), start=1):
            summary: FitSummary = future.result()
            summaries.append(summary)
            counts[summary.status] += 1
            if summary.status != CONVERGED:
                logger.warning(
                    "fit %s ended %s after %d attempts%s",
                    summary.key,
                    summary.status,
                    summary.attempts,
                    f": {summary.error}" if summary.error else "",
                )
            if done % every == 0 or done == total:
                logger.info(_progress_line(done, total, counts, time.perf_counter() - started))
    return summaries


def fit_on_deployment(
    deployment: str,
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: dict[str, Any],
    workers: int | None,
    batch_size: int,
    poll_seconds: float = 5.0,
) -> dict[str, str]:
    """Run ``keys`` as ``fit-batch`` flow runs of ``deployment`` and wait for all of them.

    One flow run (one pod) per batch. How many run at once is the work pool's and the
    deployment's concurrency limit, not this loop. Returns each batch flow run's final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    batches = [list(keys[i : i + batch_size]) for i in range(0, len(keys), batch_size)]
    runs: dict[UUID, list[str]] = {}
    for number, batch in enumerate(batches, start=1):
        flow_run = run_deployment(
            name=deployment,
            parameters={
                "output": output,
                "wave": wave,
                "keys": batch,
                "storage_options": storage_options,
                "workers": workers,
            },
            flow_run_name=f"fit-batch {wave} {number}/{len(batches)}",
            timeout=0,  # create them all now; the pool's limits decide how many run at once
        )
        runs[flow_run.id] = batch
    logger.info("wave %s: %d models in %d batches on %s", wave, len(keys), len(batches), deployment)
    states: dict[str, str] = {}
    started = time.perf_counter()
    with get_client(sync_client=True) as client:
        while len(states) < len(runs):
            time.sleep(poll_seconds)
            found = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(runs)))
            )
            for run in found:
                state = run.state.type.value if run.state else "PENDING"
                if state in _FINAL and str(run.id) not in states:
                    states[str(run.id)] = state
                    log = logger.info if state == "COMPLETED" else logger.warning
                    log(
                        "batch %s ended %s (%d/%d batches, %.0f s)",
                        run.name,
                        state,
                        len(states),
                        len(runs),
                        time.perf_counter() - started,
                    )
    return states


def fit_planned(
    prepared: PreparedWave,
    plan: RefitPlan,
    fit_deployment: str | None,
    batch_size: int,
) -> None:
    """Run the planned fits locally or on the ``fit-batch`` deployment."""
    keys = [spec.key for spec in plan.to_fit]
    if not keys:
        return
    config = prepared.config
    if fit_deployment:
        fit_on_deployment(
            fit_deployment,
            config.output,
            prepared.wave_id,
            keys,
            config.storage_options,
            config.workers,
            batch_size,
        )
    else:
        fit_in_processes(
            config.output, prepared.wave_id, keys, config.storage_options, config.workers
        )


def read_config(config: str | dict[str, Any] | WaveConfig) -> WaveConfig:
    """A config from a path/URI, a mapping or an object, ``{wave}`` not yet substituted."""
    if isinstance(config, WaveConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def resolve_config(
    config: str | dict[str, Any] | WaveConfig,
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
) -> WaveConfig:
    """A config from a path/URI, a mapping or an object, with run-time overrides applied."""
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


def _summary(outcome: WaveOutcome, plan: RefitPlan) -> dict[str, Any]:
    return {
        "wave": outcome.wave_id,
        "output": outcome.output_uri,
        "counts": outcome.status_counts,
        "fitted": len(plan.to_fit),
        "reused": len(plan.reused),
    }


@flow(name="run-wave")
def run_wave(
    config: str | dict[str, Any],
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    refit_all: bool = False,
    wave_lag_months: int = 0,
) -> dict[str, Any] | State:
    """Run one tracking wave end to end and return its manifest summary.

    Converged fits already in the store with the same spec, data and settings are reused, so
    retrying a wave run (from the UI or the CLI) refits only what is missing or failed.

    Parameters
    ----------
    config
        Path or URI of the YAML config, or the config as a mapping.
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
    """
    logger = get_run_logger()
    started = time.perf_counter()
    parsed = read_config(config)
    if wave is None and parsed.wave is None:
        wave = scheduled_wave_id(wave_lag_months)
    resolved = parsed.resolved(wave=wave, input=input, output=output)
    prepared = prepare(resolved)
    plan = stage(prepared, refit_all)
    logger.info(
        "wave %s: %d models over %d markets; %s",
        prepared.wave_id,
        len(prepared.specs),
        len(prepared.layouts),
        plan.summary(),
    )
    fit_planned(prepared, plan, fit_deployment, batch_size)
    outcome = publish(prepared, started)
    logger.info(
        "wave %s published to %s: %s", outcome.wave_id, outcome.output_uri, outcome.status_counts
    )
    return _final(_summary(outcome, plan), report_health(outcome))


@flow(name="rerun-wave")
def rerun_wave(
    output: str,
    wave: str,
    storage_options: dict[str, Any] | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any] | State:
    """Refit only the models of a staged wave that are missing, failed or not converged.

    Works from what the first run staged in ``output`` (config, cells, counts); the raw input
    is not read again, so the re-run fits exactly the data the first run planned.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    prepared = open_staged(output, wave, storage_options or {})
    store = ResultStore(output, storage_options)
    plan = plan_refits(prepared, store)
    logger.info("re-run of wave %s: %s", wave, plan.summary())
    fit_planned(prepared, plan, fit_deployment, batch_size)
    outcome = publish(prepared, started)
    logger.info(
        "wave %s published to %s: %s", outcome.wave_id, outcome.output_uri, outcome.status_counts
    )
    return _final(_summary(outcome, plan), report_health(outcome))
