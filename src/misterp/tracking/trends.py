"""The trend table: every complete wave's estimates in one tidy long table, kept incrementally.

``OUTPUT/trends.parquet`` holds one row per wave x model x target group. Publishing a wave
replaces that wave's rows and drops the rows of waves that are no longer complete, reading only
the table and the one wave's estimates, so a dashboard reads one file and publishing stays as
fast with the hundredth wave as with the second.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from misterp.mrp.records import check_estimates
from misterp.periods import detect_period, parse_period
from misterp.storage import ResultStore
from misterp.tracking.catalog import read_manifest, wave_folders
from misterp.tracking.changes import tracking_of

__all__ = ["TRENDS_FILE", "TREND_COLUMNS", "rebuild_trends", "update_trends", "wave_trend_rows"]

logger = logging.getLogger(__name__)

#: Where the trend table lives, relative to the results root.
TRENDS_FILE = "trends.parquet"
#: How often a writer whose rows a concurrent update dropped writes the table again.
_WRITE_ATTEMPTS = 3
_RACE_PAUSE_S = 0.5

#: Columns of the trend table, in order.
TREND_COLUMNS: tuple[str, ...] = (
    "wave",
    "period_start",
    "period_end",
    "fieldwork_start",
    "fieldwork_end",
    "market",
    "question_id",
    "option",
    "brand",
    "target_group",
    "mean",
    "q05",
    "q95",
    "n",
    "status",
)

_KEY = ["period_start", "wave", "market", "question_id", "option", "target_group"]


def wave_trend_rows(store: ResultStore, wave: str) -> pd.DataFrame:
    """The trend rows of one complete wave, from its manifest and its estimates only.

    Raises ``RecordError`` if the estimates do not belong to the manifest (another run wrote
    one of them) and ``ConfigError`` if the wave id is not a period of its configured kind.
    """
    manifest = read_manifest(store, wave)
    if manifest is None:
        return pd.DataFrame(columns=list(TREND_COLUMNS))
    tracking = tracking_of(manifest)
    period = parse_period(wave, tracking.period)
    data = store.read_bytes(f"{wave}/estimates.parquet")
    check_estimates(manifest, data, store.uri(f"{wave}/estimates.parquet"))
    estimates = store.read_parquet(f"{wave}/estimates.parquet")
    fieldwork = tracking.fieldwork.get(wave)
    rows = pd.DataFrame(
        {
            "wave": wave,
            "period_start": pd.Timestamp(period.start),
            "period_end": pd.Timestamp(period.end()),
            "fieldwork_start": pd.Timestamp(fieldwork[0]) if fieldwork else pd.NaT,
            "fieldwork_end": pd.Timestamp(fieldwork[1]) if fieldwork else pd.NaT,
        },
        index=estimates.index,
    )
    for column in TREND_COLUMNS[5:]:
        rows[column] = estimates.get(column, np.nan)
    return rows[list(TREND_COLUMNS)]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(_KEY, kind="stable").reset_index(drop=True)[list(TREND_COLUMNS)]


def _read_table(store: ResultStore) -> pd.DataFrame | None:
    try:
        return store.read_parquet(TRENDS_FILE)
    except FileNotFoundError:
        return None


def update_trends(store: ResultStore, wave: str) -> pd.DataFrame:
    """Replace ``wave``'s rows in ``OUTPUT/trends.parquet``; drop waves no longer complete.

    Reads the table and this wave's estimates, and checks each wave folder for its manifest
    (one existence check each), never the estimates of a wave already in the table. A wave
    that is not complete has its rows removed; a complete wave missing from the table (lost to
    a concurrent publish, see below) has its rows added back. Written atomically; returns the
    new table. Only when there is no table yet is it built from every complete wave
    (``rebuild_trends``), once.

    Two waves publishing at the same moment both read the table before either writes it, so
    the later write can drop the other's rows. Each writer therefore reads the table back
    after writing and repairs it when its own rows are gone (a few times, with a short pause),
    and every later update adds any complete wave that is missing: a lost row is restored at
    the latest by the next publish.
    """
    table = pd.DataFrame(columns=list(TREND_COLUMNS))
    for attempt in range(_WRITE_ATTEMPTS):
        updated = _updated_table(store, wave)
        if updated is None:
            return rebuild_trends(store)
        table = updated
        store.write_parquet(TRENDS_FILE, table)
        written = _read_table(store)
        if written is None or wave in set(written["wave"]) or not len(table):
            break
        logger.info("trends: %s lost its rows to a concurrent update; writing again", wave)
        time.sleep(_RACE_PAUSE_S * (attempt + 1))
    logger.info("trends: %d rows over %d waves", len(table), table["wave"].nunique())
    return table


def _updated_table(store: ResultStore, wave: str) -> pd.DataFrame | None:
    """The trend table with ``wave``'s rows replaced; None when there is no table yet."""
    existing = _read_table(store)
    if existing is None:
        # The first tracked wave of a results root: start the table from every complete wave
        # once (a store that had waves before tracking existed); later updates are incremental.
        logger.info("trends: no %s yet; building it from every complete wave", TRENDS_FILE)
        return None
    parts = []
    kept = existing[existing["wave"] != wave]
    gone = [w for w in kept["wave"].unique() if not store.is_complete(str(w))]
    if gone:
        logger.info("trends: dropping waves no longer complete: %s", ", ".join(map(str, gone)))
        kept = kept[~kept["wave"].isin(gone)]
    if len(kept):
        parts.append(kept)
    present = {str(w) for w in kept["wave"].unique()} | {wave}
    for other in wave_folders(store):
        if other in present or detect_period(other) is None or not store.is_complete(other):
            continue
        try:
            parts.append(wave_trend_rows(store, other))
            logger.info("trends: restored the rows of wave %s", other)
        except ValueError as exc:  # ConfigError, RecordError
            logger.warning("trends: wave %s left out: %s", other, exc)
    new_rows = wave_trend_rows(store, wave)
    if len(new_rows):
        parts.append(new_rows)
    if not parts:
        return pd.DataFrame(columns=list(TREND_COLUMNS))
    return _sorted(pd.concat(parts, ignore_index=True))


def rebuild_trends(store: ResultStore) -> pd.DataFrame:
    """Rebuild the trend table from every complete wave (a repair: reads every wave).

    Waves whose id is not a period of their configured kind are left out with a warning.
    """
    parts = []
    for wave in wave_folders(store):
        if not store.is_complete(wave):
            continue
        try:
            parts.append(wave_trend_rows(store, wave))
        except ValueError as exc:  # ConfigError, RecordError
            logger.warning("trends: wave %s left out: %s", wave, exc)
    table = (
        _sorted(pd.concat(parts, ignore_index=True))
        if parts
        else pd.DataFrame(columns=list(TREND_COLUMNS))
    )
    store.write_parquet(TRENDS_FILE, table)
    return table
