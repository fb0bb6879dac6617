"""A tracker wave through the pipeline: the MRP family's steps, then tracking and the report.

``WaveRun`` is one wave as :func:`misterp.pipeline.sequence.run_pipeline` sequences it: stage
the prepared cells (or, for a re-run, only plan from what the first run staged), fit units,
publish with the tracker's views (funnel, competitors), update changes and trends, write the
report. ``run_wave_inline`` runs it in this process, one fit after another, with no
orchestrator, for notebooks, tests and benches; the Prefect flows (``flows/wave.py``) run the
same steps as tasks and fan the fits out to processes or pods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from misterp.lease import DEFAULT_STALE_AFTER, Lease, acquire_lease
from misterp.mrp.config import WaveConfig
from misterp.mrp.fits import RefitPlan, plan_refits, read_current_fits
from misterp.mrp.model import BACKENDS, Backend
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.published import WaveView
from misterp.mrp.records import FitRecord
from misterp.mrp.staging import open_staged_wave, stage_wave
from misterp.mrp.wave import WaveOutcome, fit_and_record, publish_wave
from misterp.pipeline.sequence import (
    FamilyRun,
    FanOut,
    PipelineOutcome,
    StepRunner,
    call_step,
    fan_out_of,
    run_pipeline,
)
from misterp.reporting.write import ReportOutcome, update_report
from misterp.storage import ResultStore
from misterp.tracking.comparisons import COMPARISONS_VIEW
from misterp.tracking.competitors import COMPETITORS_VIEW
from misterp.tracking.funnel import FUNNEL_VIEW
from misterp.tracking.smoothed import check_smoothing_window
from misterp.tracking.update import TrackingOutcome, update_tracking

__all__ = [
    "WAVE_VIEWS",
    "TrackedWave",
    "WaveRun",
    "inline_fan_out",
    "open_staged_run",
    "run_wave_inline",
    "run_wave_steps",
    "tracked",
]

logger = logging.getLogger(__name__)

#: The tables published beside every wave's estimates, before its manifest.
WAVE_VIEWS: tuple[WaveView, ...] = (FUNNEL_VIEW, COMPETITORS_VIEW, COMPARISONS_VIEW)


@dataclass
class TrackedWave(WaveOutcome):
    """A published wave with how its tracking and report steps ended."""

    #: How the changes and trends step ended (None until it has run).
    tracking: TrackingOutcome | None = None
    #: How the report step ended (None until it has run).
    report: ReportOutcome | None = None


@dataclass
class WaveRun:
    """One tracker wave, validated and planned, as the pipeline runs it.

    Constructing it is the end of validation: it checks what needs the results root (the
    smoothing window against the waves published) and raises before anything is written.

    ``restage``: write the prepared cells (a run) or only plan from what the first run staged
    (a re-run: the raw input is not read again).
    """

    prepared: PreparedWave
    refit_all: bool = False
    restage: bool = True
    stale_after: float = DEFAULT_STALE_AFTER
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        """Refuse, before the lease or any write, what the tracking step could not do.

        A smoothing window longer than the waves published is a config error the run would
        otherwise only meet after publishing (``SmoothingWindowError``, exit 2).
        """
        check_smoothing_window(self.store, self.wave, self.prepared.config.tracking)

    @property
    def wave(self) -> str:
        """The wave id."""
        return self.prepared.wave_id

    @property
    def store(self) -> ResultStore:
        """The results root the wave is written to."""
        config = self.prepared.config
        return ResultStore(config.output, config.storage_options)

    def lease(self, *, force: bool, note: str | None) -> AbstractContextManager[Lease]:
        """The wave's lease (``OUTPUT/WAVE/lease.json``)."""
        return acquire_lease(
            self.store, self.wave, force=force, note=note, stale_after=self.stale_after
        )

    def stage(self) -> RefitPlan:
        """Stage the cells once (unless re-running) and decide which models need a fit."""
        store = self.store
        if self.restage:
            stage_wave(self.prepared, store)
        plan = plan_refits(
            store,
            self.wave,
            self.prepared.planned_fits(),
            self.prepared.settings_hash,
            refit_all=self.refit_all,
        )
        logger.info(
            "wave %s: %d models over %d markets; %s",
            self.wave,
            len(self.prepared.specs),
            len(self.prepared.layouts),
            plan.summary(),
        )
        return plan

    def units(self, plan: RefitPlan) -> list[str]:
        """The fit units of the models to fit: a joint family is one unit."""
        return self.prepared.fit_units(plan.to_fit)

    def publish(self, run_id: str) -> WaveOutcome:
        """Publish the current fit records with the tracker's views, the manifest last."""
        prepared = self.prepared
        fits = read_current_fits(
            self.store, self.wave, prepared.planned_fits(), prepared.settings_hash
        )
        return publish_wave(
            prepared, fits, views=WAVE_VIEWS, started_at=self.started, run_id=run_id
        )

    def track(self, published: WaveOutcome) -> TrackingOutcome:
        """Changes against earlier waves and the trend table (never raises)."""
        return update_tracking(self.store, published.wave_id, self.prepared.config.tracking)

    def report(self, published: WaveOutcome) -> ReportOutcome:
        """The analyst report, after the changes and trends it reads (never raises)."""
        return update_report(self.store, published.wave_id)


WaveSteps = PipelineOutcome[RefitPlan, WaveOutcome, TrackingOutcome, ReportOutcome]
WaveFamilyRun = FamilyRun[RefitPlan, WaveOutcome, TrackingOutcome, ReportOutcome]


def tracked(steps: WaveSteps) -> TrackedWave:
    """The published wave with its tracking and report outcomes."""
    published = steps.published
    return TrackedWave(
        published.wave_id,
        published.output_uri,
        published.estimates,
        published.manifest,
        tracking=steps.tracking,
        report=steps.report,
    )


def run_wave_steps(
    validate: Callable[[], WaveRun],
    *,
    fan_out: FanOut[WaveRun],
    steps: StepRunner = call_step,
    force: bool = False,
    note: str | None = None,
) -> WaveSteps:
    """The pipeline for one wave, with a fan-out that fits a ``WaveRun``'s units."""
    fit_units: FanOut[WaveFamilyRun] = fan_out_of(WaveRun, fan_out)
    return run_pipeline(validate, fan_out=fit_units, steps=steps, force=force, note=note)


def inline_fan_out(
    *,
    backends: Mapping[str, Backend] = BACKENDS,
    progress: Callable[[FitRecord, int, int], None] | None = None,
) -> FanOut[WaveRun]:
    """Fit the units in this process, one after another (``progress`` after each)."""

    def fit_units(run: WaveRun, units: Sequence[str], run_id: str) -> None:
        prepared, store = run.prepared, run.store
        for number, key in enumerate(units, start=1):
            record = fit_and_record(
                prepared, prepared.spec(key), store, backends=backends, run_id=run_id
            )
            if progress is not None:
                progress(record, number, len(units))

    return fit_units


def run_wave_inline(
    config: WaveConfig,
    progress: Callable[[FitRecord, int, int], None] | None = None,
    *,
    refit_all: bool = False,
    backends: Mapping[str, Backend] = BACKENDS,
    force: bool = False,
    stale_after: float = DEFAULT_STALE_AFTER,
) -> TrackedWave:
    """Run a whole wave in this process, one fit after another, with no orchestrator.

    Like the flow, it stages the wave and reuses stored converged fits whose spec, data and
    settings are unchanged; ``refit_all`` fits every model again. After publishing, the wave's
    changes and the trend table are updated (``misterp.tracking.update``), then its report is
    written (``misterp.reporting.write``). The wave's lease is taken after validation and
    before staging, and released after the report or on failure; ``force`` takes it over from
    a run that looks alive (``RunLocked`` otherwise); ``stale_after``: seconds without a
    heartbeat after which another run may take it over.
    """
    started = time.perf_counter()

    def validate() -> WaveRun:
        prepared = prepare_wave(config)
        return WaveRun(prepared, refit_all=refit_all, stale_after=stale_after, started=started)

    fan_out = inline_fan_out(backends=backends, progress=progress)
    return tracked(run_wave_steps(validate, fan_out=fan_out, force=force))


def open_staged_run(
    output: str,
    wave: str,
    storage_options: Mapping[str, object],
    *,
    started: float | None = None,
) -> WaveRun:
    """A re-run of a staged wave: plans from what the first run staged, restages nothing.

    The raw input is not read again, so the re-run fits exactly the data the first run planned.
    """
    prepared = open_staged_wave(output, wave, dict(storage_options))
    return WaveRun(
        prepared, restage=False, started=time.perf_counter() if started is None else started
    )
