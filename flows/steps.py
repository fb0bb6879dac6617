"""Each step of the pipeline as a Prefect task: the flows' step runner.

``misterp.pipeline`` runs validate -> lease -> stage -> fit -> publish -> track -> report once
for any family and asks a step runner to run each step. This one runs each as a Prefect task
named for the step and the run (``stage wave 2026-11``), so the UI shows the sequence, with
retries only on infrastructure for the steps that read or write the store; tracking and
reporting never raise, so they are never retried.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.tasks import retry_infrastructure_only
from misterp.pipeline.sequence import StepName

__all__ = ["RETRY_DELAY_SECONDS", "STEP_RETRIES", "PrefectSteps"]


#: Prefect retries per step: reading, staging and publishing retry a store that timed out
#: (only infrastructure: ``retry_infrastructure_only``); tracking and the report record their
#: own failure and never raise.
STEP_RETRIES: dict[StepName, int] = {
    "validate": 2,
    "stage": 2,
    "publish": 2,
    "track": 0,
    "report": 0,
}
#: Seconds between those retries.
RETRY_DELAY_SECONDS = 10


class PrefectSteps:
    """Runs each pipeline step as a Prefect task of the current flow run.

    ``family`` names the tasks (``stage-wave``, ``publish-mmm``); ``subject`` names their runs
    (``wave 2026-11``, ``media-mix run r1``).
    """

    def __init__(self, family: str, subject: str) -> None:
        self.family = family
        self.subject = subject

    def __call__[ResultT](
        self, name: StepName, step: Callable[..., ResultT], /, *args: object
    ) -> ResultT:
        """Run ``step`` as the task ``NAME-FAMILY`` and return its result (raising its error)."""

        def run_step(*values: object) -> ResultT:
            return step(*values)

        as_task = task(
            name=f"{name}-{self.family}",
            task_run_name=f"{name} {self.subject}",
            cache_policy=NO_CACHE,
            retries=STEP_RETRIES[name],
            retry_delay_seconds=RETRY_DELAY_SECONDS,
            retry_condition_fn=retry_infrastructure_only,
        )(run_step)
        return as_task(*args)
