"""A prepared wave staged once in the result store, read by every fit worker and re-run.

The wave's parent run validates and plans once and writes the cells every model needs to
``OUTPUT/WAVE/staged/``. Fit workers (a local process, a Kubernetes pod) read only that, never
the raw input, and a re-run (``misterp rerun``) works from it alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from misterp.mrp.cells import CellCounts, MarketCells
from misterp.mrp.census import CENSUS_FILE, BuiltCensus, CensusReport
from misterp.mrp.config import parse_config
from misterp.mrp.prepare import PreparedWave
from misterp.mrp.published import MILESTONES_FILE
from misterp.mrp.specs import ModelSpec
from misterp.records import Record, VersionedRecord, utc_now
from misterp.storage import ResultStore

__all__ = [
    "STAGED",
    "StagedMarket",
    "StagedPlan",
    "StagedWaveMissing",
    "load_staged_wave",
    "open_staged_wave",
    "stage_wave",
]

logger = logging.getLogger(__name__)

STAGED = "staged"
_MASK_PREFIX = "mask__"
_EMPTY = np.empty(0, dtype=np.int64)


class StagedWaveMissing(FileNotFoundError):
    """A wave that was never prepared into this store (nothing to fit or re-run)."""


class StagedMarket(Record):
    """A market's cell layout as staged: its demographic columns and target groups."""

    demographics: tuple[str, ...]
    groups: tuple[str, ...]
    #: The cell columns that are profiles (audiences beyond the census); none before them.
    profiles: tuple[str, ...] = ()


class StagedPlan(VersionedRecord):
    """``OUTPUT/WAVE/staged/plan.json``: the config, specs and markets a wave was staged with.

    Written last, so a staged folder without it is incomplete and never read. Storage options
    are not part of it: they may hold credentials, and a reader already has them.
    """

    kind: ClassVar[str] = "staged plan"
    wave: str
    stage_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    staged_at: str = Field(default_factory=utc_now)
    config: dict[str, Any]
    input_hashes: dict[str, str]
    markets: dict[str, StagedMarket]
    specs: tuple[ModelSpec, ...]
    #: How the census was built from margins (``staged/census.parquet`` holds the joint);
    #: None when the wave gave the joint. A re-run publishes this, never a rebuilt one.
    census: CensusReport | None = None
    #: Known population shares of profile levels: market -> profile -> level -> share.
    profile_margins: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict)
    #: market -> which earlier waves its profile models pooled (``pool_waves``); empty: none.
    profile_pooling: dict[str, str] = Field(default_factory=dict)


def _plan_path(wave: str) -> str:
    return f"{wave}/{STAGED}/plan.json"


def stage_wave(prepared: PreparedWave, store: ResultStore) -> StagedPlan:
    """Write a prepared wave's cells, counts, sample shares and finally its plan to the store."""
    wave = prepared.wave_id
    for market, layout in prepared.layouts.items():
        cells = layout.frame.copy()
        for group, mask in layout.masks.items():
            cells[f"{_MASK_PREFIX}{group}"] = mask
        store.write_parquet(f"{wave}/{STAGED}/cells/{market}.parquet", cells)
        keys = [spec.key for spec in prepared.specs if spec.market == market]
        # a profile model's counts are per census cell, fewer than the layout's cells
        sizes = [len(prepared.counts[k].n) for k in keys]
        counts = pd.DataFrame(
            {
                "key": np.repeat(keys, sizes),
                "cell": np.concatenate([np.arange(size) for size in sizes] or [_EMPTY]),
                "yes": np.concatenate([prepared.counts[k].yes for k in keys] or [_EMPTY]),
                "n": np.concatenate([prepared.counts[k].n for k in keys] or [_EMPTY]),
            }
        ).astype({"yes": np.int64, "n": np.int64})
        store.write_parquet(f"{wave}/{STAGED}/counts/{market}.parquet", counts)
    store.write_parquet(f"{wave}/{STAGED}/shares.parquet", prepared.shares)
    if prepared.census is not None:
        store.write_parquet(f"{wave}/{STAGED}/{CENSUS_FILE}", prepared.census.joint)
    if prepared.milestones is not None:
        store.write_parquet(f"{wave}/{STAGED}/{MILESTONES_FILE}", prepared.milestones)
    else:  # staged by an earlier run from other input
        store.remove(f"{wave}/{STAGED}/{MILESTONES_FILE}")
    plan = StagedPlan(
        wave=wave,
        config=prepared.config.staged_dump(),
        input_hashes=prepared.input_hashes,
        markets={
            market: StagedMarket(
                demographics=layout.demographics,
                groups=tuple(layout.masks),
                profiles=layout.profiles,
            )
            for market, layout in prepared.layouts.items()
        },
        specs=tuple(prepared.specs),
        census=prepared.census.report if prepared.census is not None else None,
        profile_margins=prepared.profile_margins,
        profile_pooling=prepared.profile_pooling,
    )
    store.write_bytes(_plan_path(wave), plan.to_json())
    prepared.stage_id = plan.stage_id
    logger.info("staged wave %s: %d models", wave, len(prepared.specs))
    return plan


def is_staged(store: ResultStore, wave: str) -> bool:
    """True when a run staged ``wave`` in ``store`` (so ``misterp rerun`` can fit from it)."""
    return store.exists(_plan_path(wave))


def read_staged_plan(store: ResultStore, wave: str) -> StagedPlan:
    """The staged plan of a wave; ``StagedWaveMissing`` if the wave was never staged here."""
    path = _plan_path(wave)
    if not store.exists(path):
        raise StagedWaveMissing(
            f"{store.uri(path)} does not exist: wave '{wave}' was never prepared in "
            f"{store.root_uri}. Run the wave first (misterp run --wave {wave} ...)."
        )
    return StagedPlan.from_json(store.read_bytes(path), store.uri(path))


def load_staged_wave(
    store: ResultStore, wave: str, storage_options: Mapping[str, Any] | None = None
) -> PreparedWave:
    """Read a staged wave back as a ``PreparedWave``."""
    plan = read_staged_plan(store, wave)
    config = parse_config(
        {**plan.config, "storage_options": dict(storage_options or store.storage_options)},
        source=store.uri(_plan_path(wave)),
    )
    layouts: dict[str, MarketCells] = {}
    counts: dict[str, CellCounts] = {}
    for market, meta in plan.markets.items():
        cells = store.read_parquet(f"{wave}/{STAGED}/cells/{market}.parquet")
        mask_columns = [f"{_MASK_PREFIX}{group}" for group in meta.groups]
        masks = {
            group: cells[column].to_numpy(dtype=bool)
            for group, column in zip(meta.groups, mask_columns, strict=True)
        }
        layouts[market] = MarketCells(
            market=market,
            frame=cells.drop(columns=mask_columns),
            demographics=meta.demographics,
            masks=masks,
            profiles=meta.profiles,
        )
        long = store.read_parquet(f"{wave}/{STAGED}/counts/{market}.parquet")
        for key, part in long.groupby("key", sort=False):
            part = part.sort_values("cell")
            counts[str(key)] = CellCounts(
                yes=part["yes"].to_numpy(dtype=np.int64), n=part["n"].to_numpy(dtype=np.int64)
            )
    census = None
    if plan.census is not None:
        joint = store.read_parquet(f"{wave}/{STAGED}/{CENSUS_FILE}")
        census = BuiltCensus(joint, plan.census)
    milestones = None
    if store.exists(f"{wave}/{STAGED}/{MILESTONES_FILE}"):
        milestones = store.read_parquet(f"{wave}/{STAGED}/{MILESTONES_FILE}")
    return PreparedWave(
        config=config,
        wave_id=plan.wave,
        specs=list(plan.specs),
        layouts=layouts,
        counts=counts,
        shares=store.read_parquet(f"{wave}/{STAGED}/shares.parquet"),
        input_hashes=plan.input_hashes,
        stage_id=plan.stage_id,
        census=census,
        profile_margins=plan.profile_margins,
        milestones=milestones,
        profile_pooling=plan.profile_pooling,
    )


# One staged wave per process: a worker fitting many models of a wave reads the cells once.
_OPEN_WAVES: dict[tuple[str, str], PreparedWave] = {}


def open_staged_wave(
    output: str, wave: str, storage_options: Mapping[str, Any] | None = None
) -> PreparedWave:
    """The staged wave, read once per process and again only if it was staged anew."""
    store = ResultStore(output, storage_options)
    stage_id = read_staged_plan(store, wave).stage_id
    cached = _OPEN_WAVES.get((output, wave))
    if cached is not None and cached.stage_id == stage_id:
        return cached
    prepared = load_staged_wave(store, wave, storage_options)
    _OPEN_WAVES[(output, wave)] = prepared
    return prepared
