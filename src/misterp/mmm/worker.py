"""What one fit worker (a local process or a pod) runs for one market of a staged media-mix run.

Both take ``(output, run, market)`` and the worker's own storage options, read the staged run
(:mod:`misterp.mmm.staging`) and write the market's record under ``OUTPUT/mmm/RUN/fits/``,
exactly as :func:`misterp.mmm.run.fit_market` does for an inline run. With a ``run_id`` (the
run holding the run's lease) the lease is checked before fitting and again before writing, so
a run that was taken over writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from misterp.fitstore import write_fit_files
from misterp.mmm.config import MMMConfig, Pooling
from misterp.mmm.outputs import MMMFitRecord
from misterp.mmm.pooled import POOLED_KEY, pooled_hash
from misterp.mmm.run import (
    FitFunctions,
    PooledFitFunctions,
    fit_market,
    fit_pooled,
    pymc_marketing_fit,
    pymc_marketing_pooled_fit,
    read_fit_record,
    reusable_fit,
    settings_hash,
)
from misterp.mmm.staging import (
    StagedMMMRun,
    check_mmm_id,
    check_run_holder,
    open_staged_market,
    read_staged_run,
    run_folder,
    staged_config,
)
from misterp.records import Attempt, FitSummary
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "LOST_MARKET",
    "current_records",
    "expected_data_hashes",
    "fit_staged_market",
    "fit_staged_pooled",
    "market_summary",
    "markets_to_fit",
    "record_lost_market",
]

#: The error of a market that has no current record after the fan-out: its pod or its worker
#: was lost before the fit wrote anything.
LOST_MARKET = (
    "no fit record: the batch or worker that fitted this market was lost before it wrote "
    "one; run the run again to refit it"
)


def expected_data_hashes(staged: StagedMMMRun, config: MMMConfig) -> dict[str, str]:
    """The data hash each market's current record must carry.

    The market's own, or with ``pooling: hierarchical`` the hash of all markets' data (a
    pooled posterior depends on every market).
    """
    own = {market: meta.data_hash for market, meta in staged.markets.items()}
    if config.pooling is Pooling.HIERARCHICAL:
        return dict.fromkeys(own, pooled_hash(own))
    return own


def markets_to_fit(store: ResultStore, staged: StagedMMMRun, config: MMMConfig) -> list[str]:
    """The fit keys a run must fit: all with ``refit_all``, else those with no reusable fit.

    A fit is reused when it converged, from this data and these settings, with its draws. The
    keys are markets, or with ``pooling: hierarchical`` the one key ``POOLED_KEY`` (all markets
    are one fit) when any market lacks a reusable fit.
    """
    digest = settings_hash(config)
    expected = expected_data_hashes(staged, config)
    missing = [
        market
        for market in staged.markets
        if staged.refit_all
        or reusable_fit(store, staged.run, market, expected[market], digest) is None
    ]
    if config.pooling is Pooling.HIERARCHICAL:
        return [POOLED_KEY] if missing else []
    return missing


def current_records(
    store: ResultStore, staged: StagedMMMRun, config: MMMConfig
) -> dict[str, MMMFitRecord | None]:
    """Each market's stored record if it was fitted from the staged data and settings."""
    digest = settings_hash(config)
    expected = expected_data_hashes(staged, config)
    found: dict[str, MMMFitRecord | None] = {}
    for market in staged.markets:
        record = read_fit_record(store, staged.run, market)
        current = record is not None and record.is_current(expected[market], digest)
        found[market] = record if current else None
    return found


def market_summary(record: MMMFitRecord) -> FitSummary:
    """What a worker reports back to the dispatcher: the tracker's summary, keyed by market."""
    last = record.attempts[-1] if record.attempts else None
    report = last.report if last is not None else None
    stats: dict[str, Any] = {}
    if report is not None:
        stats = {
            name: None if pd.isna(value) else float(value)
            for name in ("r_hat_max", "ess_bulk_min", "ess_tail_min", "bfmi_min")
            if (value := getattr(report, name)) is not None
        }
        stats["divergences"] = report.divergences
    return FitSummary(
        key=record.market,
        status=record.status,
        attempts=len(record.attempts),
        seconds=record.seconds,
        error=last.error if last is not None else None,
        failures=last.failures if last is not None else (),
        **stats,
    )


def fit_staged_market(
    output: str,
    run: str,
    market: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    cores: int | None = None,
    run_id: str | None = None,
    functions: FitFunctions = pymc_marketing_fit,
) -> MMMFitRecord:
    """Fit one market of a staged run (or reuse its current converged fit) and record it.

    Raises
    ------
    LeaseLost
        ``run_id`` no longer holds the run: nothing is written.
    StagedRunMissing
        The run was never staged in ``output``.
    """
    store = ResultStore(output, storage_options)
    staged = read_staged_run(store, check_mmm_id(run, "run"))
    market_input = open_staged_market(store, run, market, staged)
    if run_id is not None:  # a run that lost its lease does not spend the CPU
        check_run_holder(store, run, run_id)
    return fit_market(
        market_input,
        staged_config(staged, output, storage_options),
        run,
        dropped=staged.markets[market].dropped_channels,
        cores=cores,
        refit=staged.refit_all,
        functions=functions,
        run_id=run_id,
    )


def fit_staged_pooled(
    output: str,
    run: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    cores: int | None = None,
    run_id: str | None = None,
    functions: PooledFitFunctions = pymc_marketing_pooled_fit,
) -> dict[str, MMMFitRecord]:
    """Fit every market of a staged ``pooling: hierarchical`` run as one model, and record each.

    Raises
    ------
    LeaseLost
        ``run_id`` no longer holds the run: nothing is written.
    """
    store = ResultStore(output, storage_options)
    staged = read_staged_run(store, check_mmm_id(run, "run"))
    markets = [open_staged_market(store, run, market, staged) for market in staged.markets]
    if run_id is not None:
        check_run_holder(store, run, run_id)
    return fit_pooled(
        markets,
        staged_config(staged, output, storage_options),
        run,
        dropped={market: meta.dropped_channels for market, meta in staged.markets.items()},
        cores=cores,
        refit=staged.refit_all,
        functions=functions,
        run_id=run_id,
    )


def record_lost_market(
    output: str,
    run: str,
    market: str,
    reason: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
) -> MMMFitRecord:
    """Record a market whose worker died as failed, with ``reason`` as its error.

    A killed process writes nothing; with this record the diagnostics say what happened, and
    a re-run refits the market like any failed one.
    """
    store = ResultStore(output, storage_options)
    staged = read_staged_run(store, check_mmm_id(run, "run"))
    market_input = open_staged_market(store, run, market, staged)
    config = staged_config(staged, output, storage_options)
    if run_id is not None:  # fencing, as for a fit
        check_run_holder(store, run, run_id)
    fit = market_input.fit_frame
    record = MMMFitRecord(
        market=market,
        channels=market_input.channels,
        dropped_channels=staged.markets[market].dropped_channels,
        data_hash=expected_data_hashes(staged, config)[market],
        settings_hash=settings_hash(config),
        status=FitStatus.FAILED,
        attempts=(
            Attempt(sampler=config.sampler, report=None, status=FitStatus.FAILED, error=reason),
        ),
        seconds=0.0,
        n_weeks=len(fit),
        holdout_weeks=market_input.holdout_weeks,
        first_week=str(pd.Timestamp(fit["date"].iloc[0]).date()),
        last_week=str(pd.Timestamp(fit["date"].iloc[-1]).date()),
        has_draws=False,
        run_id=run_id,
    )
    write_fit_files(store, run_folder(run), market, None, record)
    return record
