"""After a wave is published: its changes and the trend table, without risking the wave.

The wave is complete once its manifest is written; changes and trends are derived from what
was published. So this step runs after publication, and a failure in it (a reference wave
with an unreadable manifest, a store hiccup) is logged and recorded in
``OUTPUT/WAVE/tracking.json`` but never unpublishes the wave: the estimates are right, only
the comparison is missing, and publishing the wave again (``misterp rerun``) recomputes it.
A stale ``changes.parquet`` from an earlier run is removed first, so a failure never leaves
old changes beside new estimates.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from misterp.config import ConfigError
from misterp.mrp.config import TrackingConfig
from misterp.periods import detect_period, parse_period
from misterp.records import Record, utc_now
from misterp.storage import ResultStore
from misterp.tracking.catalog import read_manifest, wave_folders
from misterp.tracking.changes import (
    CHANGES_FILE,
    later_waves_referencing,
    tracking_of,
    wave_changes,
    write_changes,
)
from misterp.tracking.smoothed import SMOOTHED_FILE, smoothing_window, wave_smoothing
from misterp.tracking.trends import update_trends

__all__ = [
    "TRACKING_FILE",
    "TrackingOutcome",
    "refresh_later_changes",
    "refresh_later_smoothing",
    "update_tracking",
]

logger = logging.getLogger(__name__)

#: The record of the last tracking step of a wave, relative to the wave folder.
TRACKING_FILE = "tracking.json"


class TrackingOutcome(Record):
    """How the tracking step of one wave ended (also stored as ``tracking.json``)."""

    wave: str
    status: Literal["updated", "skipped", "failed"]
    message: str
    change_rows: int = 0
    trend_rows: int = 0
    smoothed_rows: int = 0  # rows of smoothed.parquet (0: smoothing off)
    refreshed: tuple[str, ...] = ()  # later waves whose changes were recomputed against this one
    seconds: float = 0.0
    at: str = ""


def refresh_later_changes(store: ResultStore, wave: str, tracking: TrackingConfig) -> list[str]:
    """Recompute ``changes.parquet`` of the later waves that compare against ``wave``.

    A re-run of an earlier wave changes its draws, so the changes of every later wave that
    used it as a reference (previous, year ago, rolling window) are stale. Each later wave is
    recomputed with the tracking settings it was published with; a later wave that fails
    keeps no stale file (it is removed first) and says so in its own ``tracking.json``.
    """
    refreshed = []
    for later in later_waves_referencing(store, wave, tracking):
        store.remove(f"{later}/{CHANGES_FILE}")
        manifest = read_manifest(store, later)
        if manifest is None:  # retracted since it was listed: its own run will recompute it
            continue
        try:
            write_changes(store, later, wave_changes(store, later, tracking_of(manifest)))
        except Exception as exc:
            logger.warning(
                "changes of wave %s could not be recomputed after %s was re-published: %s; "
                "publish %s again (misterp rerun) to recompute them",
                later,
                wave,
                exc,
                later,
            )
            failed = TrackingOutcome(
                wave=later,
                status="failed",
                message=f"recomputing changes after {wave} was re-published: {exc}",
                at=utc_now(),
            )
            store.write_bytes(f"{later}/{TRACKING_FILE}", failed.model_dump_json(indent=2).encode())
            continue
        refreshed.append(later)
    return refreshed


def refresh_later_smoothing(store: ResultStore, wave: str, tracking: TrackingConfig) -> list[str]:
    """Recompute ``smoothed.parquet`` of the later waves whose window holds ``wave``.

    A re-run of an earlier wave changes its estimates, so the smoothed trend of every later
    wave published with ``tracking.smoothing`` whose window reaches back to it is stale. Each
    is recomputed with the settings it was published with; one that fails keeps no stale file.
    """
    period = parse_period(wave, tracking.period)
    refreshed = []
    for name in wave_folders(store):
        other = detect_period(name)
        if other is None or other.kind != period.kind or other.start <= period.start:
            continue
        manifest = read_manifest(store, name)
        if manifest is None:
            continue
        settings = tracking_of(manifest)
        if not settings.smoothing.enabled:
            continue
        try:
            if wave not in smoothing_window(store, name, settings):
                continue
            store.write_parquet(f"{name}/{SMOOTHED_FILE}", wave_smoothing(store, name, settings))
        except Exception as exc:
            store.remove(f"{name}/{SMOOTHED_FILE}")
            logger.warning(
                "smoothed trend of wave %s could not be recomputed after %s was re-published: "
                "%s; publish %s again (misterp rerun) to recompute it",
                name,
                wave,
                exc,
                name,
            )
            continue
        refreshed.append(name)
    return refreshed


def update_tracking(
    store: ResultStore, wave: str, tracking: TrackingConfig | None = None
) -> TrackingOutcome:
    """Compute ``changes.parquet`` for ``wave`` and refresh ``OUTPUT/trends.parquet``.

    With ``tracking.smoothing.enabled``, also ``smoothed.parquet`` (the smoothed trend over
    the last ``window`` waves, beside the raw changes).

    Never raises for a problem of the data or the store: the outcome says ``failed`` (or
    ``skipped`` for a wave id that is not a period, e.g. ``demo``) with the reason,
    and the same is written to ``OUTPUT/WAVE/tracking.json``.
    """
    started = time.perf_counter()
    outcome: TrackingOutcome
    try:
        store.remove(f"{wave}/{CHANGES_FILE}")
        store.remove(f"{wave}/{SMOOTHED_FILE}")
        manifest = read_manifest(store, wave)
        if manifest is None:
            raise ConfigError(f"wave '{wave}' is not complete; nothing to track")
        settings = tracking or tracking_of(manifest)
        try:
            parse_period(wave, settings.period)
        except ConfigError as exc:
            logger.warning("changes and trends skipped: %s", exc)
            outcome = TrackingOutcome(wave=wave, status="skipped", message=str(exc))
        else:
            changes = wave_changes(store, wave, settings)
            write_changes(store, wave, changes)
            table = update_trends(store, wave)
            refreshed = refresh_later_changes(store, wave, settings)
            resmoothed = refresh_later_smoothing(store, wave, settings)
            smoothed_rows = 0
            if settings.smoothing.enabled:
                smoothed = wave_smoothing(store, wave, settings)
                store.write_parquet(f"{wave}/{SMOOTHED_FILE}", smoothed)
                smoothed_rows = len(smoothed)
            outcome = TrackingOutcome(
                wave=wave,
                status="updated",
                message=f"{len(changes)} change rows, trends over {table['wave'].nunique()} waves"
                + (f", {smoothed_rows} smoothed rows" if settings.smoothing.enabled else "")
                + (
                    f"; changes of later waves {', '.join(refreshed)} recomputed"
                    if refreshed
                    else ""
                )
                + (
                    f"; smoothed trends of later waves {', '.join(resmoothed)} recomputed"
                    if resmoothed
                    else ""
                ),
                change_rows=len(changes),
                trend_rows=len(table),
                smoothed_rows=smoothed_rows,
                refreshed=tuple(refreshed),
            )
            logger.info("wave %s: %s", wave, outcome.message)
    except Exception as exc:  # the wave stays published whatever happens here
        logger.warning(
            "wave %s is published, but its changes and trends failed: %s: %s; publish it "
            "again (misterp rerun) to recompute them",
            wave,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        outcome = TrackingOutcome(
            wave=wave, status="failed", message=f"{type(exc).__name__}: {exc}"
        )
    outcome = outcome.model_copy(
        update={"seconds": round(time.perf_counter() - started, 3), "at": utc_now()}
    )
    try:
        store.write_bytes(f"{wave}/{TRACKING_FILE}", outcome.model_dump_json(indent=2).encode())
    except Exception as exc:  # the outcome is returned either way; one line, traceback at DEBUG
        logger.warning(
            "could not record %s of wave %s (%s: %s)",
            TRACKING_FILE,
            wave,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
    return outcome
