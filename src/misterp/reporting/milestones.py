"""Campaign milestones in the report: their table, and where a date falls on a trend chart.

A wave's input may list milestones (``milestones.csv``: date, market or ``all``, label); they
are published with the wave (``milestones.parquet``), listed on the page and drawn as a
vertical line on the trend charts of their market (``all``: every market).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

__all__ = ["DATE", "MILESTONE", "MILESTONE_COLUMNS", "milestone_position", "milestones_table"]

DATE = "Date"
MARKET = "Market"
MILESTONE = "Milestone"
#: The milestones table's columns, in order.
MILESTONE_COLUMNS: tuple[str, ...] = (DATE, MARKET, MILESTONE)


def milestones_table(milestones: pd.DataFrame | None) -> pd.DataFrame:
    """The wave's milestones by date, readable (empty without a ``milestones.parquet``).

    >>> frame = pd.DataFrame({"date": ["2026-11-03", "2026-10-01"], "market": ["all", "DE"],
    ...     "label": ["TV starts", "Price cut"]})
    >>> milestones_table(frame)[MILESTONE].tolist()
    ['Price cut', 'TV starts']
    """
    if milestones is None or milestones.empty:
        return pd.DataFrame(columns=list(MILESTONE_COLUMNS))
    out = pd.DataFrame(
        {
            DATE: milestones["date"].astype(str),
            MARKET: milestones["market"].astype(str),
            MILESTONE: milestones["label"].astype(str),
        }
    )
    return out.sort_values([DATE, MARKET, MILESTONE], kind="stable").reset_index(drop=True)


def milestone_position(day: str, starts: Sequence[str]) -> float | None:
    """Where ``day`` falls on a trend chart whose waves start on ``starts`` (in order).

    Wave ``i`` is drawn at category ``i``, its period spanning ``i - 0.5`` to ``i + 0.5``; a
    day is placed in proportion within its wave's period (the last wave is taken to be as long
    as the one before it). None for a day outside the charted waves.

    >>> starts = ["2026-09-01", "2026-10-01", "2026-11-01"]
    >>> milestone_position("2026-10-01", starts), milestone_position("2026-09-16", starts)
    (0.5, 0.0)
    >>> milestone_position("2026-08-31", starts) is None
    True
    """
    if not starts:
        return None
    dates = [dt.date.fromisoformat(s) for s in starts]
    when = dt.date.fromisoformat(day)
    before = [i for i, start in enumerate(dates) if start <= when]
    if not before:
        return None
    i = before[-1]
    if i + 1 < len(dates):
        length = (dates[i + 1] - dates[i]).days
    else:
        length = (dates[i] - dates[i - 1]).days if i > 0 else 31
    offset = (when - dates[i]).days / max(length, 1)
    if offset >= 1.0:  # after the last charted wave's period
        return None
    return i - 0.5 + offset
