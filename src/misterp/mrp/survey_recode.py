"""How ``misterp import`` recodes a survey export, value by value, and what it tells about it.

Each respondent column and each question column is recoded through a table of its distinct
values (an export has thousands of rows but few codes): a code matches the mapping by itself
or by its SPSS value label, and a code nothing matches is a problem listing every such value
with its label and count. The tables are kept (:class:`RecodeTable`) for ``--check``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from misterp.config import did_you_mean
from misterp.inputs import VALUE_LIMIT, ValidationProblem
from misterp.mrp.survey_mapping import YES_OPTION, DontKnow, QuestionMapping, Recode, SurveyMapping
from misterp.mrp.survey_source import SurveySource

__all__ = [
    "NO_ROW",
    "RecodeRow",
    "RecodeTable",
    "SourceProblems",
    "counted",
    "multi_answers",
    "recode_column",
    "single_answers",
]

#: What the recoding does with a source value that is no answer.
NO_ROW = "no row"


@dataclass(frozen=True)
class RecodeRow:
    """One source value, what it became and how many respondents had it."""

    code: str | None
    label: str | None
    result: str
    count: int

    def line(self) -> str:
        """``1 (Male) -> male: 290``."""
        code = "(blank)" if self.code is None else self.code
        label = f" ({self.label})" if self.label else ""
        return f"{code}{label} -> {self.result}: {self.count:,}"


@dataclass(frozen=True)
class RecodeTable:
    """How one target (a demographic, a question's option) was recoded from one column."""

    target: str
    column: str
    rows: tuple[RecodeRow, ...]


def counted(values: pd.Series, source: SurveySource, column: str) -> str:
    """``'3' (Diverse) x 4, '7' x 1``: distinct values with their labels and counts."""
    counts = values.value_counts(sort=True)
    shown = []
    for code, n in list(counts.items())[: 2 * VALUE_LIMIT]:
        label = source.label_of(column, str(code))
        shown.append(f"'{code}'" + (f" ({label})" if label else "") + f" x {n}")
    more = f", ... ({len(counts)} distinct)" if len(counts) > 2 * VALUE_LIMIT else ""
    return ", ".join(shown) + more


class SourceProblems:
    """Problems of one export, each naming the file, column, rows, values and the fix."""

    def __init__(self, source: SurveySource, mapping_name: str) -> None:
        self.source, self.mapping_name = source, mapping_name
        self.found: list[ValidationProblem] = []

    def add(self, column: str | None, index: Any, message: str, fix: str) -> None:
        """A problem of ``column`` at the rows of ``index``."""
        self.found.append(self.source.table.problem(column, index, message, fix))

    def missing_column(self, column: str, where: str) -> None:
        """A column the mapping names (``where``) that the file lacks, with a did-you-mean."""
        columns = [str(c) for c in self.source.frame.columns]
        hint = did_you_mean(column, columns)
        self.found.append(
            ValidationProblem(
                self.source.name,
                column,
                [],
                f"missing column, mapped as {where} in {self.mapping_name}{hint}",
                f"fix the column name in {self.mapping_name}; the file's columns: "
                + ", ".join(columns[:30])
                + (f", ... ({len(columns)} columns)" if len(columns) > 30 else ""),
            )
        )


def _matches(source: SurveySource, column: str, code: str, keys: set[str]) -> bool:
    """A code matches a mapping key by itself or by its SPSS value label."""
    return code in keys or source.label_of(column, code) in keys


def recode_column(
    name: str, recode: Recode, where: str, source: SurveySource, problems: SourceProblems
) -> tuple[pd.Series, RecodeTable]:
    """A respondent column recoded to levels (None for no answer), and its recoding table."""
    codes = source.frame[recode.column]
    missing = set(recode.missing)
    result: dict[str | None, str | None] = {}
    for code in dict.fromkeys(codes):
        if code is None or _matches(source, recode.column, code, missing):
            result[code] = None
        elif recode.values is not None:
            keys = [code, source.label_of(recode.column, code)]
            result[code] = next((recode.values[k] for k in keys if k in recode.values), None)
            result[code] = result[code] or "\0"  # outside the mapping
        elif recode.bands is not None:
            number = pd.to_numeric(pd.Series([code]), errors="coerce").iloc[0]
            inside = [lvl for lvl, (lo, hi) in recode.bands.items() if lo <= number <= hi]
            result[code] = inside[0] if inside else "\0"
        else:
            result[code] = code
    outcome = codes.map(result)
    outside = outcome.eq("\0")
    if outside.any():
        rule = "values" if recode.values is not None else "bands"
        problems.add(
            recode.column,
            codes.index[outside],
            f"values outside the mapping's {where}.{rule}: "
            f"{counted(codes[outside], source, recode.column)}",
            f"add them to {where}.{rule} in {problems.mapping_name}"
            + (", or to its missing codes" if where.startswith("profiles") else ""),
        )
    blank = outcome.isna()
    if where.startswith(("demographics", "market")) and blank.any():
        problems.add(
            recode.column,
            codes.index[blank],
            f"{int(blank.sum())} respondents have no {name} (blank)",
            "give every respondent a value (a census variable needs a level), or drop them "
            "from the export",
        )
    shown = {code: "blank" if level is None else level for code, level in result.items()}
    rows = _rows(
        codes, source, recode.column, {c: v.replace("\0", "UNMAPPED") for c, v in shown.items()}
    )
    if recode.bands is not None:
        rows = _banded(rows, list(recode.bands))
    return outcome.where(~outside, None), RecodeTable(name, recode.column, rows)


def _banded(rows: tuple[RecodeRow, ...], levels: list[str]) -> tuple[RecodeRow, ...]:
    """A band's source values as one row, ``18..24 -> 18-24: 87``: ages in years would be 60."""
    banded = []
    for level in levels:
        inside = [row for row in rows if row.result == level]
        if inside:
            span = f"{inside[0].code}..{inside[-1].code}" if len(inside) > 1 else inside[0].code
            banded.append(RecodeRow(span, None, level, sum(row.count for row in inside)))
    return (*banded, *(row for row in rows if row.result not in levels))


def _order(code: str | None) -> tuple[int, float, str]:
    """Numeric codes in numeric order, then text, blank last."""
    if code is None:
        return (2, 0.0, "")
    try:
        return (0, float(code), "")
    except ValueError:
        return (1, 0.0, code)


def _rows(
    codes: pd.Series, source: SurveySource, column: str, results: Mapping[str | None, str]
) -> tuple[RecodeRow, ...]:
    """One row per distinct source value (numeric order, blank last) with its count."""
    counts = Counter(codes.tolist())
    return tuple(
        RecodeRow(code, source.label_of(column, code), results[code], counts[code])
        for code in sorted(counts, key=_order)
    )


def single_answers(
    question: QuestionMapping,
    mapping: SurveyMapping,
    source: SurveySource,
    ids: pd.Series,
    problems: SourceProblems,
) -> tuple[pd.DataFrame, RecodeTable]:
    """Option ``yes`` of a single-choice column: 1 for its yes codes, 0 for the no codes."""
    assert question.column is not None
    column = question.column
    codes = source.frame[column]
    yes, no = set(question.yes), set(question.no)
    not_asked, dont_know = mapping.not_asked(question), mapping.dont_know(question)
    dk_row = mapping.dont_know_as(question) is DontKnow.NO
    outcome: dict[str | None, tuple[int | None, str]] = {}
    for code in dict.fromkeys(codes):
        if code is None:
            outcome[code] = (None, f"{NO_ROW} (not asked)")
        elif _matches(source, column, code, yes):
            outcome[code] = (1, f"{YES_OPTION} = 1")
        elif _matches(source, column, code, no):
            outcome[code] = (0, f"{YES_OPTION} = 0")
        elif _matches(source, column, code, not_asked):
            outcome[code] = (None, f"{NO_ROW} (not asked)")
        elif _matches(source, column, code, dont_know):
            outcome[code] = (0, f"{YES_OPTION} = 0 (don't know)") if dk_row else (None, NO_ROW)
        else:
            outcome[code] = (-1, "UNMAPPED")
    selected = codes.map({code: value for code, (value, _) in outcome.items()})
    outside = codes[selected.eq(-1)]
    if not outside.empty:
        problems.add(
            column,
            outside.index,
            f"values outside the mapping of question '{question.id}': "
            f"{counted(outside, source, column)}",
            f"add them to the question's yes, no, not_asked or dont_know codes in "
            f"{problems.mapping_name} (or to defaults)",
        )
    return _answer_rows(selected, ids, question.id, YES_OPTION), RecodeTable(
        question.id, column, _rows(codes, source, column, {c: r for c, (_, r) in outcome.items()})
    )


def _answer_rows(
    selected: pd.Series, ids: pd.Series, question_id: str, option: str
) -> pd.DataFrame:
    """The answer rows of one option from each respondent's 0/1.

    None (not asked) and -1 (a value outside the mapping, already a problem) give no row.
    """
    kept = selected.notna() & selected.ne(-1)
    return pd.DataFrame(
        {
            "respondent_id": ids[kept],
            "question_id": question_id,
            "option": option,
            "selected": selected[kept].astype(int),
        }
    )


def multi_answers(
    question: QuestionMapping,
    mapping: SurveyMapping,
    source: SurveySource,
    ids: pd.Series,
    problems: SourceProblems,
) -> tuple[list[pd.DataFrame], list[RecodeTable]]:
    """One row per option column answered 0/1; blank or a not-asked code: no row."""
    frames, tables = [], []
    not_asked = mapping.not_asked(question)
    for option, column in (question.options or {}).items():
        codes = source.frame[column]
        outcome: dict[str | None, tuple[int | None, str]] = {}
        for code in dict.fromkeys(codes):
            if code in ("0", "1"):
                outcome[code] = (int(code), f"{option} = {code}")
            elif code is None or _matches(source, column, code, not_asked):
                outcome[code] = (None, f"{NO_ROW} (not asked)")
            else:
                outcome[code] = (-1, "NOT 0/1")
        selected = codes.map({c: value for c, (value, _) in outcome.items()})
        outside = codes[selected.eq(-1)]
        if not outside.empty:
            problems.add(
                column,
                outside.index,
                f"option '{option}' of multi-select question '{question.id}' must be 0, 1 or "
                f"blank, found {counted(outside, source, column)}",
                "export multi-select options as 0/1 columns (blank: not shown); if the column "
                "is a single-choice question, map it with column and yes codes",
            )
        frames.append(_answer_rows(selected, ids, question.id, option))
        tables.append(
            RecodeTable(
                f"{question.id}/{option}",
                column,
                _rows(codes, source, column, {c: r for c, (_, r) in outcome.items()}),
            )
        )
    return frames, tables
