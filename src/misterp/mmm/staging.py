"""A media-mix run staged once in the result store, so any worker can fit one market from it.

The run's parent validates the input and prepares every market once, then writes what a fit
needs to ``OUTPUT/mmm/RUN/staged/``: each market's model frame (``markets/MARKET.parquet``),
its KPI draws (``MARKET.kpi_draws.npy``) and lift tests (``MARKET.lift_tests.parquet``) when it
has them, and last ``plan.json`` (the config without storage options, each market's channels,
controls and data hash). A local worker process or a Kubernetes pod then fits a market from
``(output, run, market)`` and its own storage options alone (:mod:`misterp.mmm.worker`).

The run's lease (``OUTPUT/mmm/RUN/lease.json``) is the tracker's (:mod:`misterp.lease`), on the
run's folder: one run of a run id at a time, and fits check it before they write.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from misterp.errors import ConfigError
from misterp.ids import ID_RULE, id_problem, shown
from misterp.lease import Lease, LeaseRecord, acquire_lease, check_holder
from misterp.mmm.config import MMMConfig, parse_mmm_config
from misterp.mmm.model import MarketInput
from misterp.records import Record, VersionedRecord, utc_now
from misterp.storage import ResultStore

__all__ = [
    "STAGED",
    "StagedMMMMarket",
    "StagedMMMRun",
    "StagedRunMissing",
    "check_mmm_id",
    "check_run_holder",
    "lease_run",
    "open_staged_market",
    "read_staged_run",
    "run_folder",
    "run_subject",
    "stage_run",
    "staged_config",
]

logger = logging.getLogger(__name__)

STAGED = "staged"


class StagedRunMissing(FileNotFoundError):
    """A media-mix run that was never staged in this store (nothing to fit from)."""


def run_folder(run: str) -> str:
    """Where a run lives under the results root."""
    return f"mmm/{run}"


def run_subject(run: str) -> str:
    """How lease messages name a run: ``media-mix run r1``."""
    return f"media-mix run {run}"


def check_mmm_id(value: str, what: str) -> str:
    """``value`` if it can be a folder or file name; ``ConfigError`` with the rule otherwise.

    Run and market ids reach a worker as run parameters, so they are checked again there
    before they become paths.

    >>> check_mmm_id("DE", "market")
    'DE'
    """
    problem = id_problem(value)
    if problem is not None:
        raise ConfigError(
            f"{what} id {shown(value)} {problem}; it becomes a folder or file name under "
            f"OUTPUT/mmm/, so use {ID_RULE}"
        )
    return value


def _market_path(run: str, market: str, suffix: str) -> str:
    return f"{run_folder(run)}/{STAGED}/markets/{market}{suffix}"


def _plan_path(run: str) -> str:
    return f"{run_folder(run)}/{STAGED}/plan.json"


class StagedMMMMarket(Record):
    """One market as staged: what :class:`MarketInput` holds besides its arrays and frames."""

    channels: tuple[str, ...]
    controls: tuple[str, ...]
    holdout_weeks: int
    data_hash: str
    dropped_channels: tuple[str, ...] = ()
    has_kpi_draws: bool = False
    has_lift_tests: bool = False


class StagedMMMRun(VersionedRecord):
    """``OUTPUT/mmm/RUN/staged/plan.json``: the config and markets a run was staged with.

    Written last, so a staged folder without it is incomplete and never read. Storage options
    are not part of it: they may hold credentials, and a reader already has them.
    """

    kind: ClassVar[str] = "staged media-mix run"
    run: str
    stage_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    staged_at: str = Field(default_factory=utc_now)
    config: dict[str, Any]
    input_hashes: dict[str, str] = Field(default_factory=dict)
    notes: tuple[str, ...] = ()
    markets: dict[str, StagedMMMMarket]
    #: Fit every market again, even one with a converged fit of the same data and settings.
    refit_all: bool = False


def stage_run(
    store: ResultStore,
    run: str,
    config: MMMConfig,
    inputs: Mapping[str, MarketInput],
    *,
    dropped: Mapping[str, tuple[str, ...] | list[str]] | None = None,
    input_hashes: Mapping[str, str] | None = None,
    notes: tuple[str, ...] | list[str] = (),
    refit_all: bool = False,
) -> StagedMMMRun:
    """Write every market's prepared input, then the plan (last), under ``OUTPUT/mmm/RUN/``.

    Parameters
    ----------
    store, run
        The results root and the run id.
    config
        The run's config; stored without ``storage_options``.
    inputs
        Each market's prepared input (:func:`misterp.mmm.model.prepare_market`).
    dropped, input_hashes, notes
        From the validated input: channels dropped per market, file hashes, findings.
    refit_all
        Workers refit converged markets whose data and settings did not change.
    """
    check_mmm_id(run, "run")
    dropped = dropped or {}
    markets: dict[str, StagedMMMMarket] = {}
    for market, market_input in inputs.items():
        check_mmm_id(market, "market")
        store.write_parquet(_market_path(run, market, ".parquet"), market_input.frame)
        if market_input.kpi_draws is not None:
            store.write_array(_market_path(run, market, ".kpi_draws.npy"), market_input.kpi_draws)
        if market_input.lift_tests is not None:
            store.write_parquet(
                _market_path(run, market, ".lift_tests.parquet"), market_input.lift_tests
            )
        markets[market] = StagedMMMMarket(
            channels=market_input.channels,
            controls=market_input.controls,
            holdout_weeks=market_input.holdout_weeks,
            data_hash=market_input.data_hash,
            dropped_channels=tuple(dropped.get(market, ())),
            has_kpi_draws=market_input.kpi_draws is not None,
            has_lift_tests=market_input.lift_tests is not None,
        )
    plan = StagedMMMRun(
        run=run,
        # by alias: the config is parsed back as a user's YAML is (``brand_link.as``)
        config=config.model_dump(mode="json", by_alias=True, exclude={"storage_options"}),
        input_hashes=dict(input_hashes or {}),
        notes=tuple(notes),
        markets=markets,
        refit_all=refit_all,
    )
    store.write_bytes(_plan_path(run), plan.to_json())
    logger.info("staged media-mix run %s: %d markets", run, len(markets))
    return plan


def read_staged_run(store: ResultStore, run: str) -> StagedMMMRun:
    """The staged plan of a run; ``StagedRunMissing`` if the run was never staged here."""
    path = _plan_path(check_mmm_id(run, "run"))
    if not store.exists(path):
        raise StagedRunMissing(
            f"{store.uri(path)} does not exist: media-mix run '{run}' was never staged in "
            f"{store.root_uri}. Start the run first (misterp mmm run, or the mmm deployment)."
        )
    return StagedMMMRun.from_json(store.read_bytes(path), store.uri(path))


def staged_config(
    staged: StagedMMMRun, output: str, storage_options: Mapping[str, Any] | None = None
) -> MMMConfig:
    """The run's config as staged, on ``output`` with the reader's own storage options."""
    raw = {**staged.config, "output": output, "storage_options": dict(storage_options or {})}
    return parse_mmm_config(raw, source=f"staged media-mix run {staged.run}")


def open_staged_market(
    store: ResultStore, run: str, market: str, staged: StagedMMMRun | None = None
) -> MarketInput:
    """One market's prepared input, read back exactly as it was staged."""
    staged = staged if staged is not None else read_staged_run(store, run)
    check_mmm_id(market, "market")
    meta = staged.markets.get(market)
    if meta is None:
        raise ConfigError(
            f"market {shown(market)} is not part of media-mix run {run} in {store.root_uri}; "
            f"its markets: {', '.join(sorted(staged.markets)) or 'none'}"
        )
    kpi_draws: np.ndarray | None = None
    if meta.has_kpi_draws:
        kpi_draws = store.read_array(_market_path(run, market, ".kpi_draws.npy"))
    lift = None
    if meta.has_lift_tests:
        lift = store.read_parquet(_market_path(run, market, ".lift_tests.parquet"))
    return MarketInput(
        market=market,
        frame=store.read_parquet(_market_path(run, market, ".parquet")),
        channels=meta.channels,
        controls=meta.controls,
        holdout_weeks=meta.holdout_weeks,
        data_hash=meta.data_hash,
        kpi_draws=kpi_draws,
        lift_tests=lift,
    )


def lease_run(
    store: ResultStore,
    run: str,
    *,
    force: bool = False,
    note: str | None = None,
    **options: Any,
) -> Lease:
    """Take the run's lease (``OUTPUT/mmm/RUN/lease.json``); ``RunLocked`` names the holder.

    The tracker's lease on the run's folder: ``force`` takes it over from a run that looks
    alive; ``options`` go to :func:`misterp.lease.acquire_lease` (``settle``, ``stale_after``,
    ``heartbeat``, ``run_id``).
    """
    check_mmm_id(run, "run")
    return acquire_lease(
        store, run_folder(run), force=force, note=note, subject=run_subject(run), **options
    )


def check_run_holder(store: ResultStore, run: str, run_id: str) -> LeaseRecord:
    """The run's lease if ``run_id`` holds it; ``LeaseLost`` otherwise (before every write)."""
    return check_holder(store, run_folder(run), run_id, run_subject(run))
