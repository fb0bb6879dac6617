"""Wave ids as periods: parsing each kind, sorting, the previous period and a year ago."""

from __future__ import annotations

import datetime as dt

import pytest

from misterp.config import ConfigError
from misterp.mrp.config import parse_config
from misterp.periods import detect_period, parse_period


@pytest.mark.parametrize(
    ("wave", "kind", "start", "previous", "year_ago"),
    [
        ("2026-01", "month", dt.date(2026, 1, 1), "2025-12", "2025-01"),
        ("2026-W01", "week", dt.date(2025, 12, 29), "2025-W52", "2025-W01"),
        ("2026-W53", "week", dt.date(2026, 12, 28), "2026-W52", "2025-W52"),
        ("2026-Q1", "quarter", dt.date(2026, 1, 1), "2025-Q4", "2025-Q1"),
        ("2026-03-01", "date", dt.date(2026, 3, 1), "2026-02-28", "2025-03-01"),
        ("2028-02-29", "date", dt.date(2028, 2, 29), "2028-02-28", "2027-02-28"),
    ],
)
def test_each_kind_parses_with_its_start_previous_and_year_ago(
    wave: str, kind: str, start: dt.date, previous: str, year_ago: str
) -> None:
    period = parse_period(wave, kind)
    assert (period.start, period.kind, period.id) == (start, kind, wave)
    assert period.previous().id == previous
    assert period.year_ago().id == year_ago


@pytest.mark.parametrize(
    ("wave", "end"),
    [("2026-02", "2026-02-28"), ("2026-Q4", "2026-12-31"), ("2026-W01", "2026-01-04")],
)
def test_a_period_ends_on_its_last_day(wave: str, end: str) -> None:
    assert detect_period(wave).end().isoformat() == end  # type: ignore[union-attr]


def test_periods_sort_in_time_not_as_text() -> None:
    ids = ["2026-W10", "2025-W52", "2026-W02"]
    ordered = sorted(parse_period(w, "week") for w in ids)
    assert [p.id for p in ordered] == ["2025-W52", "2026-W02", "2026-W10"]


@pytest.mark.parametrize(
    ("wave", "kind", "message"),
    [
        ("2026-13", "month", r"'2026-13' is not a month \(YYYY-MM"),
        ("2026-11-3", "date", r"is not a date \(YYYY-MM-DD"),
        ("2025-W53", "week", r"is not a week"),  # 2025 has 52 ISO weeks
        ("2026-Q5", "quarter", r"is not a quarter"),
        ("demo", "month", r"rename the wave .* to YYYY-MM"),
        ("2026-Q4", "month", r"reads as a quarter: set tracking.period: quarter"),
    ],
)
def test_an_id_that_is_not_a_period_is_a_config_error_with_the_fix(
    wave: str, kind: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_period(wave, kind)


def test_detect_reads_each_form_and_rejects_non_canonical_ids() -> None:
    assert [detect_period(w).kind for w in ("2026-11", "2026-W45", "2026-Q4", "2026-11-03")] == [  # type: ignore[union-attr]
        "month",
        "week",
        "quarter",
        "date",
    ]
    assert detect_period("2026-W5") is None
    assert detect_period("w1") is None


def test_the_tracking_section_defaults_and_checks_its_values() -> None:
    base = {"input": "in", "output": "out", "demographics": ["age"]}
    tracking = parse_config(base).tracking
    assert (tracking.period, tracking.change_probability, tracking.interval) == (
        "month",
        0.95,
        0.90,
    )
    assert tracking.rolling_waves == 3
    with pytest.raises(ConfigError, match=r"tracking\.change_probability"):
        parse_config(base | {"tracking": {"change_probability": 0.4}})
    with pytest.raises(ConfigError, match=r"ends .* before it starts"):
        parse_config(base | {"tracking": {"fieldwork": {"2026-11": ["2026-11-20", "2026-11-02"]}}})
    with pytest.raises(ConfigError, match="did you mean 'period'"):
        parse_config(base | {"tracking": {"perod": "week"}})


def test_a_configured_tracking_section_requires_a_period_wave_id() -> None:
    base = {"input": "in", "output": "out", "demographics": ["age"]}
    assert parse_config(base | {"wave": "demo"}).wave == "demo"  # no section: skipped later
    with pytest.raises(ConfigError, match=r"wave id '2026-11' is not a week .*tracking"):
        parse_config(base | {"wave": "2026-11", "tracking": {"period": "week"}})
    weekly = parse_config(base | {"tracking": {"period": "week"}})
    assert weekly.resolved(wave="2026-W45").wave == "2026-W45"
    with pytest.raises(ConfigError, match="rename the wave"):
        weekly.resolved(wave="2026-11")
