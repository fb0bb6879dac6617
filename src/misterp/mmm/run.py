"""A media-mix run as plain functions: validate, fit every market, publish (manifest last).

No orchestrator: markets are fitted one after another (``workers=1``) or in local processes
(``concurrent.futures``), each through the shared retry loop, and each market's record and
draws are written the moment its fit ends. A re-run of the same run id reuses every converged
market whose data and settings are unchanged and refits the rest.

Layout of ``OUTPUT/mmm/RUN/``: ``fits/MARKET.json`` and ``fits/MARKET.npy`` (record and
draws), ``contributions.parquet``, ``roas.parquet``, ``response_curves.parquet``,
``adstock.parquet``, ``fitted.parquet``, ``diagnostics.parquet`` (``budget.parquet`` with a
budget), ``manifest.json`` last and then the report (``report/index.html``, ``report.json``:
written after the manifest, so a failing report never unpublishes the run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import SamplerConfig
from misterp.fitting import Diagnose, Extract, Sample, fit_with_policy
from misterp.ids import id_problem
from misterp.mmm.budget import BUDGET_FILE, budget_table
from misterp.mmm.config import MMMConfig
from misterp.mmm.model import (
    MarketInput,
    diagnose_fit,
    layout_for,
    market_extractor,
    market_sampler,
    prepare_market,
    thin_index,
)
from misterp.mmm.outputs import (
    ADSTOCK_FILE,
    CONTRIBUTIONS_FILE,
    FITTED_FILE,
    RESPONSE_CURVES_FILE,
    ROAS_FILE,
    MMMFitRecord,
    MMMManifest,
    fit_quality,
    market_tables,
)
from misterp.mmm.validation import MMMData, read_mmm_input
from misterp.records import ConvergenceReport, RecordError, StatusCounts
from misterp.reporting.mmm_report import MMMReportOutcome, update_mmm_report
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "DIAGNOSTICS_FILE",
    "FitFunctions",
    "MMMRunOutcome",
    "fit_market",
    "pooled_functions",
    "pymc_marketing_fit",
    "run_folder",
    "run_mmm",
]

logger = logging.getLogger(__name__)

DIAGNOSTICS_FILE = "diagnostics.parquet"

#: Builds a market's ``sample``, ``extract`` and ``diagnose`` functions for the retry loop;
#: tests pass one that samples nothing. Must be a module-level function to reach a process.
FitFunctions = Callable[[MarketInput, MMMConfig], tuple[Sample, Extract, Diagnose]]


def pymc_marketing_fit(market: MarketInput, config: MMMConfig) -> tuple[Sample, Extract, Diagnose]:
    """The real thing: pymc-marketing's MMM sampled with nutpie."""
    return market_sampler(market, config), market_extractor(market, config), diagnose_fit


def pooled_functions(
    functions: FitFunctions, market: MarketInput, config: MMMConfig
) -> tuple[Sample, Extract, Diagnose]:
    """The market's functions, fitting every KPI draw in turn and pooling the posteriors.

    With a brand metric as the KPI, ``market.versions()`` are series drawn from the tracker's
    posterior (:func:`misterp.mmm.brand.trend_draws`). Each is fitted with the same sampler
    settings; the kept draws are the evenly thinned concatenation of each fit's draws (a
    mixture, so the spread of the ROAS includes the spread the survey left in the KPI), and the
    diagnostics are the worst of the fits, so the retry loop escalates all of them together.
    Without draws this is ``functions(market, config)`` unchanged.
    """
    versions = market.versions()
    if len(versions) == 1:
        return functions(versions[0], config)
    parts = [functions(version, config) for version in versions]

    def sample(settings: SamplerConfig) -> list[Any]:
        return [part[0](settings) for part in parts]

    def extract(fitted: list[Any], settings: SamplerConfig) -> np.ndarray:
        draws = np.concatenate(
            [part[1](one, settings) for part, one in zip(parts, fitted, strict=True)]
        )
        return draws[thin_index(len(draws), settings.stored_draws)]

    def diagnose(fitted: list[Any], seconds: float) -> ConvergenceReport:
        reports = [part[2](one, seconds) for part, one in zip(parts, fitted, strict=True)]
        return worst_report(reports)

    return sample, extract, diagnose


def worst_report(reports: list[ConvergenceReport]) -> ConvergenceReport:
    """One report as bad as the worst of several fits: max R-hat, min ESS, summed divergences.

    NumPy's max and min propagate NaN (unknown), which the thresholds read as a failure.
    """
    return reports[0].model_copy(
        update={
            "r_hat_max": float(np.max([r.r_hat_max for r in reports])),
            "ess_bulk_min": float(np.min([r.ess_bulk_min for r in reports])),
            "ess_tail_min": float(np.min([r.ess_tail_min for r in reports])),
            "bfmi_min": float(np.min([r.bfmi_min for r in reports])),
            "divergences": sum(r.divergences for r in reports),
        }
    )


def run_folder(run: str) -> str:
    """Where a run lives under the results root."""
    return f"mmm/{run}"


def settings_hash(config: MMMConfig) -> str:
    """Hash of everything besides the data that decides a market's fit."""
    text = json.dumps(config.model_settings(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_record(store: ResultStore, path: str) -> MMMFitRecord | None:
    if not store.exists(path):
        return None
    try:
        return MMMFitRecord.from_json(store.read_bytes(path), store.uri(path))
    except RecordError as exc:
        logger.warning("%s; fitting again", exc)
        return None


def fit_market(
    market: MarketInput,
    config: MMMConfig,
    run: str,
    *,
    dropped: tuple[str, ...] = (),
    cores: int | None = None,
    refit: bool = False,
    functions: FitFunctions = pymc_marketing_fit,
) -> MMMFitRecord:
    """Fit one market (or reuse its current converged fit) and write draws, then record.

    Runs in a worker process as well as inline: it opens the store itself from the config.
    """
    store = ResultStore(config.output, config.storage_options)
    folder = f"{run_folder(run)}/fits"
    digest = settings_hash(config)
    previous = None if refit else _read_record(store, f"{folder}/{market.market}.json")
    if (
        previous is not None
        and previous.status is FitStatus.CONVERGED
        and previous.is_current(market.data_hash, digest)
        and store.exists(f"{folder}/{market.market}.npy")
    ):
        logger.info("market %s: converged fit reused (data and settings unchanged)", market.market)
        return previous
    sampler = (
        config.sampler if cores is None else config.sampler.model_copy(update={"cores": cores})
    )
    sample, extract, diagnose = pooled_functions(functions, market, config)
    result = fit_with_policy(
        sample,
        extract,
        key=market.market,
        sampler=sampler,
        thresholds=config.convergence,
        policy=config.retry,
        diagnose=diagnose,
    )
    quality = None
    if result.draws is not None:
        layout = layout_for(market, config)
        quality = fit_quality(market, layout.unpack(result.draws))
        store.write_array(f"{folder}/{market.market}.npy", result.draws)
    else:
        store.remove(f"{folder}/{market.market}.npy")
    fit = market.fit_frame
    record = MMMFitRecord(
        market=market.market,
        channels=market.channels,
        dropped_channels=dropped,
        data_hash=market.data_hash,
        settings_hash=digest,
        status=result.status,
        attempts=tuple(result.attempts),
        seconds=result.seconds,
        n_weeks=len(fit),
        holdout_weeks=market.holdout_weeks,
        first_week=str(pd.Timestamp(fit["date"].iloc[0]).date()),
        last_week=str(pd.Timestamp(fit["date"].iloc[-1]).date()),
        quality=quality,
        has_draws=result.draws is not None,
    )
    store.write_bytes(f"{folder}/{market.market}.json", record.to_json())
    logger.info(
        "market %s: %s after %d attempt(s) in %.0f s",
        market.market,
        record.status.value,
        len(record.attempts),
        record.seconds,
    )
    return record


@dataclass
class MMMRunOutcome:
    """What a finished run produced and where."""

    run: str
    output_uri: str
    manifest: MMMManifest
    roas: pd.DataFrame
    diagnostics: pd.DataFrame
    #: How the report step ended (written after the manifest; a failure never unpublishes).
    report: MMMReportOutcome | None = None

    @property
    def counts(self) -> StatusCounts:
        """Markets per status."""
        return self.manifest.counts

    @property
    def headline(self) -> str:
        """E.g. ``media-mix run 2025-12-22: all 2 models converged``."""
        return f"media-mix run {self.run}: {self.counts.sentence()}"


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("misterp", "pymc-marketing", "pymc", "pytensor", "nutpie", "pandera"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _workers(config: MMMConfig, n_markets: int, override: int | None) -> int:
    """Processes to use: each fit's chains want about two cores on a small machine."""
    wanted = override or config.workers or max(1, (os.cpu_count() or 1) // 2)
    return max(1, min(wanted, n_markets))


def run_mmm(
    config: MMMConfig,
    store: ResultStore | None = None,
    *,
    workers: int | None = None,
    refit_all: bool = False,
    functions: FitFunctions = pymc_marketing_fit,
    progress: Callable[[MMMFitRecord], None] | None = None,
    data: MMMData | None = None,
) -> MMMRunOutcome:
    """Validate the input, fit every market, publish the tables and, last, the manifest.

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
    progress
        Called with each market's record as it finishes.
    data
        Already validated input (skips reading ``config.input`` again).

    Raises
    ------
    InputValidationError
        With every problem of the input; nothing is written.
    """
    started = time.perf_counter()
    data = data if data is not None else read_mmm_input(config)
    store = store or ResultStore(config.output, config.storage_options)
    run = config.run or str(data.last_week.date())
    assert id_problem(run) is None
    markets = [m for m in data.markets if config.markets is None or m in config.markets]
    inputs = {market: prepare_market(data, market, config) for market in markets}
    folder = run_folder(run)
    store.retract(folder)  # an interrupted run must never look complete
    n_workers = _workers(config, len(markets), workers)
    records: dict[str, MMMFitRecord] = {}
    common: dict[str, Any] = {"refit": refit_all, "functions": functions}
    if n_workers == 1:
        for market in markets:
            records[market] = fit_market(
                inputs[market],
                config,
                run,
                dropped=tuple(data.dropped.get(market, ())),
                **common,
            )
            if progress is not None:
                progress(records[market])
    else:
        cores = max(1, (os.cpu_count() or 1) // n_workers)
        # spawn, not fork: the parent holds threads (BLAS, nutpie) that a fork would copy
        # mid-flight, and a forked child can deadlock on a lock one of them held.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            futures = {
                market: pool.submit(
                    fit_market,
                    inputs[market],
                    config,
                    run,
                    dropped=tuple(data.dropped.get(market, ())),
                    cores=cores,
                    **common,
                )
                for market in markets
            }
            for market, future in futures.items():
                records[market] = future.result()
                if progress is not None:
                    progress(records[market])
    return publish_run(config, store, run, data, inputs, records, started)


def publish_run(
    config: MMMConfig,
    store: ResultStore,
    run: str,
    data: MMMData,
    inputs: Mapping[str, MarketInput],
    records: Mapping[str, MMMFitRecord],
    started: float | None = None,
) -> MMMRunOutcome:
    """Write the tables of every market with draws, then the manifest (last)."""
    folder = run_folder(run)
    store.retract(folder)
    names = (*_TABLE_FILES, BUDGET_FILE) if config.budget is not None else _TABLE_FILES
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    for market, record in records.items():
        if not record.has_draws:
            continue
        market_input = inputs[market]
        draws = store.read_array(f"{folder}/fits/{market}.npy")
        layout = layout_for(market_input, config)
        built = market_tables(market_input, layout, draws, config, record.status)
        if config.budget is not None and record.status is FitStatus.CONVERGED:
            tables[BUDGET_FILE].append(
                budget_table(
                    market,
                    list(market_input.channels),
                    layout.unpack(draws)["budget"],
                    config.budget.weeks,
                    config.interval,
                    record.status.value,
                )
            )
        tables[CONTRIBUTIONS_FILE].append(built.contributions)
        tables[ROAS_FILE].append(built.roas)
        tables[RESPONSE_CURVES_FILE].append(built.response_curves)
        tables[ADSTOCK_FILE].append(built.adstock)
        tables[FITTED_FILE].append(built.fitted)
    diagnostics = pd.DataFrame([record.diagnostics() for record in records.values()])
    tables[DIAGNOSTICS_FILE] = [diagnostics]
    sha256 = {}
    frames = {}
    for name, parts in tables.items():
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        frames[name] = frame
        written = store.write_parquet(f"{folder}/{name}", frame)
        sha256[name] = hashlib.sha256(written).hexdigest()
    own = {market: record.status for market, record in records.items()}
    counts = StatusCounts.count(own, own)
    manifest = MMMManifest(
        run=run,
        input=config.input,
        input_hashes=data.input_hashes,
        versions=_versions(),
        config=config.model_dump(mode="json", exclude={"storage_options"}),
        counts=counts,
        wall_seconds=time.perf_counter() - started if started is not None else None,
        files={name.removesuffix(".parquet"): name for name in names} | {"fits": "fits/"},
        sha256=sha256,
        markets=tuple(records.values()),
        notes=tuple(data.notes),
        healthy=counts.healthy,
    )
    store.publish(folder, manifest.to_json())
    report = update_mmm_report(store, run)
    return MMMRunOutcome(
        run, store.uri(folder), manifest, frames[ROAS_FILE], diagnostics, report=report
    )


_TABLE_FILES: tuple[str, ...] = (
    CONTRIBUTIONS_FILE,
    ROAS_FILE,
    RESPONSE_CURVES_FILE,
    ADSTOCK_FILE,
    FITTED_FILE,
    DIAGNOSTICS_FILE,
)
