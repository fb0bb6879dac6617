"""The steps of a run, in order, once for every family: the pipeline's only sequence.

A family describes one run of its own as a :class:`FamilyRun` (how to take its lease, stage
it, name its fit units, publish, track and report it); :func:`run_pipeline` validates it,
takes its lease, stages, fans the fit units out, then publishes, tracks and reports under the
lease. Who runs each step (a plain call, a Prefect task with retries on I/O) and how the fits
are fanned out (one after another, worker processes, pods) are handed in, so the command line's
inline path and the Prefect flows share this sequence instead of writing it out again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from misterp.lease import Lease

__all__ = [
    "FamilyRun",
    "FanOut",
    "PipelineOutcome",
    "StepName",
    "StepRunner",
    "call_step",
    "fan_out_of",
    "run_pipeline",
]

#: The steps a runner is asked to run, by name (a Prefect runner keys its options on them).
StepName = str


class StepRunner(Protocol):
    """Runs one named step: ``call_step`` calls it; the flows run it as a Prefect task."""

    def __call__[ResultT](
        self, name: StepName, step: Callable[..., ResultT], /, *args: object
    ) -> ResultT:
        """Run ``step(*args)`` as the step ``name`` and return its result (raising its error)."""
        ...


def call_step[ResultT](name: StepName, step: Callable[..., ResultT], /, *args: object) -> ResultT:
    """Run a step in this process, as it is: the inline runner."""
    return step(*args)


#: Fits ``units`` (fit-unit keys) of a staged run for the run holding its lease (``run_id``);
#: returns once each is recorded (a lost one recorded failed).
type FanOut[RunT] = Callable[[RunT, Sequence[str], str], None]


class FamilyRun[PlanT, PublishedT, TrackedT, ReportT](Protocol):
    """One validated run of a model family, as the pipeline sequences it."""

    def lease(self, *, force: bool, note: str | None) -> AbstractContextManager[Lease]:
        """Take the run's lease (refused while another live run holds it)."""
        ...

    def stage(self) -> PlanT:
        """Write what the fits read and decide what must be fitted."""
        ...

    def units(self, plan: PlanT) -> Sequence[str]:
        """The fit units the fan-out runs for ``plan`` (empty when everything is reused)."""
        ...

    def publish(self, run_id: str) -> PublishedT:
        """Publish from the stored fit records, the manifest last."""
        ...

    def track(self, published: PublishedT) -> TrackedT:
        """Follow the run across earlier runs (never raises: it records a problem)."""
        ...

    def report(self, published: PublishedT) -> ReportT:
        """Write the run's report (never raises: it records a problem)."""
        ...


@dataclass
class PipelineOutcome[Plan, Published, Tracked, Report]:
    """What each step of one run produced."""

    plan: Plan
    published: Published
    tracking: Tracked
    report: Report


def fan_out_of[RunT, PlanT, PublishedT, TrackedT, ReportT](
    run_type: type[RunT], fan_out: FanOut[RunT]
) -> FanOut[FamilyRun[PlanT, PublishedT, TrackedT, ReportT]]:
    """A family's fan-out (which reads its own run type) as the sequence hands it a run."""

    def fit_units(
        run: FamilyRun[PlanT, PublishedT, TrackedT, ReportT], units: Sequence[str], run_id: str
    ) -> None:
        if not isinstance(run, run_type):
            raise TypeError(f"this fan-out fits a {run_type.__name__}, not {type(run).__name__}")
        fan_out(run, units, run_id)

    return fit_units


def run_pipeline[PlanT, PublishedT, TrackedT, ReportT](
    validate: Callable[[], FamilyRun[PlanT, PublishedT, TrackedT, ReportT]],
    *,
    fan_out: FanOut[FamilyRun[PlanT, PublishedT, TrackedT, ReportT]],
    steps: StepRunner = call_step,
    force: bool = False,
    note: str | None = None,
) -> PipelineOutcome[PlanT, PublishedT, TrackedT, ReportT]:
    """Validate, take the lease, stage, fit, publish, track and report one run.

    Validation writes nothing, so the lease is taken only once the input is known to be good;
    it is released after the report, or on failure. Tracking and reporting run under the lease
    (they write into the run's folder) and never unpublish what was published.
    """
    run = steps("validate", validate)
    with run.lease(force=force, note=note) as lease:
        plan = steps("stage", run.stage)
        units = run.units(plan)
        if units:
            fan_out(run, units, lease.run_id)
        published = steps("publish", run.publish, lease.run_id)
        tracking = steps("track", run.track, published)
        report = steps("report", run.report, published)
    return PipelineOutcome(plan, published, tracking, report)
