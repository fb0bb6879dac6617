"""A media-mix run through the pipeline: the MMM family's steps, then its report.

``MMMRun`` is one media-mix run as :func:`misterp.pipeline.sequence.run_pipeline` sequences
it: stage every market's prepared input, fit the markets that have no reusable fit (one unit,
``pooled``, with ``pooling: hierarchical``), publish the tables and the manifest last, write
the report. Media mix has no tracking across runs yet: that step is a no-op. ``run_mmm`` runs
it in this process (markets one after another, or in local processes), for notebooks, tests
and benches; the Prefect flows (``flows/mmm_flow.py``) run the same steps as tasks and fan the
markets out to processes or pods.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from misterp.ids import id_problem
from misterp.lease import DEFAULT_SETTLE, DEFAULT_STALE_AFTER, Lease
from misterp.mmm.config import MMMConfig, Pooling
from misterp.mmm.model import MarketInput, prepare_market
from misterp.mmm.outputs import MMMFitRecord
from misterp.mmm.pooled import POOLED_KEY
from misterp.mmm.run import (
    FitFunctions,
    MMMRunOutcome,
    PooledFitFunctions,
    check_poolable,
    fit_market,
    fit_pooled,
    publish_run,
    pymc_marketing_fit,
    pymc_marketing_pooled_fit,
)
from misterp.mmm.staging import lease_run, read_staged_run, run_folder, stage_run, staged_config
from misterp.mmm.validation import MMMData, read_mmm_input
from misterp.mmm.worker import LOST_MARKET, current_records, markets_to_fit, record_lost_market
from misterp.pipeline.sequence import (
    FamilyRun,
    FanOut,
    PipelineOutcome,
    StepRunner,
    call_step,
    fan_out_of,
    run_pipeline,
)
from misterp.processes import die_with_parent
from misterp.reporting.mmm_report import MMMReportOutcome, update_mmm_report
from misterp.storage import ResultStore

__all__ = [
    "MMMRun",
    "MMMSteps",
    "ReportedMMMRun",
    "inline_fan_out",
    "reported",
    "run_mmm",
    "run_mmm_steps",
    "validate_mmm_run",
]

logger = logging.getLogger(__name__)


@dataclass
class ReportedMMMRun(MMMRunOutcome):
    """A published media-mix run with how its report step ended."""

    #: How the report step ended (written after the manifest; a failure never unpublishes).
    report: MMMReportOutcome | None = None


@dataclass
class MMMRun:
    """One media-mix run, validated, with every market's prepared input, as the pipeline runs it."""

    config: MMMConfig
    data: MMMData
    run: str
    inputs: dict[str, MarketInput]
    store: ResultStore
    refit_all: bool = False
    settle: float = DEFAULT_SETTLE
    stale_after: float = DEFAULT_STALE_AFTER
    started: float = field(default_factory=time.perf_counter)

    def lease(self, *, force: bool, note: str | None) -> AbstractContextManager[Lease]:
        """The run's lease (``OUTPUT/mmm/RUN/lease.json``)."""
        return lease_run(
            self.store,
            self.run,
            force=force,
            note=note,
            settle=self.settle,
            stale_after=self.stale_after,
        )

    def stage(self) -> list[str]:
        """Retract the run, stage every market's input, and name the fit units to run."""
        store, config, data = self.store, self.config, self.data
        store.retract(run_folder(self.run))  # an interrupted run must never look complete
        staged = stage_run(
            store,
            self.run,
            config,
            self.inputs,
            dropped=data.dropped,
            input_hashes=data.input_hashes,
            notes=data.notes,
            refit_all=self.refit_all,
        )
        units = markets_to_fit(store, staged, config)
        logger.info("media-mix run %s: %d markets to fit", self.run, len(units))
        return units

    def units(self, plan: list[str]) -> list[str]:
        """The markets to fit (or the one pooled fit)."""
        return plan

    def publish(self, run_id: str) -> MMMRunOutcome:
        """Every market's current record (a lost one recorded failed), then tables, manifest."""
        store, config = self.store, self.config
        staged = read_staged_run(store, self.run)
        found = current_records(store, staged, staged_config(staged, config.output))
        records = {
            market: found.get(market)
            or record_lost_market(
                config.output,
                self.run,
                market,
                LOST_MARKET,
                config.storage_options,
                run_id=run_id,
            )
            for market in self.inputs
        }
        return publish_run(
            config, store, self.run, self.data, self.inputs, records, self.started, run_id=run_id
        )

    def track(self, published: MMMRunOutcome) -> None:
        """Media-mix runs are not tracked across runs yet."""
        return None

    def report(self, published: MMMRunOutcome) -> MMMReportOutcome:
        """The media-mix report, after the manifest (never raises)."""
        return update_mmm_report(self.store, published.run)


def validate_mmm_run(
    config: MMMConfig,
    store: ResultStore | None = None,
    *,
    data: MMMData | None = None,
    refit_all: bool = False,
    settle: float = DEFAULT_SETTLE,
    stale_after: float = DEFAULT_STALE_AFTER,
    started: float | None = None,
) -> MMMRun:
    """Read and validate the input and prepare every market (writes nothing).

    Raises ``InputValidationError`` with every problem of the input, and ``ConfigError`` when
    ``pooling: hierarchical`` cannot pool these markets.
    """
    started = time.perf_counter() if started is None else started
    data = data if data is not None else read_mmm_input(config)
    store = store or ResultStore(config.output, config.storage_options)
    run = config.run or str(data.last_week.date())
    assert id_problem(run) is None
    markets = [m for m in data.markets if config.markets is None or m in config.markets]
    inputs = {market: prepare_market(data, market, config) for market in markets}
    if config.pooling is Pooling.HIERARCHICAL:
        check_poolable(list(inputs.values()))  # before the lease: a refused run writes nothing
    return MMMRun(
        config,
        data,
        run,
        inputs,
        store,
        refit_all=refit_all,
        settle=settle,
        stale_after=stale_after,
        started=started,
    )


MMMSteps = PipelineOutcome[list[str], MMMRunOutcome, None, MMMReportOutcome]
MMMFamilyRun = FamilyRun[list[str], MMMRunOutcome, None, MMMReportOutcome]


def reported(steps: MMMSteps) -> ReportedMMMRun:
    """The published run with its report outcome."""
    published = steps.published
    return ReportedMMMRun(
        published.run,
        published.output_uri,
        published.manifest,
        published.roas,
        published.diagnostics,
        report=steps.report,
    )


def run_mmm_steps(
    validate: Callable[[], MMMRun],
    *,
    fan_out: FanOut[MMMRun],
    steps: StepRunner = call_step,
    force: bool = False,
    note: str | None = None,
) -> MMMSteps:
    """The pipeline for one media-mix run, with a fan-out that fits an ``MMMRun``'s units."""
    fit_units: FanOut[MMMFamilyRun] = fan_out_of(MMMRun, fan_out)
    return run_pipeline(validate, fan_out=fit_units, steps=steps, force=force, note=note)


def _workers(config: MMMConfig, n_markets: int, override: int | None) -> int:
    """Processes to use: each fit's chains want about two cores on a small machine."""
    wanted = override or config.workers or max(1, (os.cpu_count() or 1) // 2)
    return max(1, min(wanted, n_markets))


def inline_fan_out(
    *,
    workers: int | None = None,
    functions: FitFunctions = pymc_marketing_fit,
    pooled_functions: PooledFitFunctions = pymc_marketing_pooled_fit,
    progress: Callable[[MMMFitRecord], None] | None = None,
) -> FanOut[MMMRun]:
    """Fit the markets from their inputs in memory: in this process, or in local processes.

    ``workers``: markets fitted at once (1: one after another); ``functions`` builds each
    market's sample/extract/diagnose (tests inject a sampler that samples nothing);
    ``progress`` is called with each market's record as it finishes.
    """

    def fit_units(run: MMMRun, units: Sequence[str], run_id: str) -> None:
        config, data = run.config, run.data
        if list(units) == [POOLED_KEY]:
            records = fit_pooled(
                list(run.inputs.values()),
                config,
                run.run,
                dropped=data.dropped,
                refit=run.refit_all,
                functions=pooled_functions,
                run_id=run_id,
            )
            for record in records.values():
                if progress is not None:
                    progress(record)
            return
        n_workers = _workers(config, len(units), workers)
        common: dict[str, Any] = {
            "refit": run.refit_all,
            "functions": functions,
            "run_id": run_id,
        }
        if n_workers == 1:
            for market in units:
                record = fit_market(
                    run.inputs[market],
                    config,
                    run.run,
                    dropped=tuple(data.dropped.get(market, ())),
                    **common,
                )
                if progress is not None:
                    progress(record)
            return
        cores = max(1, (os.cpu_count() or 1) // n_workers)
        # spawn, not fork: the parent holds threads (BLAS, nutpie) that a fork would copy
        # mid-flight, and a forked child can deadlock on a lock one of them held. Each worker
        # dies with this process: after a kill -9 of the run it would fit on and write fits/
        # for a run that is gone. The pool starts its workers from this thread, which waits
        # for them below, so the death signal fires only when this process goes.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=n_workers,
            mp_context=context,
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [
                pool.submit(
                    fit_market,
                    run.inputs[market],
                    config,
                    run.run,
                    dropped=tuple(data.dropped.get(market, ())),
                    cores=cores,
                    **common,
                )
                for market in units
            ]
            for future in futures:
                record = future.result()
                if progress is not None:
                    progress(record)

    return fit_units


def run_mmm(
    config: MMMConfig,
    store: ResultStore | None = None,
    *,
    workers: int | None = None,
    refit_all: bool = False,
    functions: FitFunctions = pymc_marketing_fit,
    progress: Callable[[MMMFitRecord], None] | None = None,
    data: MMMData | None = None,
    pooled_functions: PooledFitFunctions = pymc_marketing_pooled_fit,
    force: bool = False,
    settle: float = DEFAULT_SETTLE,
    stale_after: float = DEFAULT_STALE_AFTER,
) -> ReportedMMMRun:
    """Validate the input, fit every market, publish the tables, the manifest last, and report.

    Parameters
    ----------
    config
        The run's config.
    store
        Results root; default: ``config.output``.
    workers
        Markets fitted at once (processes); 1: in this process, one after another.
    refit_all
        Refit converged markets whose data and settings did not change.
    functions
        Builds each market's sample/extract/diagnose; tests inject a fake sampler here.
    pooled_functions
        The same for the one model of all markets with ``pooling: hierarchical``.
    progress
        Called with each fitted market's record as it finishes (reused markets are not fitted).
    data
        Already validated input (skips reading ``config.input`` again).
    force, settle, stale_after
        The run's lease (``OUTPUT/mmm/RUN/lease.json``, taken after validation and released
        at the end): ``force`` takes it over from a run that looks alive; see
        :func:`misterp.lease.acquire_lease` for the other two.

    Raises
    ------
    InputValidationError
        With every problem of the input; nothing is written.
    RunLocked
        Another live run of the same run id holds its lease; nothing is written.
    """
    started = time.perf_counter()

    def validate() -> MMMRun:
        return validate_mmm_run(
            config,
            store,
            data=data,
            refit_all=refit_all,
            settle=settle,
            stale_after=stale_after,
            started=started,
        )

    fan_out = inline_fan_out(
        workers=workers, functions=functions, pooled_functions=pooled_functions, progress=progress
    )
    return reported(run_mmm_steps(validate, fan_out=fan_out, force=force))
