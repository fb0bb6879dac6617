"""Fit tasks that sample nothing, for the fan-out tests.

A separate module, imported by name in the pool's worker processes: it imports Prefect and
``misterp.records`` only, so a worker starts in seconds instead of importing PyMC.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from prefect import flow, task

from misterp.records import FitSummary
from misterp.status import FitStatus

#: The model whose fit kills its own worker process, on every attempt (a planted OOM kill).
KILLER = "DE/killer/yes"
#: The model whose first fit meets a store outage (with ``FIT_LOG`` set).
FLAKY = "DE/flaky/yes"
#: The environment variable naming the file ``fit_or_die`` logs each started fit to.
FIT_LOG = "MISTERP_TEST_FIT_LOG"
#: How long a fake fit takes: long enough that the other worker is mid-fit when one dies.
SECONDS = 1.0


@task(task_run_name="fit {key}")
def fit_or_die(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """Pretend to fit ``key``; the ``KILLER`` model's fit SIGKILLs its own worker halfway.

    With ``FIT_LOG`` set in the environment, each fit that starts appends its key to that file,
    and the ``FLAKY`` model's first fit fails as a store outage does.
    """
    if os.environ.get(FIT_LOG):
        with open(os.environ[FIT_LOG], "a") as log:
            log.write(f"{key}\n")
        with open(os.environ[FIT_LOG]) as log:
            if key == FLAKY and log.read().split().count(FLAKY) == 1:
                raise ConnectionError("store timed out (planted, first attempt only)")
    if key == KILLER:
        time.sleep(SECONDS / 2)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(SECONDS)
    return FitSummary(key=key, status=FitStatus.CONVERGED, attempts=1, seconds=SECONDS)


#: What ``record_in_memory`` was called with, in the flow's process.
RECORDED: list[dict[str, Any]] = []


def record_in_memory(**call: Any) -> FitSummary:
    """A lost-fit recorder that keeps its calls in ``RECORDED`` instead of writing a store."""
    RECORDED.append(call)
    return FitSummary(
        key=call["key"], status=FitStatus.FAILED, attempts=1, seconds=0.0, error=call["reason"]
    )


@flow
def fan_out(keys: list[str], workers: int, per_task: int | None = None) -> list[FitSummary]:
    """``fit_in_processes`` with ``fit_or_die``, in a flow defined here: the pool pickles the
    flow with its context, and a worker importing the test module would import PyMC too."""
    from flows.dispatch import fit_in_processes

    return fit_in_processes(
        "memory://results",
        "2026-10",
        keys,
        {},
        workers,
        fit=fit_or_die,
        record=record_in_memory,
        per_task=per_task,
    )
