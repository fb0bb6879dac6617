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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from misterp import fitstore
from misterp.config import SamplerConfig
from misterp.errors import ConfigError
from misterp.fitting import Diagnose, Extract, FitResult, Sample, fit_with_policy
from misterp.health import HEALTH_FILE, RunHealth
from misterp.mmm.budget import BUDGET_FILE, budget_table
from misterp.mmm.config import MMMConfig
from misterp.mmm.model import (
    MarketInput,
    diagnose_fit,
    layout_for,
    market_extractor,
    market_sampler,
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
    run_health,
)
from misterp.mmm.pooled import (
    POOLED_KEY,
    PooledInput,
    ordered,
    pooled_extractor,
    pooled_sampler,
    pooling_problems,
    split_pooled_draws,
)
from misterp.mmm.staging import check_run_holder, run_folder
from misterp.mmm.validation import MMMData
from misterp.records import ConvergenceReport, RecordError, StatusCounts
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "DIAGNOSTICS_FILE",
    "FitFunctions",
    "MMMRunOutcome",
    "PooledFitFunctions",
    "fit_market",
    "fit_pooled",
    "mixture_functions",
    "publish_run",
    "pymc_marketing_fit",
    "pymc_marketing_pooled_fit",
    "run_folder",
]

logger = logging.getLogger(__name__)

DIAGNOSTICS_FILE = "diagnostics.parquet"

#: Builds a market's ``sample``, ``extract`` and ``diagnose`` functions for the retry loop;
#: tests pass one that samples nothing. Must be a module-level function to reach a process.
FitFunctions = Callable[[MarketInput, MMMConfig], tuple[Sample, Extract, Diagnose]]
#: The same for the one model of a pooled run (``pooling: hierarchical``): its ``extract``
#: returns every market's draws side by side, in the input's market order.
PooledFitFunctions = Callable[[PooledInput, MMMConfig], tuple[Sample, Extract, Diagnose]]


def pymc_marketing_fit(market: MarketInput, config: MMMConfig) -> tuple[Sample, Extract, Diagnose]:
    """The real thing: pymc-marketing's MMM sampled with nutpie."""
    return market_sampler(market, config), market_extractor(market, config), diagnose_fit


def pymc_marketing_pooled_fit(
    pooled: PooledInput, config: MMMConfig
) -> tuple[Sample, Extract, Diagnose]:
    """pymc-marketing's multi-market MMM with pooled channel priors, sampled with nutpie."""
    return pooled_sampler(pooled, config), pooled_extractor(pooled, config), diagnose_fit


def mixture_functions[Versioned: (MarketInput, PooledInput)](
    functions: Callable[[Versioned, MMMConfig], tuple[Sample, Extract, Diagnose]],
    market: Versioned,
    config: MMMConfig,
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


def settings_hash(config: MMMConfig) -> str:
    """Hash of everything besides the data that decides a market's fit."""
    text = json.dumps(config.model_settings(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_fit_record(store: ResultStore, run: str, market: str) -> MMMFitRecord | None:
    """A market's stored record, or None if there is none or it cannot be read."""
    try:
        return fitstore.read_fit_record(store, run_folder(run), market, MMMFitRecord)
    except RecordError as exc:
        logger.warning("%s; fitting again", exc)
        return None


def reusable_fit(
    store: ResultStore, run: str, market: str, data_hash: str, digest: str
) -> MMMFitRecord | None:
    """The market's stored fit if a re-run may reuse it: converged, current, draws present."""
    previous = read_fit_record(store, run, market)
    if (
        previous is not None
        and previous.status is FitStatus.CONVERGED
        and previous.is_current(data_hash, digest)
        and store.exists(fitstore.fit_path(run_folder(run), market, "npy"))
    ):
        return previous
    return None


def write_fit(
    store: ResultStore,
    run: str,
    market: MarketInput,
    config: MMMConfig,
    result: FitResult,
    draws: np.ndarray | None,
    *,
    data_hash: str,
    settings_hash: str,
    dropped: tuple[str, ...] = (),
    pooled_with: tuple[str, ...] = (),
    run_id: str | None = None,
) -> MMMFitRecord:
    """Write a market's draws (or remove stale ones), then its record, which is returned.

    ``draws`` are the market's own (a pooled fit's are split first); status, attempts and time
    are the fit's.
    """
    quality = None
    if draws is not None:
        quality = fit_quality(market, layout_for(market, config).unpack(draws))
    fit = market.fit_frame
    record = MMMFitRecord(
        market=market.market,
        channels=market.channels,
        dropped_channels=dropped,
        data_hash=data_hash,
        settings_hash=settings_hash,
        status=result.status,
        attempts=tuple(result.attempts),
        seconds=result.seconds,
        n_weeks=len(fit),
        holdout_weeks=market.holdout_weeks,
        first_week=str(pd.Timestamp(fit["date"].iloc[0]).date()),
        last_week=str(pd.Timestamp(fit["date"].iloc[-1]).date()),
        quality=quality,
        has_draws=draws is not None,
        pooled_with=pooled_with,
        run_id=run_id,
    )
    fitstore.write_fit_files(store, run_folder(run), market.market, draws, record)
    return record


def fit_market(
    market: MarketInput,
    config: MMMConfig,
    run: str,
    *,
    dropped: tuple[str, ...] = (),
    cores: int | None = None,
    refit: bool = False,
    functions: FitFunctions = pymc_marketing_fit,
    run_id: str | None = None,
) -> MMMFitRecord:
    """Fit one market (or reuse its current converged fit) and write draws, then record.

    Runs in a worker process as well as inline: it opens the store itself from the config.
    ``run_id``: the run holding the run's lease; checked before anything is written
    (``LeaseLost`` if another run took the run over).
    """
    store = ResultStore(config.output, config.storage_options)
    digest = settings_hash(config)
    previous = None if refit else reusable_fit(store, run, market.market, market.data_hash, digest)
    if previous is not None:
        logger.info("market %s: converged fit reused (data and settings unchanged)", market.market)
        return previous
    sampler = (
        config.sampler if cores is None else config.sampler.model_copy(update={"cores": cores})
    )
    sample, extract, diagnose = mixture_functions(functions, market, config)
    result = fit_with_policy(
        sample,
        extract,
        key=market.market,
        sampler=sampler,
        thresholds=config.convergence,
        policy=config.retry,
        diagnose=diagnose,
    )
    if run_id is not None:  # fencing: a run that lost its lease writes nothing
        check_run_holder(store, run, run_id)
    record = write_fit(
        store,
        run,
        market,
        config,
        result,
        result.draws,
        data_hash=market.data_hash,
        settings_hash=digest,
        dropped=dropped,
        run_id=run_id,
    )
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

    @property
    def counts(self) -> StatusCounts:
        """Markets per status."""
        return self.manifest.counts

    @property
    def health(self) -> RunHealth:
        """The run's health report (``health.md``): every market, problems first."""
        return run_health(self.manifest)

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


def publish_run(
    config: MMMConfig,
    store: ResultStore,
    run: str,
    data: MMMData,
    inputs: Mapping[str, MarketInput],
    records: Mapping[str, MMMFitRecord],
    started: float | None = None,
    *,
    run_id: str | None = None,
) -> MMMRunOutcome:
    """Write the tables of every market with draws, then the manifest (last).

    ``run_id``: the run holding the run's lease, checked before the manifest is written.
    """
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
        files={name.removesuffix(".parquet"): name for name in names}
        | {"fits": "fits/", "health": HEALTH_FILE},
        sha256=sha256,
        markets=tuple(records.values()),
        notes=tuple(data.notes),
        healthy=counts.healthy,
        run_id=run_id,
    )
    store.write_bytes(f"{folder}/{HEALTH_FILE}", run_health(manifest).to_markdown().encode())
    if run_id is not None:  # fencing, as for the fits
        check_run_holder(store, run, run_id)
    store.publish(folder, manifest.to_json())
    return MMMRunOutcome(run, store.uri(folder), manifest, frames[ROAS_FILE], diagnostics)


_TABLE_FILES: tuple[str, ...] = (
    CONTRIBUTIONS_FILE,
    ROAS_FILE,
    RESPONSE_CURVES_FILE,
    ADSTOCK_FILE,
    FITTED_FILE,
    DIAGNOSTICS_FILE,
)


def check_poolable(markets: Sequence[MarketInput]) -> None:
    """Raise ``ConfigError`` naming every reason these markets cannot be fitted as one model."""
    problems = pooling_problems(markets)
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(f"pooling: hierarchical cannot fit these markets\n  {lines}")


def fit_pooled(
    markets: Sequence[MarketInput],
    config: MMMConfig,
    run: str,
    *,
    dropped: Mapping[str, Sequence[str]] | None = None,
    cores: int | None = None,
    refit: bool = False,
    functions: PooledFitFunctions = pymc_marketing_pooled_fit,
    run_id: str | None = None,
) -> dict[str, MMMFitRecord]:
    """Fit every market as one pooled model (or reuse it) and write each market's draws and record.

    The markets share one fit, so they share its status, attempts and time; each record's
    ``data_hash`` is the hash of all markets' data, so new data in any market refits them all
    (partial pooling makes every market's posterior depend on every market's data).

    Raises
    ------
    ConfigError
        The markets cannot be pooled (different weeks, channels or controls), naming each.
    """
    check_poolable(markets)
    pooled = ordered(markets)
    store = ResultStore(config.output, config.storage_options)
    digest = settings_hash(config)
    dropped = dropped or {}
    if not refit:
        reused = {
            name: reusable_fit(store, run, name, pooled.data_hash, digest) for name in pooled.names
        }
        if all(record is not None for record in reused.values()):
            logger.info("pooled fit of %d markets reused (data and settings same)", len(reused))
            return {name: record for name, record in reused.items() if record is not None}
    sampler = (
        config.sampler if cores is None else config.sampler.model_copy(update={"cores": cores})
    )
    sample, extract, diagnose = mixture_functions(functions, pooled, config)
    result = fit_with_policy(
        sample,
        extract,
        key=POOLED_KEY,
        sampler=sampler,
        thresholds=config.convergence,
        policy=config.retry,
        diagnose=diagnose,
    )
    if run_id is not None:  # fencing: a run that lost its lease writes nothing
        check_run_holder(store, run, run_id)
    parts = (
        split_pooled_draws(result.draws, len(pooled.markets))
        if result.draws is not None
        else [None] * len(pooled.markets)
    )
    records = {
        market.market: write_fit(
            store,
            run,
            market,
            config,
            result,
            draws,
            data_hash=pooled.data_hash,
            settings_hash=digest,
            dropped=tuple(dropped.get(market.market, ())),
            pooled_with=tuple(name for name in pooled.names if name != market.market),
            run_id=run_id,
        )
        for market, draws in zip(pooled.markets, parts, strict=True)
    }
    logger.info(
        "pooled fit of %s: %s after %d attempt(s) in %.0f s",
        ", ".join(pooled.names),
        result.status.value,
        len(result.attempts),
        result.seconds,
    )
    return records
