"""The fan-out, for any model family: fit a list of model keys in local processes or pods.

Two ways, one contract: each fit reads its staged wave from the store and writes its record
back. ``fit_in_processes`` runs one Prefect task per key in a pool of worker processes (the
default, and what a ``fit-batch`` pod runs inside); ``fit_on_deployment`` turns batches of keys
into flow runs of a ``fit-batch`` deployment (a Kubernetes pod each in production).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.tasks import fit_model
from misterp.progress import FitProgress
from misterp.records import FitSummary
from misterp.status import FitStatus
from misterp.storage import without_credentials

__all__ = ["DEFAULT_BATCH_SIZE", "fit_in_processes", "fit_on_deployment", "pool_size"]

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


def limit_threads() -> None:
    """Process-pool initializer: one BLAS/numba thread per fit process."""
    os.environ.update(SINGLE_THREAD_ENV)


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
    storage_options: Mapping[str, Any],
    workers: int | None,
    run_id: str | None = None,
) -> list[FitSummary]:
    """Fit ``keys`` as one task each in a pool of worker processes, logging progress.

    With one process to run, the fits run in this one: a second interpreter would only add its
    imports and compiles (about 15 s) to every batch.
    """
    logger = get_run_logger()
    summaries: list[FitSummary] = []
    progress = FitProgress(total=len(keys), started=time.perf_counter())
    every = max(1, len(keys) // 20)
    processes, cores_per_fit = pool_size(workers)
    processes = min(processes, max(1, len(keys)))
    runner: ProcessPoolTaskRunner | ThreadPoolTaskRunner
    if processes == 1:
        runner = ThreadPoolTaskRunner(max_workers=1)
    else:
        share_api_with_workers()
        runner = ProcessPoolTaskRunner(max_workers=processes, initializer=limit_threads)
    with runner:
        futures = [
            runner.submit(
                fit_model,
                parameters={
                    "output": output,
                    "wave": wave,
                    "key": key,
                    "storage_options": dict(storage_options),
                    "cores": cores_per_fit,
                    "run_id": run_id,
                },
            )
            for key in keys
        ]
        for future in as_completed(futures):
            summary: FitSummary = future.result()
            summaries.append(summary)
            progress.done_at(summary, time.perf_counter())
            if summary.status is not FitStatus.CONVERGED:
                logger.warning(
                    "fit %s ended %s after %d attempts%s",
                    summary.key,
                    summary.status.value,
                    summary.attempts,
                    f": {summary.error}" if summary.error else "",
                )
            if progress.done % every == 0 or progress.done == progress.total:
                logger.info(progress.line(time.perf_counter()))
    return summaries


def fit_on_deployment(
    deployment: str,
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: Mapping[str, Any],
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
                # Run parameters are stored on the Prefect server: no credentials in them.
                "storage_options": without_credentials(storage_options),
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
