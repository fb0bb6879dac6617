"""The tracking-wave flow: validate, plan, fan the fits out over processes, publish.

Only wiring lives here; every step is a function of ``misterp.wave``. Fits run as one task per
model (the unit a person re-runs), in a process pool because PyMC and nutpie do not
parallelise across threads of one interpreter.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner

from misterp.cells import CellCounts, MarketCells
from misterp.config import ConfigError, WaveConfig, load_config, parse_config
from misterp.fitting import CONVERGED, FAILED, NOT_CONVERGED, FitResult, fit_with_policy
from misterp.specs import FormulaError, ModelSpec
from misterp.validation import InputValidationError
from misterp.wave import PreparedWave, WaveOutcome, prepare_wave, publish_wave

#: Thread pools inside one fit process would fight the other processes for the same cores.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def limit_threads() -> None:
    """Process-pool initializer: one BLAS/numba thread per fit process."""
    os.environ.update(SINGLE_THREAD_ENV)


def fit_task_name() -> str:
    """Task-run name: the model's key, so the UI lists fits by what they model."""
    from prefect.runtime import task_run

    spec = task_run.parameters.get("spec")
    return f"fit {spec.key}" if isinstance(spec, ModelSpec) else "fit"


def retry_infrastructure_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an S3 timeout or a lost connection, never input that is simply wrong."""
    try:
        state.result()
    except (InputValidationError, ConfigError, FormulaError):
        return False
    except Exception:
        return True
    return False


# Retries here are for infrastructure only (an S3 read timing out); a bad input fails fast.
@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def prepare(config: WaveConfig) -> PreparedWave:
    """Read, validate and plan the wave (I/O: retried on infrastructure faults)."""
    return prepare_wave(config)


# No Prefect retries: statistical retries with stronger settings happen inside the fit.
@task(task_run_name=fit_task_name)
def fit_model(
    spec: ModelSpec, layout: MarketCells, counts: CellCounts, config: WaveConfig
) -> FitResult:
    """Fit one model (runs in a worker process)."""
    return fit_with_policy(
        spec,
        layout,
        counts,
        priors=config.model.priors,
        sampler=config.sampler,
        thresholds=config.convergence,
        policy=config.retry,
    )


@task(retries=2, retry_delay_seconds=10)
def publish(prepared: PreparedWave, results: dict[str, FitResult], started: float) -> WaveOutcome:
    """Write estimates and draws, then the manifest last."""
    return publish_wave(prepared, results, started_at=started)


def _progress_line(done: int, total: int, counts: dict[str, int], elapsed: float) -> str:
    left = elapsed / done * (total - done) if done else float("nan")
    return (
        f"fits {done}/{total}: {counts[CONVERGED]} converged, {counts[NOT_CONVERGED]} not "
        f"converged, {counts[FAILED]} failed; {elapsed:.0f} s elapsed, ~{left:.0f} s left"
    )


def _share_api_with_workers() -> None:
    """Point worker processes at this run's API instead of each starting a temporary server.

    Without ``PREFECT_API_URL`` Prefect starts a temporary local server, and every process of
    the pool would start its own (about 30 s each); the pool starts its processes on the first
    submit and copies this environment.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    from prefect.client.orchestration import get_client

    os.environ["PREFECT_API_URL"] = str(get_client().api_url).rstrip("/")


def resolve_config(
    config: str | dict[str, Any] | WaveConfig,
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
) -> WaveConfig:
    """A config from a path/URI, a mapping or an object, with run-time overrides applied."""
    if isinstance(config, WaveConfig):
        parsed = config
    elif isinstance(config, dict):
        parsed = parse_config(config)
    else:
        parsed = load_config(config)
    return parsed.resolved(wave=wave, input=input, output=output)


@flow(name="run-wave", task_runner=ProcessPoolTaskRunner(initializer=limit_threads))
def run_wave(
    config: str | dict[str, Any],
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
) -> dict[str, Any]:
    """Run one tracking wave end to end and return its manifest summary.

    Parameters
    ----------
    config
        Path or URI of the YAML config, or the config as a mapping.
    input, output
        Override the config's input and output URIs.
    wave
        Wave id (substituted for ``{wave}``); defaults to the config's, else the current month.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    resolved = resolve_config(config, input, output, wave)
    prepared = prepare(resolved)
    total = len(prepared.specs)
    logger.info(
        "wave %s: %d models over %d markets", prepared.wave_id, total, len(prepared.layouts)
    )
    _share_api_with_workers()
    futures = [
        fit_model.submit(
            spec, prepared.layouts[spec.market], prepared.counts[spec.key], prepared.config
        )
        for spec in prepared.specs
    ]
    results: dict[str, FitResult] = {}
    counts = {CONVERGED: 0, NOT_CONVERGED: 0, FAILED: 0}
    fit_started = time.perf_counter()
    every = max(1, total // 20)
    for done, future in enumerate(as_completed(futures), start=1):
        result: FitResult = future.result()
        results[result.spec.key] = result
        counts[result.status] += 1
        if result.status != CONVERGED:
            logger.warning("fit %s ended %s", result.spec.key, result.status)
        if done % every == 0 or done == total:
            logger.info(_progress_line(done, total, counts, time.perf_counter() - fit_started))
    outcome = publish(prepared, results, started)
    logger.info(
        "wave %s published to %s: %s", outcome.wave_id, outcome.output_uri, outcome.status_counts
    )
    return {
        "wave": outcome.wave_id,
        "output": outcome.output_uri,
        "counts": outcome.status_counts,
    }
