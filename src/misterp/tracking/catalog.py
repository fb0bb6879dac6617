"""The catalog of waves under one results root: which are complete, in period order.

A wave is complete when its ``manifest.json`` exists (it is written last), so the catalog reads
only the manifests: one small file per wave, never the estimates or the draws. A folder
without a manifest is listed as incomplete (a run in progress, or one that stopped) and is
never used as a reference for changes or trends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from misterp.ids import is_safe_id
from misterp.mrp.records import Manifest
from misterp.periods import WavePeriod, detect_period
from misterp.records import RecordError, StatusCounts
from misterp.storage import MANIFEST, ResultStore, as_store_unavailable

__all__ = ["WaveEntry", "list_waves", "read_manifest", "wave_folders"]

logger = logging.getLogger(__name__)

#: Files at the results root that are not waves.
_NOT_WAVES = frozenset({"trends.parquet"})


@dataclass(frozen=True)
class WaveEntry:
    """One wave folder: its period (None if the id is no period) and, if complete, its counts."""

    wave: str
    period: WavePeriod | None
    complete: bool
    models: int = 0
    counts: StatusCounts | None = None
    healthy: bool | None = None
    created_at: str | None = None
    #: Why the wave is not usable (no manifest, an unreadable one, an id that is no period).
    note: str | None = None

    @property
    def usable(self) -> bool:
        """Complete and placed in time: a wave changes and trends may use."""
        return self.complete and self.period is not None

    def line(self) -> str:
        """One line for ``misterp waves``."""
        if not self.complete:
            return f"{self.wave}  incomplete: {self.note or 'no manifest'}"
        assert self.counts is not None  # a complete entry always has counts
        health = "healthy" if self.healthy else "needs attention"
        models = f"{self.models:,} model" + ("" if self.models == 1 else "s")
        text = f"{self.wave}  {models}, {health}: {self.counts.sentence()}"
        text += f"; published {self.created_at}"
        if self.note:
            text += f"; {self.note}"
        return text


def wave_folders(store: ResultStore) -> list[str]:
    """Names of the folders at the results root that can be waves (safe ids)."""
    with as_store_unavailable(store.root_uri, "listing waves"):
        if not store.fs.exists(store.root_path):
            return []
        found = store.fs.ls(store.root_path, detail=True)
    names = []
    for item in found:
        if item.get("type") != "directory":
            continue
        name = str(item["name"]).rstrip("/").rsplit("/", 1)[-1]
        if is_safe_id(name) and name not in _NOT_WAVES:
            names.append(name)
    return sorted(set(names))


def read_manifest(store: ResultStore, wave: str) -> Manifest | None:
    """The wave's manifest, or None when it has none (the wave is not complete)."""
    try:
        data = store.read_bytes(f"{wave}/{MANIFEST}")
    except FileNotFoundError:
        return None
    return Manifest.from_json(data, store.uri(f"{wave}/{MANIFEST}"))


def _entry(store: ResultStore, wave: str) -> WaveEntry:
    period = detect_period(wave)
    no_period = None if period is not None else "the id is not a period, so it is not tracked"
    try:
        manifest = read_manifest(store, wave)
    except RecordError as exc:
        return WaveEntry(wave, period, complete=False, note=f"unreadable manifest ({exc})")
    if manifest is None:
        return WaveEntry(wave, period, complete=False, note="no manifest (running or stopped)")
    return WaveEntry(
        wave,
        period,
        complete=True,
        models=manifest.counts.models,
        counts=manifest.counts,
        healthy=manifest.healthy,
        created_at=manifest.created_at,
        note=no_period,
    )


def list_waves(store: ResultStore) -> list[WaveEntry]:
    """Every wave folder under the root, in period order; ids that are no period come last.

    Reads one manifest at a time and keeps only its counts, so memory does not grow with the
    size of the waves.

    Parameters
    ----------
    store
        The results root.

    Returns
    -------
    list of WaveEntry
        Sorted by period start (then id); incomplete waves are included with ``complete``
        False and a note saying why.
    """
    entries = [_entry(store, wave) for wave in wave_folders(store)]
    return sorted(
        entries,
        key=lambda e: (e.period is None, e.period.sort_key if e.period else (), e.wave),
    )
