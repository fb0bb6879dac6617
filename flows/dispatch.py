"""The fan-out, for any model family: fit a list of model keys in local processes or pods.

Two ways, one contract: each fit reads its staged wave from the store and writes its record
back. ``fit_in_processes`` runs the keys in a pool of worker processes, a few fits per
Prefect task run (the default, and what a ``fit-batch`` pod runs inside); ``fit_on_deployment``
turns batches of keys into flow runs of a ``fit-batch`` deployment (a Kubernetes pod each in
production).

A worker process that dies (the kernel's OOM killer, ``kill -9``) is an outcome of the fit it
was running, not of the wave: that fit is retried once, alone in a fresh process, and recorded
as failed if its worker dies again; every other fit carries on.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from prefect import Task, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.runtime import init_fit_worker
from flows.tasks import fit_model, record_lost, retry_infrastructure_only
from misterp.progress import FitProgress
from misterp.records import FitSummary
from misterp.status import FitStatus
from misterp.storage import without_credentials

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MAX_FITS_PER_TASK",
    "WORKER_LOST",
    "WORKER_LOST_TWICE",
    "FitMarks",
    "WorkersFailToStart",
    "batch_parameters",
    "fit_in_processes",
    "fit_on_deployment",
    "fit_several",
    "fits_per_task",
    "pool_size",
]

#: Models per ``fit-batch`` flow run: a 1,000-model wave becomes about 67 pods.
DEFAULT_BATCH_SIZE = 15
#: Most fits one task run of the local pool carries (``fits_per_task``).
MAX_FITS_PER_TASK = 8
#: Fewest task runs each process of the pool gets, so the pool's last fits end together.
TASKS_PER_PROCESS = 4
#: Final flow-run states of a batch (a crashed pod ends ``CRASHED``).
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: Said of a fit whose worker process died under it. The pool reports only that a process
#: ended abruptly, not how; SIGKILL (the OOM killer, ``kill -9``) is by far the usual way.
WORKER_LOST = "worker process died (signal 9?)"
#: The error recorded for a fit whose worker died under it on its retry too.
WORKER_LOST_TWICE = (
    f"{WORKER_LOST} twice; most often the machine ran out of memory: fewer parallel fits "
    "(config 'workers') leave each more"
)

#: ``fit(output=, wave=, key=, storage_options=, cores=, run_id=)``: a Prefect task that fits
#: one model, writes its record and returns its summary (``flows.tasks.fit_model`` for MRP).
FitTask = Task[..., FitSummary]
#: ``record(output=, wave=, key=, storage_options=, reason=, run_id=)``: records a fit that
#: could not be run as failed with ``reason`` and returns its summary.
RecordLost = Callable[..., FitSummary]


class WorkersFailToStart(RuntimeError):
    """Fit worker processes die before any fit starts: the machine, not a model, is at fault."""


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


class _Report:
    """Progress and warnings of a fan-out, one fit at a time, as the fits finish."""

    def __init__(self, total: int) -> None:
        self.logger = get_run_logger()
        self.progress = FitProgress(total=total, started=time.perf_counter())
        self.every = max(1, total // 20)
        self.summaries: list[FitSummary] = []

    def done(self, summary: FitSummary) -> None:
        self.summaries.append(summary)
        self.progress.done_at(summary, time.perf_counter())
        if summary.status is not FitStatus.CONVERGED:
            self.logger.warning(
                "fit %s ended %s after %d attempts%s",
                summary.key,
                summary.status.value,
                summary.attempts,
                f": {summary.error}" if summary.error else "",
            )
        if self.progress.done % self.every == 0 or self.progress.done == self.progress.total:
            self.logger.info(self.progress.line(time.perf_counter()))


def _mark_crashed(futures: Sequence[PrefectFuture[Any]], message: str) -> None:
    """Set the task runs of fits whose worker died to Crashed, not Running forever in the UI.

    Best effort: the API may not have recorded a run that died at once.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for future in futures:
            try:
                client.set_task_run_state(future.task_run_id, Crashed(message=message), force=True)
            except Exception:
                get_run_logger().debug("task run %s not marked crashed", future.task_run_id)


def fits_per_task(models: int, processes: int) -> int:
    """How many fits one task run carries: up to ``MAX_FITS_PER_TASK``.

    Every process still gets at least ``TASKS_PER_PROCESS`` task runs, so the pool ends evenly.

    >>> fits_per_task(1000, 2), fits_per_task(40, 2), fits_per_task(15, 2), fits_per_task(3, 1)
    (8, 5, 1, 1)
    """
    return max(1, min(MAX_FITS_PER_TASK, models // (processes * TASKS_PER_PROCESS)))


def _task_batches(keys: Sequence[str], processes: int, per_task: int | None) -> list[list[str]]:
    """``keys`` in the batches the task runs carry: ``per_task`` each, else ``fits_per_task``.

    >>> _task_batches(["a", "b", "c"], 1, 2)
    [['a', 'b'], ['c']]
    """
    size = per_task or fits_per_task(len(keys), processes)
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


class FitMarks:
    """What each fit of a fan-out left behind in a folder: that it started, and its summary.

    When a worker dies, its pool fails every unfinished task run alike, and a task run carries
    several fits. The marks tell the fits that finished (their summary), the one that was
    running (and may have killed the worker) and those that never started. A mark's name is a
    digest of the model key, so no key becomes a path.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def _path(self, key: str, kind: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.{kind}"

    def start(self, key: str) -> None:
        """Mark ``key`` as running: a worker that dies now dies with this fit."""
        self._path(key, "started").touch()

    def finish(self, summary: FitSummary) -> None:
        """Keep ``summary`` as the mark of a finished fit, renamed into place whole."""
        done = self._path(summary.key, "done")
        partial = done.with_suffix(".partial")
        partial.write_text(summary.model_dump_json())
        partial.replace(done)

    def summary(self, key: str) -> FitSummary | None:
        """The summary of ``key``'s finished fit, or None when it did not finish."""
        done = self._path(key, "done")
        return FitSummary.model_validate_json(done.read_text()) if done.exists() else None

    def started(self, key: str) -> bool:
        """Whether ``key``'s fit started since ``forget``."""
        return self._path(key, "started").exists()

    def forget(self, keys: Iterable[str]) -> None:
        """Clear the start marks of ``keys`` before they run again (a retry in a fresh pool)."""
        for key in keys:
            self._path(key, "started").unlink(missing_ok=True)


def fits_task_name() -> str:
    """Task-run name: the models' keys, so the UI lists fits by what they model."""
    from prefect.runtime import task_run

    return f"fit {', '.join(task_run.parameters.get('keys', []))}".strip()


@task(
    task_run_name=fits_task_name,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def fit_several(
    fit: FitTask,
    marks: str,
    keys: list[str],
    output: str,
    wave: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> list[FitSummary]:
    """Fit ``keys`` one after another in one task run with the family's ``fit`` task's function.

    One task run per model cost a worker 0.1-0.18 s of Prefect's engine (states, events, the
    result) and the server its CPU besides: about 90 s of a 1,000-model wave on two cores.
    Each fit still writes its own record and emits its own event. A retry of the task run (an
    infrastructure fault) skips the fits that are already done.
    """
    fit_marks = FitMarks(marks)
    summaries: list[FitSummary] = []
    for key in keys:
        summary = fit_marks.summary(key)
        if summary is None:
            fit_marks.start(key)
            summary = fit.fn(
                output=output,
                wave=wave,
                key=key,
                storage_options=storage_options,
                cores=cores,
                run_id=run_id,
            )
            fit_marks.finish(summary)
        summaries.append(summary)
    return summaries


class _Pools:
    """Runs fits in pools of worker processes and sorts out what a dead worker took along.

    When one worker dies, the pool fails every unfinished future alike (and stops the other
    workers). The ``FitMarks`` tell the fits that finished or were running from those still
    queued.
    """

    def __init__(
        self,
        parameters: Callable[[list[str]], dict[str, Any]],
        marks: FitMarks,
        report: _Report,
        per_task: int | None,
    ) -> None:
        self.parameters = parameters
        self.marks = marks
        self.report = report
        self.per_task = per_task

    def run(self, keys: Sequence[str], processes: int) -> tuple[int, list[str], list[str]]:
        """Fit ``keys`` in one fresh pool: how many finished, which never started, which died.

        The last two are empty when the pool survived. Finished fits are reported at once.
        """
        runner = ProcessPoolTaskRunner(
            max_workers=processes, initializer=init_fit_worker, initargs=(os.getpid(),)
        )
        self.marks.forget(keys)
        broken: dict[PrefectFuture[Any], list[str]] = {}
        finished = 0
        with runner:
            futures: dict[PrefectFuture[list[FitSummary]], list[str]] = {
                runner.submit(fit_several, parameters=self.parameters(batch)): batch
                for batch in _task_batches(keys, processes, self.per_task)
            }
            for future in as_completed(list(futures)):
                try:
                    summaries: list[FitSummary] = future.result()
                except BrokenProcessPool:
                    broken[future] = futures[future]
                    continue
                for summary in summaries:
                    finished += 1
                    self.report.done(summary)
        died_runs: list[PrefectFuture[Any]] = []
        died: list[str] = []
        unstarted: list[str] = []
        for future, batch in broken.items():
            for key in batch:
                marked = self.marks.summary(key)
                if marked is not None:  # finished before its task run's worker died
                    finished += 1
                    self.report.done(marked)
                elif self.marks.started(key):
                    died.append(key)
                    died_runs.append(future)
                else:
                    unstarted.append(key)
        if died_runs:
            _mark_crashed(died_runs, WORKER_LOST)
        return finished, unstarted, died


def fit_in_processes(
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: Mapping[str, Any],
    workers: int | None,
    run_id: str | None = None,
    *,
    fit: FitTask = fit_model,
    record: RecordLost = record_lost,
    rerun: str | None = None,
    per_task: int | None = None,
) -> list[FitSummary]:
    """Fit ``keys`` in a pool of worker processes, a few per task run, logging progress.

    A task run carries ``fits_per_task`` fits (up to ``MAX_FITS_PER_TASK``): Prefect's engine
    costs a worker about 0.1 s per task run, a tenth of a fit.

    With one process to run, the fits run in this one: a second interpreter would only add its
    imports and compiles (about 15 s) to every batch.

    A fit whose worker process dies is retried once, after the other fits, alone in a fresh
    process (alone: the usual killer is memory); if that worker dies too, ``record`` writes it
    as failed with ``WORKER_LOST_TWICE``. The fits that died with it only because the pool
    went down, and those still queued, run again in a fresh pool without counting it.

    Parameters
    ----------
    output, wave, keys
        The staged wave and the model keys to fit.
    storage_options
        fsspec options of the store, passed to every fit.
    workers
        Parallel fit processes; default ``pool_size``.
    run_id
        The run holding the wave's lease, passed to every fit.
    fit, record
        The family's fit task and its lost-fit recorder (MRP: ``fit_model``, ``record_lost``).
    rerun
        The command that refits only the failed fits, for the warning after lost workers;
        default the tracker's ``misterp rerun --wave WAVE --output OUTPUT``.
    per_task
        Fits per task run; default ``fits_per_task``.

    Raises
    ------
    WorkersFailToStart
        When a fresh pool's workers die before any fit starts.
    """
    report = _Report(len(keys))
    processes, cores_per_fit = pool_size(workers)
    processes = min(processes, max(1, len(keys)))

    lost_twice: list[str] = []
    with tempfile.TemporaryDirectory(prefix="misterp-fits-") as folder:
        marks = FitMarks(folder)

        def parameters(batch: list[str]) -> dict[str, Any]:
            return {
                "fit": fit,
                "marks": folder,
                "keys": batch,
                "output": output,
                "wave": wave,
                "storage_options": dict(storage_options),
                "cores": cores_per_fit,
                "run_id": run_id,
            }

        if processes == 1:
            threads: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=1)
            with threads as runner:
                submitted: list[PrefectFuture[list[FitSummary]]] = [
                    runner.submit(fit_several, parameters=parameters(batch))
                    for batch in _task_batches(keys, 1, per_task)
                ]
                for future in as_completed(submitted):
                    for summary in future.result():
                        report.done(summary)
            return report.summaries

        share_api_with_workers()
        pools = _Pools(parameters, marks, report, per_task)
        pending, lost = list(keys), []
        while pending:
            finished, unstarted, died = pools.run(pending, min(processes, len(pending)))
            if unstarted and not finished and not died:
                if not report.summaries:  # not one fit ran: the machine, not a model
                    raise WorkersFailToStart(
                        f"fit worker processes died before starting any of {len(pending)} "
                        "fits; check that a worker can start here (memory, imports), then "
                        "run again"
                    )
                # A worker died before its fit left a mark: each remaining fit gets its retry.
                died, unstarted = unstarted, []
            pending = unstarted
            if died:
                lost += died
                report.logger.warning(
                    "%s while fitting %s; retrying %s alone in a fresh process after the "
                    "other fits; %d fits continue in a fresh pool",
                    WORKER_LOST,
                    ", ".join(died),
                    "it" if len(died) == 1 else "each",
                    len(pending),
                )
        for key in lost:  # one at a time: a fit killed for memory gets the machine to itself
            finished, _, _ = pools.run([key], 1)
            if not finished:
                lost_twice.append(key)
                report.done(
                    record(
                        output=output,
                        wave=wave,
                        key=key,
                        storage_options=dict(storage_options),
                        reason=WORKER_LOST_TWICE,
                        run_id=run_id,
                    )
                )
    if lost_twice:
        report.logger.warning(
            "wave %s: %d fits recorded as failed because their worker process died twice "
            "(%s); once the cause is fixed, refit only the failed and missing fits with: %s",
            wave,
            len(lost_twice),
            ", ".join(lost_twice),
            rerun or f"misterp rerun --wave {wave} --output {output}",
        )
    return report.summaries


def batch_parameters(
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: Mapping[str, Any],
    workers: int | None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The parameters of one ``fit-batch`` flow run, as stored in Prefect's database.

    Everyone who can read the Prefect UI or API can read run parameters, so the storage
    options go without credentials: each pod gets those from its own environment (a
    Kubernetes Secret, an instance role).

    >>> batch_parameters("s3://b/r", "2026-10", ["DE/q/o"], {"key": "AKIA", "secret": "x",
    ...                  "client_kwargs": {"endpoint_url": "http://s3"}}, 2)["storage_options"]
    {'client_kwargs': {'endpoint_url': 'http://s3'}}
    """
    return {
        "output": output,
        "wave": wave,
        "keys": list(keys),
        "storage_options": without_credentials(storage_options),
        "workers": workers,
        # The wave's lease holder: each fit checks it still holds the wave before writing.
        "run_id": run_id,
    }


def fit_on_deployment(
    deployment: str,
    output: str,
    wave: str,
    keys: Sequence[str],
    storage_options: Mapping[str, Any],
    workers: int | None,
    batch_size: int,
    poll_seconds: float = 5.0,
    run_id: str | None = None,
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
        # run_deployment is sync-compatible: called from sync code it returns the FlowRun
        flow_run = cast(
            "FlowRun",
            run_deployment(
                name=deployment,
                parameters=batch_parameters(output, wave, batch, storage_options, workers, run_id),
                flow_run_name=f"fit-batch {wave} {number}/{len(batches)}",
                timeout=0,  # create them all now; the pool's limits decide how many run at once
            ),
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
