"""The media-mix fan-out's fit task and batch flow with the run tests' sampler that samples nothing.

Imported by its full name (``tests.mmm.fake_mmm_fits``) in the pool's worker processes and in
the flow-run subprocess a deployment starts, so those fit with ``fake_functions`` too. The
fan-out (``flows.dispatch``, which imports the tracker's fit stack) is imported when the batch
flow runs, so a runner serving the flow starts without it.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from prefect import flow, task
from tests.mmm.test_mmm_run import fake_functions

from misterp.mmm.worker import fit_staged_market, market_summary
from misterp.records import FitSummary

#: The pid of every process that fitted a market, as ``market: pid`` lines in this file.
PIDS_FILE = "fitted-by.txt"


@task(task_run_name="fit {key}")
def fit_fake_market(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """``flows.mmm_tasks.fit_mmm_market`` with the fake sampler; notes which process fitted."""
    record = fit_staged_market(
        output, wave, key, storage_options, cores=cores, run_id=run_id, functions=fake_functions
    )
    with open(os.path.join(output, PIDS_FILE), "a") as handle:
        handle.write(f"{key}: {os.getpid()}\n")
    return market_summary(record)


@flow(name="mmm-fit-batch")
def fake_mmm_fit_batch(
    output: str,
    wave: str,
    keys: list[str],
    storage_options: dict[str, Any] | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """``flows.mmm_fit_batch.mmm_fit_batch`` with ``fit_fake_market``."""
    from flows.dispatch import fit_in_processes
    from flows.mmm_tasks import record_lost_mmm_market

    summaries = fit_in_processes(
        output,
        wave,
        keys,
        storage_options or {},
        workers,
        run_id,
        fit=fit_fake_market,
        record=record_lost_mmm_market,
    )
    return dict(Counter(summary.status.value for summary in summaries))
