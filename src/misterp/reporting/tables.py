"""The report's tables, built from a wave's published files: one pure function per table.

Every table is what the page shows and what ``tables.xlsx`` and the CSV twins hold, with the
same readable column names and the same rounding (shares in percent and changes in points to
one decimal, probabilities to three), so a number read off the page is the number in the export.
The charts are drawn from these tables too, never from numbers recomputed on the side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from misterp.mrp.config import Certainty, CertaintySettings
from misterp.mrp.published import question_family
from misterp.tracking.changes import CHANGE_COLUMNS
from misterp.tracking.comparisons import COMPARISON_COLUMNS, ComparisonKind
from misterp.tracking.competitors import COMPETITOR_COLUMNS
from misterp.tracking.flags import certainty_grades
from misterp.tracking.funnel import FUNNEL_COLUMNS
from misterp.tracking.trends import TREND_COLUMNS

__all__ = [
    "ARROWS",
    "BASE_MARKS",
    "SHEETS",
    "ReportTables",
    "association_table",
    "audiences_table",
    "changes_table",
    "comparison_table",
    "comparisons_tables",
    "competitors_table",
    "funnel_table",
    "headline_summary",
    "headline_table",
    "identity",
    "kpi_name",
    "trends_table",
]

# Readable column names, shared by every table (and so by the page, the xlsx and the CSVs).
WAVE = "Wave"
MARKET = "Market"
BRAND = "Brand"
QUESTION = "Question"
LABEL = "Label"
OPTION = "Option"
GROUP = "Group"
FAMILY = "Family"
ESTIMATE = "Estimate %"
LOWER = "Lower %"
UPPER = "Upper %"
INTERVAL = "Interval %"
CHANGE = "Change pts"
CHANGE_LOWER = "Change lower pts"
CHANGE_UPPER = "Change upper pts"
DIRECTION = "Direction"
P_UP = "P(up)"
P_DOWN = "P(down)"
FLAG = "Change flag"
REFERENCE = "Compared with"
REFERENCE_WAVES = "Reference waves"
COMPARABLE = "Comparable"
BASE_N = "Base n"
BASE_FLAG = "Base flag"
STATUS = "Status"
NOTE = "Note"
PERIOD_START = "Period start"
Q05 = "5th pct %"
Q95 = "95th pct %"
RAW = "Raw %"
RAKED = "Raked %"
RAKED_ESS = "Raked ESS"
STAGE = "Stage"
STAGE_NAME = "Stage name"
SHARE = "Share %"
SHARE_LOWER = "Share lower %"
SHARE_UPPER = "Share upper %"
CERTAINTY = "Certainty"
CHANGE_CERTAINTY = "Change certainty"
FLAG_RULE = "Flag rule"
P_ERROR = "P(flag wrong)"

#: The marker of a certainty grade on the page (the exports spell the grade out).
CERTAINTY_MARKS: dict[str, str] = {
    Certainty.SOLID.value: "●",
    Certainty.INDICATIVE.value: "◐",
    Certainty.TOO_UNCERTAIN.value: "○",
}
#: What a suppressed number reads as (``reporting.certainty.suppress``).
TOO_UNCERTAIN = "too uncertain"

#: The arrow of a change flag; a change without a flag (not comparable, no reference) has none.
ARROWS: dict[str, str] = {"up": "▲", "down": "▼", "steady": "–"}

#: The marker of a base flag: empty for an ``ok`` base, so only low bases catch the eye.
BASE_MARKS: dict[str, str] = {
    "ok": "",
    "low_base": "low base",
    "very_low_base": "very low base",
    "modelled_only": "model only (n = 0)",
}

#: Sheet (and CSV) names of the report's tables, in order.
SHEETS: tuple[str, ...] = (
    "headline",
    "changes",
    "trends",
    "funnel",
    "competitors",
    "associations",
    "mrp_raw_raked",
    "audiences",
    "group_vs_rest",
    "brand_vs_brand",
)

#: Sheets a wave has only when it has their data, each with the sheet it follows.
_OPTIONAL_SHEETS: tuple[tuple[str, str], ...] = (("smoothed", "changes"), ("milestones", "trends"))

_MODEL_KEY = ["market", "question_id", "option", "target_group"]

#: Column of the audiences table: the profile variables a group is defined on.
PROFILES = "Profiles"
#: The audiences table's columns, in order.
AUDIENCE_TABLE_COLUMNS: tuple[str, ...] = (
    MARKET,
    GROUP,
    PROFILES,
    SHARE,
    SHARE_LOWER,
    SHARE_UPPER,
    STATUS,
    NOTE,
)
_NO_AUDIENCES = pd.DataFrame(columns=list(AUDIENCE_TABLE_COLUMNS))


@dataclass(frozen=True)
class ReportTables:
    """Every table of one wave's report, readable and rounded as exported."""

    headline: pd.DataFrame
    changes: pd.DataFrame
    trends: pd.DataFrame
    funnel: pd.DataFrame
    competitors: pd.DataFrame
    associations: pd.DataFrame
    mrp_raw_raked: pd.DataFrame
    #: Each target group's share of the population (an audience's size); none in waves
    #: published before audiences.parquet existed.
    audiences: pd.DataFrame = field(default_factory=lambda: _NO_AUDIENCES.copy())
    #: The smoothed trend beside the raw change (``reporting.smoothed``); empty, and no sheet,
    #: for a wave published without ``tracking.smoothing``.
    smoothed: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The wave's campaign milestones (``reporting.milestones``); empty, and no sheet, for a
    #: wave without ``milestones.parquet``.
    milestones: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Each target group against the rest of its market, and brand against brand; none in
    #: waves published before comparisons.parquet existed.
    group_vs_rest: pd.DataFrame = field(default_factory=pd.DataFrame)
    brand_vs_brand: pd.DataFrame = field(default_factory=pd.DataFrame)

    def sheets(self) -> dict[str, pd.DataFrame]:
        """Sheet name to table, in ``SHEETS`` order (the xlsx sheets and the CSV names).

        ``smoothed`` follows ``changes`` when the wave has a smoothed trend, ``milestones``
        follows ``trends`` when it has milestones.
        """
        sheets: dict[str, pd.DataFrame] = {}
        for name in SHEETS:
            sheets[name] = getattr(self, name)
            for optional, after in _OPTIONAL_SHEETS:
                if after == name and not getattr(self, optional).empty:
                    sheets[optional] = getattr(self, optional)
        return sheets


def _percent(values: pd.Series | float) -> pd.Series:
    """Shares (0-1) as percent, or changes as points, to one decimal."""
    return (pd.Series(values, dtype=float) * 100).round(1)


def _probability(values: pd.Series) -> pd.Series:
    return pd.Series(values, dtype=float).round(3)


def _column(frame: pd.DataFrame, name: str, fallback: str | None = None) -> pd.Series:
    """A column, or its fallback, or NaN: files from older versions lack newer columns."""
    if name in frame:
        return frame[name]
    if fallback is not None and fallback in frame:
        return frame[fallback]
    return pd.Series(np.nan, index=frame.index, dtype=float)


def _words(values: pd.Series) -> pd.Series:
    """``not_converged`` as ``not converged``: statuses and flags read as words."""
    return values.astype(object).where(values.notna(), "").astype(str).str.replace("_", " ")


def _identity(
    frame: pd.DataFrame, labels: Mapping[str, str] | None, *, group: bool = True
) -> pd.DataFrame:
    """Market, brand, question (and its label when known), option and target group."""
    out = pd.DataFrame(index=frame.index)
    out[MARKET] = frame["market"].astype(str)
    out[BRAND] = _column(frame, "brand").astype(object).where(lambda s: s.notna(), "")
    out[QUESTION] = frame["question_id"].astype(str)
    if labels:
        out[LABEL] = frame["question_id"].map(lambda q: labels.get(str(q), str(q)))
    out[OPTION] = frame["option"].astype(str)
    if group:
        out[GROUP] = frame["target_group"].astype(str)
    return out


#: The identity columns of a table's rows (market, brand, question, label, option, group), for
#: the report's other tables built outside this module.
identity = _identity


def kpi_name(question: str, option: str, label: str | None = None) -> str:
    """How a chart names an estimate: its label (or id), and the option unless it is ``yes``.

    >>> kpi_name("aware_b1", "yes"), kpi_name("assoc_b1", "fun", "Brand image")
    ('aware_b1', 'Brand image · fun')
    """
    name = label or question
    return name if option == "yes" else f"{name} · {option}"


def _base_marks(flags: pd.Series) -> pd.Series:
    """The marker of each base flag; no flag (estimates from before base flags) is ``ok``."""
    known = flags.astype(object).where(flags.notna(), "ok")
    return known.map(lambda f: BASE_MARKS.get(str(f), str(f).replace("_", " ")))


def _grades(lower: pd.Series, upper: pd.Series, certainty: CertaintySettings) -> pd.Series:
    """The certainty grade, in words, of each interval (``too uncertain`` when it has none)."""
    half = (pd.Series(upper, dtype=float) - pd.Series(lower, dtype=float)) / 2
    grades = certainty_grades(half.to_numpy(), certainty)
    return pd.Series(grades, index=half.index).str.replace("_", " ")


def _suppress(out: pd.DataFrame, grade: pd.Series, columns: list[str], on: bool) -> None:
    """Blank the numbers graded too uncertain, in place, where the config asks for it."""
    if on:
        out.loc[grade == TOO_UNCERTAIN, columns] = np.nan


def _rule_of(changes: pd.DataFrame | None) -> pd.Series:
    """The flag rule each change row was flagged under (changes from before issue 24: none)."""
    if changes is None:
        return pd.Series(dtype=object)
    rule = _column(changes, "rule").astype(object)
    return rule.where(rule.notna(), "")


def headline_table(
    estimates: pd.DataFrame,
    changes: pd.DataFrame | None,
    *,
    group: str = "all",
    labels: Mapping[str, str] | None = None,
    certainty: CertaintySettings | None = None,
) -> pd.DataFrame:
    """One row per market x question x option: the estimate of ``group`` and its change.

    The change is against the previous complete wave; ``Change flag`` says ``no previous
    wave`` when there is none (``changes`` empty or None) and ``not comparable`` when the
    comparison is not like for like (its note says why), and ``Direction`` is an arrow only for
    a flagged or steady change. ``Base flag`` is empty for a base that is ``ok``.

    Examples
    --------
    >>> estimates = pd.DataFrame({"market": ["DE"], "question_id": ["aware_b1"],
    ...     "option": ["yes"], "brand": ["b1"], "target_group": ["all"], "mean": [0.5],
    ...     "lower": [0.375], "upper": [0.625], "interval": [0.9], "n": [40],
    ...     "base_flag": ["low_base"], "status": ["converged"]})
    >>> changes = pd.DataFrame({"market": ["DE"], "question_id": ["aware_b1"],
    ...     "option": ["yes"], "target_group": ["all"], "reference": ["previous"],
    ...     "reference_waves": ["2026-10"], "mean": [0.125], "lower": [0.0625],
    ...     "upper": [0.1875], "p_up": [0.99], "p_down": [0.01], "flag": ["up"],
    ...     "comparable": [True], "note": [None]})
    >>> row = headline_table(estimates, changes).iloc[0]
    >>> float(row["Estimate %"]), float(row["Change pts"]), row["Direction"], row["Base flag"]
    (50.0, 12.5, '▲', 'low base')
    """
    grading = certainty or CertaintySettings()
    rows = estimates[estimates["target_group"] == group]
    previous = _previous_changes(changes, group)
    merged = rows.merge(previous, on=_MODEL_KEY, how="left")
    out = _identity(merged, labels)
    out[ESTIMATE] = _percent(merged["mean"])
    out[LOWER] = _percent(_column(merged, "lower", "q05"))
    out[UPPER] = _percent(_column(merged, "upper", "q95"))
    out[INTERVAL] = _percent(_column(merged, "interval"))
    out[CERTAINTY] = _grades(
        _column(merged, "lower", "q05"), _column(merged, "upper", "q95"), grading
    )
    out[CHANGE] = _percent(merged["change_mean"])
    out[CHANGE_LOWER] = _percent(merged["change_lower"])
    out[CHANGE_UPPER] = _percent(merged["change_upper"])
    out[CHANGE_CERTAINTY] = _grades(merged["change_lower"], merged["change_upper"], grading)
    out.loc[merged["change_mean"].isna().to_numpy(), CHANGE_CERTAINTY] = ""
    out[DIRECTION] = merged["change_flag"].map(lambda f: ARROWS.get(str(f), ""))
    out[P_UP] = _probability(merged["change_p_up"])
    out[P_DOWN] = _probability(merged["change_p_down"])
    out[FLAG] = [
        _flag_words(flag, comparable)
        for flag, comparable in zip(merged["change_flag"], merged["change_comparable"], strict=True)
    ]
    out[FLAG_RULE] = merged["change_rule"].astype(object).where(merged["change_rule"].notna(), "")
    out[REFERENCE_WAVES] = (
        merged["change_reference_waves"]
        .astype(object)
        .where(merged["change_reference_waves"].notna(), "")
    )
    out[BASE_N] = _column(merged, "n").astype("Int64")
    out[BASE_FLAG] = _base_marks(_column(merged, "base_flag"))
    out[STATUS] = _words(merged["status"])
    out[NOTE] = merged["change_note"].astype(object).where(merged["change_note"].notna(), "")
    _suppress(out, out[CERTAINTY], [ESTIMATE, LOWER, UPPER], grading.suppress)
    _suppress(out, out[CHANGE_CERTAINTY], [CHANGE, CHANGE_LOWER, CHANGE_UPPER], grading.suppress)
    return out.reset_index(drop=True)


def _flag_words(flag: object, comparable: object) -> str:
    """The flag, or why there is none: the comparison is not like for like, or has no wave."""
    if isinstance(flag, str):
        return flag
    if isinstance(comparable, bool | np.bool_) and not comparable:
        return "not comparable"
    return "no previous wave"


def _previous_changes(changes: pd.DataFrame | None, group: str) -> pd.DataFrame:
    """The ``previous`` change rows of ``group``, their value columns prefixed ``change_``."""
    values = ["mean", "lower", "upper", "p_up", "p_down", "flag", "comparable"]
    values += ["reference_waves", "note", "rule"]
    if changes is None or changes.empty:
        frame = pd.DataFrame(columns=_MODEL_KEY + values)
    else:
        ruled = changes.assign(rule=_rule_of(changes).to_numpy())
        frame = ruled.loc[
            (ruled["reference"] == "previous") & (ruled["target_group"] == group),
            _MODEL_KEY + values,
        ]
    return frame.rename(columns={v: f"change_{v}" for v in values})


def changes_table(
    changes: pd.DataFrame | None,
    *,
    labels: Mapping[str, str] | None = None,
    certainty: CertaintySettings | None = None,
) -> pd.DataFrame:
    """Every change row of the wave (every group and reference), readable.

    ``Flag rule`` names the rule each row was flagged under and ``P(flag wrong)`` is the
    probability it reads (a flag, or would-be flag, being wrong); ``Change certainty`` grades
    the change's interval, and with ``certainty.suppress`` a too uncertain change is blank.
    """
    grading = certainty or CertaintySettings()
    if changes is None:
        changes = pd.DataFrame(columns=list(CHANGE_COLUMNS))
    out = _identity(changes, labels)
    out[REFERENCE] = changes["reference"].astype(str)
    out[REFERENCE_WAVES] = changes["reference_waves"].astype(str)
    out[CHANGE] = _percent(changes["mean"])
    out[CHANGE_LOWER] = _percent(changes["lower"])
    out[CHANGE_UPPER] = _percent(changes["upper"])
    out[CHANGE_CERTAINTY] = _grades(changes["lower"], changes["upper"], grading)
    out[DIRECTION] = changes["flag"].map(lambda f: ARROWS.get(str(f), ""))
    out[P_UP] = _probability(changes["p_up"])
    out[P_DOWN] = _probability(changes["p_down"])
    out[FLAG] = changes["flag"].astype(object).where(changes["flag"].notna(), "not comparable")
    out[FLAG_RULE] = _rule_of(changes)
    out[P_ERROR] = _probability(_column(changes, "p_error"))
    _suppress(out, out[CHANGE_CERTAINTY], [CHANGE, CHANGE_LOWER, CHANGE_UPPER], grading.suppress)
    out[COMPARABLE] = changes["comparable"].astype(bool)
    out[STATUS] = _words(changes["status"])
    out[NOTE] = changes["note"].astype(object).where(changes["note"].notna(), "")
    return out.reset_index(drop=True)


def trends_table(
    trends: pd.DataFrame | None,
    wave: str,
    n_waves: int,
    *,
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The trend rows of ``wave`` and the ``n_waves - 1`` complete waves before it.

    Waves are ordered by period start, so the window is the same whichever wave's report is
    written later: a report of an earlier wave never shows waves published after it.

    Examples
    --------
    >>> trends = pd.DataFrame({"wave": ["2026-09", "2026-10", "2026-11", "2026-12"],
    ...     "period_start": pd.to_datetime(["2026-09-01", "2026-10-01", "2026-11-01",
    ...     "2026-12-01"]), "market": "DE", "question_id": "aware_b1", "option": "yes",
    ...     "brand": "b1", "target_group": "all", "mean": 0.5, "q05": 0.25, "q95": 0.75,
    ...     "n": 100, "status": "converged"})
    >>> trends_table(trends, "2026-11", 2)["Wave"].tolist()
    ['2026-10', '2026-11']
    """
    if n_waves < 1:
        raise ValueError(f"n_waves must be at least 1, got {n_waves}")
    if trends is None or trends.empty or wave not in set(trends["wave"]):
        trends = pd.DataFrame(columns=list(TREND_COLUMNS))
    order = trends.drop_duplicates("wave").sort_values(["period_start", "wave"], kind="stable")
    waves = order["wave"].tolist()
    window = waves[: waves.index(wave) + 1][-n_waves:] if wave in waves else []
    rows = trends[trends["wave"].isin(window)].sort_values(["period_start", "wave"], kind="stable")
    out = pd.DataFrame(index=rows.index)
    out[WAVE] = rows["wave"].astype(str)
    out[PERIOD_START] = pd.to_datetime(rows["period_start"]).dt.strftime("%Y-%m-%d")
    out = out.join(_identity(rows, labels))
    out[ESTIMATE] = _percent(rows["mean"])
    out[Q05] = _percent(rows["q05"])
    out[Q95] = _percent(rows["q95"])
    out[BASE_N] = rows["n"].astype("Int64")
    out[STATUS] = _words(rows["status"])
    return out.reset_index(drop=True)


def funnel_table(
    funnel: pd.DataFrame | None, *, labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Every funnel stage of the wave: population share, conversion, coherence, readable."""
    if funnel is None:
        funnel = pd.DataFrame(columns=list(FUNNEL_COLUMNS))
    out = _identity(funnel, labels)
    out.insert(2, "Funnel", funnel["funnel"].astype(str))
    out[STAGE] = funnel["stage"].astype("Int64")
    out[STAGE_NAME] = funnel["stage_name"].astype(str)
    out["Conditional"] = funnel["conditional"].astype(bool)
    out[SHARE] = _percent(funnel["share_mean"])
    out[SHARE_LOWER] = _percent(funnel["share_lower"])
    out[SHARE_UPPER] = _percent(funnel["share_upper"])
    out["Conversion %"] = _percent(funnel["conversion_mean"])
    out["Conversion lower %"] = _percent(funnel["conversion_lower"])
    out["Conversion upper %"] = _percent(funnel["conversion_upper"])
    out["P(above previous)"] = _probability(funnel["p_above_previous"])
    out["Coherent"] = funnel["coherent"].astype(bool)
    out[STATUS] = _words(funnel["status"])
    return out.reset_index(drop=True)


def competitors_table(
    competitors: pd.DataFrame | None, *, labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Brands against each other per family: share of total and rank probabilities."""
    if competitors is None:
        competitors = pd.DataFrame(columns=list(COMPETITOR_COLUMNS))
    out = _identity(competitors, labels)
    out.insert(1, FAMILY, competitors["family"].astype(str))
    out["Brands compared"] = competitors["n_brands"].astype("Int64")
    out[ESTIMATE] = _percent(competitors["mean"])
    out["Share of total %"] = _percent(competitors["share_of_total_mean"])
    out[SHARE_LOWER] = _percent(competitors["share_of_total_lower"])
    out[SHARE_UPPER] = _percent(competitors["share_of_total_upper"])
    out["P(rank 1)"] = _probability(competitors["p_rank_1"])
    out["Expected rank"] = pd.Series(competitors["expected_rank"], dtype=float).round(2)
    # A list does not fit a spreadsheet cell: "P(rank 1) / P(rank 2) / ...".
    out["P(rank)"] = competitors["p_rank"].map(
        lambda ps: " / ".join(f"{float(p):.3f}" for p in ps) if ps is not None else ""
    )
    out[STATUS] = _words(competitors["status"])
    return out.reset_index(drop=True)


def association_table(
    estimates: pd.DataFrame, *, group: str = "all", labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The association estimates of ``group``: brand questions with options other than yes.

    A brand's multi-option question (``assoc_BRAND`` with ``innovative``, ``fun``, ...) is an
    association; the brand-free part of its id (its family) groups the brands into one heatmap.
    Yes/no questions (awareness, consideration) are KPIs, not associations.
    """
    rows = estimates[estimates["target_group"] == group].copy()
    rows["family"] = [
        question_family(str(q), b if isinstance(b, str) else None)
        for q, b in zip(rows["question_id"], _column(rows, "brand"), strict=True)
    ]
    rows = rows[rows["family"].notna()]
    multi = rows.groupby(["market", "family"])["option"].transform(lambda o: (o != "yes").any())
    rows = rows[multi.astype(bool)]
    out = _identity(rows, labels)
    out.insert(1, FAMILY, rows["family"].astype(str))
    out[ESTIMATE] = _percent(rows["mean"])
    out[LOWER] = _percent(_column(rows, "lower", "q05"))
    out[UPPER] = _percent(_column(rows, "upper", "q95"))
    out[BASE_N] = _column(rows, "n").astype("Int64")
    out[BASE_FLAG] = _base_marks(_column(rows, "base_flag"))
    out[STATUS] = _words(rows["status"])
    return out.reset_index(drop=True)


def comparison_table(
    estimates: pd.DataFrame,
    *,
    labels: Mapping[str, str] | None = None,
    certainty: CertaintySettings | None = None,
) -> pd.DataFrame:
    """MRP beside the raw and the raked sample share, for every estimate and target group.

    The raw share is what the panel said; raking weights it to the census margins; MRP models
    it cell by cell. Where they part, the panel is unlike the population, and that gap is what
    MRP is there to close.
    """
    out = _identity(estimates, labels)
    out["MRP %"] = _percent(estimates["mean"])
    out["MRP lower %"] = _percent(_column(estimates, "lower", "q05"))
    out["MRP upper %"] = _percent(_column(estimates, "upper", "q95"))
    grading = certainty or CertaintySettings()
    out[CERTAINTY] = _grades(
        _column(estimates, "lower", "q05"), _column(estimates, "upper", "q95"), grading
    )
    _suppress(out, out[CERTAINTY], ["MRP %", "MRP lower %", "MRP upper %"], grading.suppress)
    out[RAW] = _percent(_column(estimates, "raw_mean"))
    out[RAKED] = _percent(_column(estimates, "raked_mean"))
    out[RAKED_ESS] = pd.Series(_column(estimates, "raked_ess"), dtype=float).round(1)
    out[BASE_N] = _column(estimates, "n").astype("Int64")
    out[BASE_FLAG] = _base_marks(_column(estimates, "base_flag"))
    out[STATUS] = _words(estimates["status"])
    return out.reset_index(drop=True)


def headline_summary(headline: pd.DataFrame) -> list[dict[str, str]]:
    """The headline as short text rows (KPI, estimate, change, arrow, base), for a UI table.

    >>> headline = pd.DataFrame({"Market": ["DE"], "Question": ["aware_b1"],
    ...     "Option": ["yes"], "Estimate %": [50.0], "Lower %": [37.5], "Upper %": [62.5],
    ...     "Change pts": [12.5], "Direction": ["▲"], "Change flag": ["up"],
    ...     "Base n": [40], "Base flag": ["low base"]})
    >>> headline_summary(headline)[0]["change"]
    '+12.5 pts'
    """
    rows = []
    for row in headline.to_dict("records"):
        change = row[CHANGE]
        label = row.get(LABEL) or None
        rows.append(
            {
                "kpi": f"{row[MARKET]} · {kpi_name(row[QUESTION], row[OPTION], label)}",
                "estimate": f"{row[ESTIMATE]:.1f}% ({row[LOWER]:.1f}-{row[UPPER]:.1f})",
                "change": "" if pd.isna(change) else f"{change:+.1f} pts",
                "arrow": row[DIRECTION] or row[FLAG],
                "base": f"{row[BASE_N]}" + (f" ({row[BASE_FLAG]})" if row[BASE_FLAG] else ""),
            }
        )
    return rows


def audiences_table(audiences: pd.DataFrame | None) -> pd.DataFrame:
    """Each target group's share of its market's population, with its interval.

    A group on census demographics has the census's share; an audience on a profile
    (category users) has a modelled share, the category penetration, with its interval.

    >>> frame = pd.DataFrame({"market": ["DE"], "target_group": ["users"], "profiles": ["user"],
    ...                       "mean": [0.3512], "lower": [0.3], "upper": [0.4],
    ...                       "status": ["converged"], "note": [None]})
    >>> audiences_table(frame)[[GROUP, PROFILES, SHARE, SHARE_LOWER]].values.tolist()
    [['users', 'user', 35.1, 30.0]]
    """
    if audiences is None:
        return _NO_AUDIENCES.copy()
    out = pd.DataFrame(index=audiences.index)
    out[MARKET] = audiences["market"].astype(str)
    out[GROUP] = audiences["target_group"].astype(str)
    out[PROFILES] = audiences["profiles"].astype(object).where(audiences["profiles"].notna(), "")
    out[SHARE] = _percent(audiences["mean"])
    out[SHARE_LOWER] = _percent(audiences["lower"])
    out[SHARE_UPPER] = _percent(audiences["upper"])
    out[STATUS] = _words(audiences["status"])
    out[NOTE] = audiences["note"].astype(object).where(audiences["note"].notna(), "")
    return out.reset_index(drop=True)


VERSUS = "Versus"
DIFFERENCE = "Difference pts"
DIFFERENCE_LOWER = "Difference lower pts"
DIFFERENCE_UPPER = "Difference upper pts"
P_ABOVE = "P(above)"
P_BELOW = "P(below)"
COMPARISON_FLAG = "Flag"
#: The arrow of a comparison's flag.
COMPARISON_ARROWS: dict[str, str] = {"above": "▲", "below": "▼", "level": "–"}


def comparisons_tables(
    comparisons: pd.DataFrame | None, *, labels: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group vs rest and brand vs brand, readable: the difference, P(above), the flag.

    >>> frame = pd.DataFrame({"kind": ["brand_vs_brand"], "market": ["DE"],
    ...     "family": ["aware"], "question_id": ["aware_b1"], "option": ["yes"],
    ...     "brand": ["b1"], "target_group": ["all"], "versus": ["b2"],
    ...     "versus_question_id": ["aware_b2"], "mean": [0.125], "lower": [0.1],
    ...     "upper": [0.15], "p_above": [1.0], "p_below": [0.0], "p_error": [0.0],
    ...     "flag": ["above"], "rule": ["fdr q=0.1"], "status": ["converged"]})
    >>> _, pairs = comparisons_tables(frame)
    >>> pairs[["Brand", "Versus", "Difference pts", "Flag"]].values.tolist()
    [['b1', 'b2', 12.5, 'above']]
    """
    if comparisons is None:
        comparisons = pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    out = []
    for kind in (ComparisonKind.GROUP_VS_REST, ComparisonKind.BRAND_VS_BRAND):
        rows = comparisons[comparisons["kind"] == kind.value]
        table = _identity(rows, labels)
        if kind is ComparisonKind.BRAND_VS_BRAND:
            table.insert(1, FAMILY, rows["family"].astype(str))
            table[VERSUS] = rows["versus"].astype(str)
        table[DIFFERENCE] = _percent(rows["mean"])
        table[DIFFERENCE_LOWER] = _percent(rows["lower"])
        table[DIFFERENCE_UPPER] = _percent(rows["upper"])
        table[DIRECTION] = rows["flag"].map(lambda f: COMPARISON_ARROWS.get(str(f), ""))
        table[P_ABOVE] = _probability(rows["p_above"])
        table[P_BELOW] = _probability(rows["p_below"])
        table[COMPARISON_FLAG] = rows["flag"].astype(str)
        table[FLAG_RULE] = rows["rule"].astype(str)
        table[P_ERROR] = _probability(rows["p_error"])
        table[STATUS] = _words(rows["status"])
        out.append(table.reset_index(drop=True))
    return out[0], out[1]
