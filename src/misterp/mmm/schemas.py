"""Pandera schemas of the per-file input contract of a media-mix run.

Every check carries its message (``error``) and its fix (``description``) and every column its
"missing column" fix, built with the helpers of :mod:`misterp.inputs` as the tracker's schemas
are. Files arrive as text (see :func:`misterp.inputs.read_table`), so numbers and dates are
parsed inside the checks; rules that span rows or files (weekly dates, coverage, zero spend) are
in :mod:`misterp.mmm.validation`.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from misterp.inputs import check_with_fix, no_duplicate_rows, safe_id_check, text_column

__all__ = [
    "MMM_FILES",
    "OPTIONAL_FILES",
    "controls_schema",
    "kpi_schema",
    "lift_tests_schema",
    "media_schema",
    "parse_dates",
    "parse_numbers",
]

#: Input files of a run, in the order problems are reported.
MMM_FILES: tuple[str, ...] = ("kpi", "media", "controls", "lift_tests")
#: Files a run may do without.
OPTIONAL_FILES: frozenset[str] = frozenset({"controls", "lift_tests"})


def parse_dates(series: pd.Series) -> pd.Series:
    """ISO dates (``2025-01-06``) as timestamps; anything else as NaT."""
    return pd.to_datetime(series, format="ISO8601", errors="coerce")


def parse_numbers(series: pd.Series) -> pd.Series:
    """Numbers as floats; anything else as NaN."""
    return pd.to_numeric(series, errors="coerce")


def _is_date(series: pd.Series) -> pd.Series:
    return parse_dates(series).notna()


def _is_non_negative(series: pd.Series) -> pd.Series:
    values = parse_numbers(series)
    return values.ge(0) & values.lt(float("inf"))


def _is_positive(series: pd.Series) -> pd.Series:
    values = parse_numbers(series)
    return values.gt(0) & values.lt(float("inf"))


def _is_finite(series: pd.Series) -> pd.Series:
    values = parse_numbers(series)
    return values.abs().lt(float("inf"))


def _date_column() -> pa.Column:
    return text_column(
        "add the date column (the week's first day, YYYY-MM-DD)",
        checks=[
            check_with_fix(
                _is_date,
                error="not a date",
                fix="write dates as YYYY-MM-DD, the first day of the week",
            )
        ],
    )


def _market_column() -> pa.Column:
    return text_column("add the market column", checks=[safe_id_check("market")])


def _amount(name: str, *, what: str, fix: str, nullable: bool = False) -> pa.Column:
    return pa.Column(
        None,
        nullable=nullable,
        checks=[check_with_fix(_is_non_negative, error=f"{name} must be a number >= 0", fix=fix)],
        metadata={"missing_fix": f"add the {name} column ({what})"},
    )


def kpi_schema() -> pa.DataFrameSchema:
    """One row per market and week: the KPI the media should explain."""
    return pa.DataFrameSchema(
        {
            "date": _date_column(),
            "market": _market_column(),
            "kpi": _amount(
                "kpi",
                what="weekly sales, sign-ups, ...",
                fix="give the week's KPI in its own units (0 if there was none); a negative "
                "KPI is a returns or correction row: net it into its week",
            ),
        },
        checks=[
            no_duplicate_rows(
                ("date", "market"),
                error="duplicate weeks (same date and market)",
                fix="keep one row per market and week: sum the duplicates",
            )
        ],
        strict=True,
        metadata={"unexpected_fix": "remove it: kpi has date, market and kpi only"},
    )


def media_schema() -> pa.DataFrameSchema:
    """One row per market, channel and week: spend (and optionally impressions)."""
    return pa.DataFrameSchema(
        {
            "date": _date_column(),
            "market": _market_column(),
            "channel": text_column("add the channel column", checks=[safe_id_check("channel")]),
            "spend": _amount(
                "spend",
                what="in one currency unit, e.g. thousands per week",
                fix="give the week's spend (0 for a week without any); refunds belong in "
                "the week they were spent",
            ),
            "impressions": _amount(
                "impressions",
                what="optional",
                fix="give impressions as a count >= 0, or leave the cell empty",
                nullable=True,
            ),
        },
        checks=[
            no_duplicate_rows(
                ("date", "market", "channel"),
                error="duplicate rows (same date, market and channel)",
                fix="keep one row per market, channel and week: sum the duplicates",
            )
        ],
        strict=True,
        metadata={
            "unexpected_fix": "remove it: media has date, market, channel, spend and "
            "impressions only"
        },
    )


def controls_schema(controls: list[str]) -> pa.DataFrameSchema:
    """One row per market and week, one numeric column per configured control."""
    columns = {
        name: pa.Column(
            None,
            nullable=False,
            checks=[
                check_with_fix(
                    _is_finite,
                    error="not a number",
                    fix="give every week a number (0 if the control did not apply)",
                )
            ],
            metadata={"missing_fix": f"add it, or remove '{name}' from controls in the config"},
        )
        for name in controls
    }
    return pa.DataFrameSchema(
        {"date": _date_column(), "market": _market_column(), **columns},
        checks=[
            no_duplicate_rows(
                ("date", "market"),
                error="duplicate weeks (same date and market)",
                fix="keep one row per market and week",
            )
        ],
        strict=False,  # unused columns are allowed: one file can serve several configs
        metadata={"unexpected_fix": "remove it"},
    )


def lift_tests_schema() -> pa.DataFrameSchema:
    """Lift tests: a spend change ``delta_x`` from ``x`` moved the KPI by ``delta_y``."""

    def number(name: str, what: str, positive: bool = False) -> pa.Column:
        check = check_with_fix(
            _is_positive if positive else _is_finite,
            error=f"{name} must be a number{' > 0' if positive else ''}",
            fix=f"give {what}",
        )
        return pa.Column(None, checks=[check], metadata={"missing_fix": f"add {name} ({what})"})

    return pa.DataFrameSchema(
        {
            "market": _market_column(),
            "channel": text_column("add the channel column", checks=[safe_id_check("channel")]),
            "start": _date_column(),
            "end": _date_column(),
            "x": number("x", "the weekly spend before the test"),
            "delta_x": number("delta_x", "the change in weekly spend during the test"),
            "delta_y": number("delta_y", "the measured change in weekly KPI"),
            "sigma": number("sigma", "the standard error of delta_y", positive=True),
        },
        strict=True,
        metadata={"unexpected_fix": "remove it"},
    )
