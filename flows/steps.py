"""Each step of the pipeline as a Prefect task: the flows' step runner.

``misterp.pipeline`` runs validate -> lease -> stage -> fit -> publish -> track -> report once
for any family and asks a step runner to run each step. This one runs each as a Prefect task
named for the step and the run (``stage wave 2026-11``), so the UI shows the sequence, with
retries only on infrastructure for the steps that read or write the store; tracking and
reporting never raise, so they are never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.tasks import retry_infrastructure_only
from misterp.pipeline.sequence import StepName

__all__ = ["STEP_RETRIES", "PrefectSteps"]


_IO_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": 10,
    "retry_condition_fn": retry_infrastructure_only,
}

#: Prefect retries per step: reading, staging and publishing retry a store that timed out;
#: tracking and the report record their own failure and never raise.
STEP_RETRIES: dict[StepName, dict[str, Any]] = {
    "validate": _IO_RETRIES,
    "stage": _IO_RETRIES,
    "publish": _IO_RETRIES,
    "track": {},
    "report": {},
}


class PrefectSteps:
    """Runs each pipeline step as a Prefect task of the current flow run.

    ``family`` names the tasks (``stage-wave``, ``publish-mmm``); ``subject`` names their runs
    (``wave 2026-11``, ``media-mix run r1``).
    """

    def __init__(self, family: str, subject: str) -> None:
        self.family = family
        self.subject = subject

    def __call__[ResultT](
        self, name: StepName, step: Callable[..., ResultT], /, *args: Any
    ) -> ResultT:
        """Run ``step`` as the task ``NAME-FAMILY`` and return its result (raising its error)."""

        def run_step(*values: Any) -> ResultT:
            return step(*values)

        as_task = task(
            run_step,
            name=f"{name}-{self.family}",
            task_run_name=f"{name} {self.subject}",
            cache_policy=NO_CACHE,
            **STEP_RETRIES[name],
        )
        result: ResultT = as_task(*args)
        return result
