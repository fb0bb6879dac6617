"""What one Prefect task costs a fit worker when the task itself does nothing.

A wave's fits run as Prefect tasks in a process pool (``flows.dispatch``). Besides the fits,
every task run is created through the API, moves through its states and emits events: this is
why a task run carries up to 8 fits (``flows.dispatch.fits_per_task``) and no longer one.
This bench runs ``--tasks`` no-op tasks, with the fit task's options (its run name from the
key, 2 retries), in a pool of ``--workers`` processes started as the wave starts them
(``flows.runtime.init_fit_worker``), against a temporary local Prefect API, once with
Prefect's default cache policy (what ``flows.tasks.fit_model`` has) and once with
``NO_CACHE``, each twice, in turns. It prints, per run, the seconds from the first submit to
the last result and the worker-milliseconds per task (seconds x workers / tasks); the first
few seconds of each run are the pool's workers starting (their imports).

Run from the repository root: ``.venv/bin/python bench/prefect_task_overhead.py`` (~2 minutes).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner

from flows.runtime import init_fit_worker, local_prefect_api


@task(task_run_name="fit {key}", retries=2, retry_delay_seconds=5)
def noop_with_default_cache(key: str, options: dict[str, Any]) -> str:
    """Nothing, under Prefect's default cache policy (as the fit task)."""
    return key


@task(task_run_name="fit {key}", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def noop_without_cache(key: str, options: dict[str, Any]) -> str:
    """Nothing, with no cache policy."""
    return key


@flow(name="prefect-task-overhead")
def run_tasks(kind: str, tasks: int, workers: int) -> float:
    """Seconds from the first submit to the last result of ``tasks`` no-op tasks."""
    noop = noop_with_default_cache if kind == "default cache" else noop_without_cache
    runner = ProcessPoolTaskRunner(
        max_workers=workers, initializer=init_fit_worker, initargs=(os.getpid(),)
    )
    with runner:
        started = time.perf_counter()
        futures = [
            runner.submit(noop, parameters={"key": f"m{i:04d}", "options": {"cores": 1}})
            for i in range(tasks)
        ]
        for future in as_completed(futures):
            future.result()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    with local_prefect_api():
        for kind in ("default cache", "no cache", "default cache", "no cache"):
            seconds = run_tasks(kind, options.tasks, options.workers)
            per_task_ms = seconds * options.workers / options.tasks * 1000
            print(
                f"{kind:14} {options.tasks} no-op tasks on {options.workers} workers: "
                f"{seconds:5.1f} s, {per_task_ms:4.0f} worker-ms a task (pool start included)",
                flush=True,
            )


if __name__ == "__main__":
    main()
