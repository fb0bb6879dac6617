"""Pandera schemas of the per-file input contract of one survey wave.

The demographic columns come from the user's config, so schemas are built by factory functions.
Every check carries its own human message (``error``) and fix (``description``), and every
column its "missing column" fix (``metadata``), so the rules and the advice cannot drift apart.
Cross-file rules (respondents vs poststrat, answers vs questions, ...) live in
:mod:`misterp.mrp.validation`.

All checks expect text columns as python strings (object dtype) with blank cells as None;
:mod:`misterp.inputs` normalises what it reads before validating (its helpers build the checks
and columns here), and :mod:`misterp.mrp.validation` converts to clean dtypes afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pandera.pandas as pa

from misterp.ids import ID_RULE, is_safe_id
from misterp.inputs import (
    ID_FIX,
    check_with_fix,
    no_duplicate_rows,
    safe_id_check,
    text_column,
)

#: Column names of the contract itself; a demographic may not reuse them.
RESERVED_COLUMNS: frozenset[str] = frozenset(
    {
        "respondent_id",
        "market",
        "question_id",
        "option",
        "selected",
        "population",
        "brand",
        "kind",
        "base",
    }
)
QUESTION_KINDS: tuple[str, ...] = ("single", "multi")

UNEXPECTED_DEMOGRAPHIC_FIX = (
    "remove it, or add it to demographics in the config (a census variable) or to profiles (a "
    "respondent-only variable, for audiences)"
)


def parse_base(base: str) -> tuple[str, str] | None:
    """Split a base ``"question=option"`` into its parts; None if it is malformed.

    Split on the first ``=`` so options may contain one; question ids may not.
    """
    question, sep, option = str(base).partition("=")
    question, option = question.strip(), option.strip()
    if not sep or not question or not option:
        return None
    return question, option


def _safe_base(base: object) -> bool:
    """A base's question and option must be safe ids; a malformed base is reported apart."""
    parsed = parse_base(str(base))
    return parsed is None or (is_safe_id(parsed[0]) and is_safe_id(parsed[1]))


def _demographic_columns(demographics: Sequence[str]) -> dict[str, pa.Column]:
    clash = sorted(set(demographics) & RESERVED_COLUMNS)
    if clash or len(set(demographics)) != len(demographics):
        raise ValueError(f"demographics must be distinct and not reuse {clash or 'a name twice'}")
    return {
        name: text_column(f"add it, or remove '{name}' from demographics in the config")
        for name in demographics
    }


def _profile_columns(profiles: Sequence[str], demographics: Sequence[str]) -> dict[str, pa.Column]:
    clash = sorted(set(profiles) & (RESERVED_COLUMNS | set(demographics)))
    if clash:
        raise ValueError(f"profiles may not reuse the columns {clash}")
    return {
        name: text_column(
            f"add the column, or remove '{name}' from profiles in the config", nullable=True
        )
        for name in profiles
    }


def respondents_schema(
    demographics: Sequence[str], profiles: Sequence[str] = ()
) -> pa.DataFrameSchema:
    """One row per respondent: ``respondent_id``, ``market``, the demographics and profiles.

    A profile cell may be blank (not asked, "don't know"): ``profile_settings.missing`` says
    what a blank means.
    """
    respondent_id = text_column(
        "add the respondent_id column",
        checks=[
            check_with_fix(
                lambda s: ~s.duplicated(keep=False),
                error="duplicate respondent_id",
                fix="give each respondent exactly one row (was a file appended twice?)",
            )
        ],
    )
    return pa.DataFrameSchema(
        {
            "respondent_id": respondent_id,
            "market": text_column("add the market column", checks=[safe_id_check("market")]),
            **_demographic_columns(demographics),
            **_profile_columns(profiles, demographics),
        },
        strict=True,
        metadata={"unexpected_fix": UNEXPECTED_DEMOGRAPHIC_FIX},
    )


def _is_zero_or_one(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").isin([0, 1])


def answers_schema() -> pa.DataFrameSchema:
    """Long answers: one row per respondent x question x option shown."""
    selected = pa.Column(
        None,
        nullable=False,
        checks=[
            check_with_fix(
                _is_zero_or_one,
                error="selected must be 0 or 1",
                fix="multi-select questions must be one row per option with selected 0/1",
            )
        ],
        metadata={"missing_fix": "add the selected column (0/1)"},
    )
    return pa.DataFrameSchema(
        {
            "respondent_id": text_column("add the respondent_id column"),
            "question_id": text_column(
                "add the question_id column", checks=[safe_id_check("question")]
            ),
            "option": text_column(
                "add the option column (e.g. 'yes' for a yes/no question)",
                checks=[safe_id_check("option")],
            ),
            "selected": selected,
        },
        checks=[
            no_duplicate_rows(
                ("respondent_id", "question_id", "option"),
                error="duplicate answer rows (same respondent_id, question_id, option)",
                fix="keep one row per respondent, question and option shown",
            )
        ],
        strict=True,
        metadata={"unexpected_fix": "remove it: answers has only these four columns"},
    )


def _is_count(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return values.ge(0) & values.lt(float("inf"))


def poststrat_schema(demographics: Sequence[str]) -> pa.DataFrameSchema:
    """The census joint distribution: one row per market x demographic cell."""
    population = pa.Column(
        None,
        nullable=False,
        checks=[
            check_with_fix(
                _is_count,
                error="population must be a number >= 0",
                fix="use the census head count of the cell (0 for an empty cell)",
            )
        ],
        metadata={"missing_fix": "add the population column (census counts)"},
    )
    return pa.DataFrameSchema(
        {
            "market": text_column("add the market column", checks=[safe_id_check("market")]),
            **_demographic_columns(demographics),
            "population": population,
        },
        checks=[
            no_duplicate_rows(
                ("market", *demographics),
                error="duplicate poststrat cells (same market and demographics)",
                fix="keep one row per cell: sum the population of the duplicates",
            )
        ],
        strict=True,
        metadata={"unexpected_fix": UNEXPECTED_DEMOGRAPHIC_FIX},
    )


def census_tables_schema(demographics: Sequence[str]) -> pa.DataFrameSchema:
    """The census as named tables of margins and cross-tables (instead of ``poststrat``).

    One row per market x table x cell of the table: the demographics the table crosses are
    filled, the others blank. The rules that relate tables live in :mod:`misterp.mrp.census`.
    """
    _demographic_columns(demographics)  # the same name rules as the other files
    population = pa.Column(
        None,
        nullable=False,
        checks=[
            check_with_fix(
                _is_count,
                error="population must be a number >= 0",
                fix="use the census head count of the table's cell (0 for an empty cell)",
            )
        ],
        metadata={"missing_fix": "add the population column (census counts)"},
    )
    blank_fix = "add it (blank in the rows of tables that do not cross {name})"
    return pa.DataFrameSchema(
        {
            "market": text_column("add the market column", checks=[safe_id_check("market")]),
            "table": text_column(
                "add the table column: a name per table, e.g. gender_x_age or region"
            ),
            **{
                name: text_column(blank_fix.format(name=name), nullable=True)
                for name in demographics
            },
            "population": population,
        },
        checks=[
            no_duplicate_rows(
                ("market", "table", *demographics),
                error="duplicate cells of a census table (same market, table and demographics)",
                fix="keep one row per cell of a table: sum the population of the duplicates",
            )
        ],
        strict=True,
        metadata={"unexpected_fix": UNEXPECTED_DEMOGRAPHIC_FIX},
    )


def questions_schema() -> pa.DataFrameSchema:
    """Optional question metadata: brand, kind, base (filter) and label per question and market."""
    kind = text_column(
        "add the kind column (single or multi)",
        checks=[
            check_with_fix(
                lambda s: s.isin(QUESTION_KINDS),
                error="kind must be single or multi",
                fix="use 'single' for a one-option (yes/no) question, 'multi' for multi-select",
            )
        ],
    )
    base = text_column(
        "add the base column (may be empty: asked to everyone)",
        nullable=True,
        checks=[
            check_with_fix(
                lambda v: parse_base(v) is not None,
                error="malformed base, expected question=option",
                fix="write the base as question_id=option (e.g. aware_brand03=yes), or leave empty",
                element_wise=True,
            ),
            check_with_fix(
                _safe_base,
                error=f"base names a question or option that is not a safe id ({ID_RULE})",
                fix=f"rename the question or option, in every file that uses it; {ID_FIX}",
                element_wise=True,
            ),
        ],
    )
    return pa.DataFrameSchema(
        {
            "question_id": text_column(
                "add the question_id column", checks=[safe_id_check("question")]
            ),
            "market": text_column("add the market column", checks=[safe_id_check("market")]),
            "brand": text_column("add the brand column (may be empty)", nullable=True),
            "kind": kind,
            "base": base,
            # optional: the question as people read it, shown in reports beside the id
            "label": pa.Column(
                None, nullable=True, required=False, metadata={"missing_fix": "may be empty"}
            ),
        },
        checks=[
            no_duplicate_rows(
                ("question_id", "market"),
                error="duplicate questions (same question_id and market)",
                fix="keep one row per question and market",
            )
        ],
        strict=True,
        metadata={"unexpected_fix": "remove it"},
    )


def _is_share(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return values.between(0.0, 1.0)


def profile_margins_schema() -> pa.DataFrameSchema:
    """Known population shares of a profile's levels (``profile_margins``), per market.

    One row per market x profile x level: ``share`` in [0, 1]. The synthetic table is raked
    to them draw by draw (:func:`misterp.mrp.profiles.rake_to_margins`).
    """
    share = pa.Column(
        None,
        nullable=False,
        checks=[
            check_with_fix(
                _is_share,
                error="share must be a number from 0 to 1",
                fix="give the level's share of the population, e.g. 0.35 for 35%",
            )
        ],
        metadata={"missing_fix": "add the share column (the level's population share, 0 to 1)"},
    )
    return pa.DataFrameSchema(
        {
            "market": text_column("add the market column", checks=[safe_id_check("market")]),
            "profile": text_column("add the profile column (a name from profiles in the config)"),
            "level": text_column("add the level column (a level of the profile)"),
            "share": share,
        },
        strict=True,
        checks=[
            no_duplicate_rows(
                ["market", "profile", "level"],
                error="duplicate level",
                fix="give each market x profile x level one share",
            )
        ],
        metadata={"unexpected_fix": "remove it: profile_margins has market, profile, level, share"},
    )


def _is_day(series: pd.Series) -> pd.Series:
    """A calendar day written YYYY-MM-DD (an impossible day such as 2026-02-30 is not one)."""
    text = series.astype(str).str.strip()
    parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
    return parsed.notna() & text.str.fullmatch(r"\d{4}-\d{2}-\d{2}")


def milestones_schema() -> pa.DataFrameSchema:
    """Campaign milestones (``milestones``, optional): drawn on the report's trend charts.

    One row per milestone: ``date`` a day (YYYY-MM-DD), ``market`` a surveyed market or
    ``all``, ``label`` what happened (e.g. "TV campaign starts").
    """
    date = pa.Column(
        None,
        nullable=False,
        checks=[
            check_with_fix(
                _is_day,
                error="date is not a day written YYYY-MM-DD",
                fix="write the day of the milestone as YYYY-MM-DD, e.g. 2026-11-03",
            )
        ],
        metadata={"missing_fix": "add the date column (the day of the milestone, YYYY-MM-DD)"},
    )
    return pa.DataFrameSchema(
        {
            "date": date,
            "market": text_column("add the market column (a market of the survey, or all)"),
            "label": text_column("add the label column (what happened, e.g. TV campaign starts)"),
        },
        strict=True,
        checks=[
            no_duplicate_rows(
                ["date", "market", "label"],
                error="duplicate milestone",
                fix="list each milestone once",
            )
        ],
        metadata={"unexpected_fix": "remove it: milestones has date, market, label"},
    )
