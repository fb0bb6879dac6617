"""Wave ids as periods: months, ISO weeks, quarters or dates, which sort and step back.

A tracker compares a wave with the one before it and with the same period last year. Both
follow from the wave id alone once the id is a period, so ids are ``2026-11`` (month, the
default), ``2026-W45`` (ISO week), ``2026-Q4`` (quarter) or ``2026-11-03`` (a dated wave), and
the config's ``tracking.period`` says which. The four forms cannot be confused with one
another, so a catalog can also read an id without knowing the configured kind.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal, get_args

from misterp.errors import ConfigError

__all__ = [
    "PERIOD_FORMATS",
    "PeriodKind",
    "WavePeriod",
    "detect_period",
    "parse_period",
]

PeriodKind = Literal["month", "week", "quarter", "date"]

#: How each kind of wave id is written, for error messages.
PERIOD_FORMATS: dict[str, str] = {
    "month": "YYYY-MM, e.g. 2026-11",
    "week": "YYYY-Www (ISO week), e.g. 2026-W45",
    "quarter": "YYYY-Qn, e.g. 2026-Q4",
    "date": "YYYY-MM-DD, e.g. 2026-11-03",
}

_PATTERNS: dict[str, re.Pattern[str]] = {
    "month": re.compile(r"(\d{4})-(\d{2})"),
    "week": re.compile(r"(\d{4})-W(\d{2})"),
    "quarter": re.compile(r"(\d{4})-Q(\d)"),
    "date": re.compile(r"(\d{4})-(\d{2})-(\d{2})"),
}


@dataclass(frozen=True, order=True)
class WavePeriod:
    """The period a wave id names: its kind and its first day.

    Periods of one kind sort by their first day; ``id`` is the wave id that names the period
    (ids are written canonically, so two spellings of one period cannot both exist).

    Examples
    --------
    >>> p = parse_period("2026-11")
    >>> p.start, p.previous().id, p.year_ago().id
    (datetime.date(2026, 11, 1), '2026-10', '2025-11')
    >>> parse_period("2026-W01", "week").previous().id
    '2025-W52'
    """

    start: dt.date
    kind: PeriodKind
    id: str

    @property
    def sort_key(self) -> tuple[dt.date, str]:
        """Sorts periods in time; the kind breaks ties of periods starting on one day."""
        return (self.start, self.kind)

    def previous(self) -> WavePeriod:
        """The period just before this one (a dated wave has no fixed step: the day before)."""
        if self.kind == "month":
            return _month(self.start.year * 12 + self.start.month - 2)
        if self.kind == "quarter":
            quarter = (self.start.month - 1) // 3
            return _quarter(self.start.year * 4 + quarter - 1)
        step = dt.timedelta(days=7 if self.kind == "week" else 1)
        return _from_day(self.start - step, self.kind)

    def year_ago(self) -> WavePeriod:
        """The same period one year earlier: same month, quarter, ISO week number or day.

        A week 53 maps to week 52 of a year without one, and 29 February to the 28th.
        """
        if self.kind == "week":
            year, week, _ = self.start.isocalendar()
            weeks_then = dt.date(year - 1, 12, 28).isocalendar()[1]
            return _week(year - 1, min(week, weeks_then))
        try:
            start = self.start.replace(year=self.start.year - 1)
        except ValueError:  # 29 February
            start = self.start.replace(year=self.start.year - 1, day=28)
        return _from_day(start, self.kind)

    def end(self) -> dt.date:
        """The last day of the period."""
        if self.kind == "date":
            return self.start
        if self.kind == "week":
            return self.start + dt.timedelta(days=6)
        months = 1 if self.kind == "month" else 3
        index = self.start.year * 12 + self.start.month - 1 + months
        return dt.date(index // 12, index % 12 + 1, 1) - dt.timedelta(days=1)


def _month(index: int) -> WavePeriod:
    year, month = divmod(index, 12)
    return WavePeriod(dt.date(year, month + 1, 1), "month", f"{year:04d}-{month + 1:02d}")


def _quarter(index: int) -> WavePeriod:
    year, quarter = divmod(index, 4)
    return WavePeriod(dt.date(year, 3 * quarter + 1, 1), "quarter", f"{year:04d}-Q{quarter + 1}")


def _week(year: int, week: int) -> WavePeriod:
    return WavePeriod(dt.date.fromisocalendar(year, week, 1), "week", f"{year:04d}-W{week:02d}")


def _from_day(day: dt.date, kind: str) -> WavePeriod:
    if kind == "month":
        return _month(day.year * 12 + day.month - 1)
    if kind == "quarter":
        return _quarter(day.year * 4 + (day.month - 1) // 3)
    if kind == "week":
        year, week, _ = day.isocalendar()
        return _week(year, week)
    return WavePeriod(day, "date", day.isoformat())


def _parse(wave: str, kind: str) -> WavePeriod | None:
    match = _PATTERNS[kind].fullmatch(wave)
    if match is None:
        return None
    numbers = [int(group) for group in match.groups()]
    try:
        if kind == "month":
            period = _month(numbers[0] * 12 + numbers[1] - 1) if 1 <= numbers[1] <= 12 else None
        elif kind == "quarter":
            period = _quarter(numbers[0] * 4 + numbers[1] - 1) if 1 <= numbers[1] <= 4 else None
        elif kind == "week":
            period = _week(numbers[0], numbers[1])
        else:
            period = WavePeriod(dt.date(*numbers), "date", wave)
    except ValueError:  # week 53 of a 52-week year, 31 April, year 0
        return None
    # Only the canonical spelling: "2026-W5" or a week 53 rolled over would name a period
    # under a second id, and the wave's folder would not be found by its period.
    return period if period is not None and period.id == wave else None


def detect_period(wave: str) -> WavePeriod | None:
    """The period ``wave`` names in whichever form it is written; None if it is no period.

    >>> [detect_period(w).kind for w in ("2026-11", "2026-W45", "2026-Q4", "2026-11-03")]
    ['month', 'week', 'quarter', 'date']
    >>> detect_period("demo") is None
    True
    """
    for kind in get_args(PeriodKind):
        period = _parse(wave, kind)
        if period is not None:
            return period
    return None


def parse_period(wave: str, kind: str = "month") -> WavePeriod:
    """The period the wave id ``wave`` names, read as ``kind``; ``ConfigError`` with the fix.

    Parameters
    ----------
    wave
        The wave id, e.g. ``2026-11``.
    kind
        The config's ``tracking.period``: month, week, quarter or date.

    Raises
    ------
    ConfigError
        When ``wave`` is not a ``kind`` period (or ``kind`` is not a kind), saying how a wave
        id of that kind is written and, if it is another kind's id, which.

    Examples
    --------
    >>> parse_period("2026-Q4", "quarter").start
    datetime.date(2026, 10, 1)
    >>> parse_period("2026-13")
    Traceback (most recent call last):
    ...
    misterp.errors.ConfigError: wave id '2026-13' is not a month ...
    """
    if kind not in _PATTERNS:
        raise ConfigError(
            f"tracking.period '{kind}' is not a period kind; use one of "
            f"{', '.join(sorted(_PATTERNS))}"
        )
    period = _parse(wave, kind)
    if period is not None:
        return period
    other = detect_period(wave)
    hint = (
        f"; it reads as a {other.kind}: set tracking.period: {other.kind} in the config if "
        "every wave is one"
        if other is not None
        else ""
    )
    raise ConfigError(
        f"wave id '{wave}' is not a {kind} ({PERIOD_FORMATS[kind]}), so it cannot be placed "
        f"among the other waves{hint}; rename the wave (--wave or the config's 'wave') to "
        f"{PERIOD_FORMATS[kind].split(', e.g. ')[0]}"
    )
