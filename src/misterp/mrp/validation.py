"""Read one wave's input files and validate them, reporting every problem at once.

A wave folder (local path or any fsspec URL, e.g. ``s3://bucket/wave-07``) holds
``respondents``, ``answers``, ``poststrat`` and optionally ``questions``, each as ``.csv`` or
``.parquet``. Per-file rules are the pandera schemas of :mod:`misterp.mrp.schemas` (validated
lazily); cross-file rules are coded here. Users fix their export once instead of re-running the
pipeline for each error, so :func:`read_wave` raises one :class:`InputValidationError` that lists
every problem with its file, column, rows and fix. Nothing is ever written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pandas as pd
import pandera.pandas as pa

from misterp.ids import shown
from misterp.mrp.data import WAVE_FILES, WaveData
from misterp.mrp.schemas import (
    BUILTIN_FIXES,
    answers_schema,
    parse_base,
    poststrat_schema,
    questions_schema,
    respondents_schema,
)
from misterp.storage import as_store_unavailable

logger = logging.getLogger(__name__)

ROW_LIMIT = 10
VALUE_LIMIT = 5
NUMERIC_COLUMNS = frozenset({"selected", "population"})


@dataclass(frozen=True)
class ValidationProblem:
    """One problem in the input files.

    Attributes
    ----------
    file
        File name within the wave folder, e.g. ``"answers.csv"``.
    column
        The offending column, or None for a whole-file or multi-column problem.
    rows
        1-based line numbers in the data file as a user sees it in an editor: for csv the header
        is line 1, so the first data row is row 2; for parquet, the 1-based row position.
    message
        What is wrong.
    fix
        How to fix it.
    """

    file: str
    column: str | None
    rows: list[int]
    message: str
    fix: str

    def __str__(self) -> str:
        where = self.file + (f", column '{self.column}'" if self.column is not None else "")
        if not self.rows:
            return f"{where}: {self.message} -> {self.fix}"
        return f"{where}, {format_rows(self.rows)}: {self.message}\n      -> {self.fix}"


@dataclass(frozen=True)
class ValidationReport:
    """All problems found in a wave, rendered for humans by ``str()``."""

    problems: list[ValidationProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[ValidationProblem]:
        return iter(self.problems)

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"Input validation failed: {n} problem{'' if n == 1 else 's'}, nothing was written"
        return "\n".join([head, *(f"  {problem}" for problem in self.problems)])


class InputValidationError(ValueError):
    """The wave's input files break the contract; ``.report`` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(str(report))
        self.report = report


def format_rows(rows: Sequence[int], limit: int = ROW_LIMIT) -> str:
    """``row 3`` / ``rows 3, 7`` / ``rows 2, 3, ..., 11, ... (250 rows)``."""
    shown = ", ".join(str(row) for row in rows[:limit])
    more = f", ... ({len(rows)} rows)" if len(rows) > limit else ""
    return f"row{'' if len(rows) == 1 else 's'} {shown}{more}"


def _join(items: Iterable[str], limit: int = VALUE_LIMIT) -> str:
    """Distinct items, first ``limit`` of them, so a message stays one readable line."""
    distinct = list(dict.fromkeys(items))
    more = f", ... ({len(distinct)} distinct)" if len(distinct) > limit else ""
    return ", ".join(distinct[:limit]) + more


def _values(values: Iterable[Any]) -> str:
    """Quoted values (quotes make stray whitespace visible); tuples as ``(a, b)``.

    A long value is cut: a 300-character id in full would bury the rest of the message.
    """
    return _join(
        "(" + ", ".join(map(str, v)) + ")" if isinstance(v, tuple) else shown(v) for v in values
    )


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """(market, question_id) pairs as ``'q1' in DE, 'q2' in FR``."""
    return _join(f"'{question}' in {market}" for market, question in pairs)


@dataclass(frozen=True)
class _Table:
    """A file read as text: python strings, blank cells as None (numeric columns untouched)."""

    name: str
    frame: pd.DataFrame
    first_row: int

    def has(self, *columns: str) -> bool:
        return set(columns) <= set(self.frame.columns)

    def problem(
        self, column: str | None, index: Iterable[Any], message: str, fix: str
    ) -> ValidationProblem:
        rows = sorted({int(i) + self.first_row for i in index})
        return ValidationProblem(self.name, column, rows, message, fix)


def _text_value(value: Any) -> str | None:
    """Ids and levels are text: keep ``"007"``, show an integral float from parquet as ``7``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _as_text(column: pd.Series) -> pd.Series:
    """Python strings (object dtype), blank cells as None: one representation for all checks."""
    if not pd.api.types.is_string_dtype(column):  # numbers, bools, mixed objects
        column = pd.Series([_text_value(v) for v in column], index=column.index, dtype=object)
    blank = column.isna() | column.astype(str).str.strip().eq("")
    return column.astype(object).where(~blank, None)


def _read(fs: fsspec.AbstractFileSystem, path: str) -> tuple[pd.DataFrame, int]:
    """Read a file as text (only empty csv cells are missing) and its first data row number."""
    with fs.open(path, "rb") as handle:
        if path.endswith(".parquet"):
            frame = pd.read_parquet(handle)
            if any(name is not None for name in frame.index.names):
                frame = frame.reset_index()
            frame, first_row = frame.reset_index(drop=True), 1
        else:
            # keep blank lines so row numbers match the file's lines; drop only trailing ones
            frame = pd.read_csv(
                handle,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                encoding="utf-8-sig",
            )
            filled = frame.notna().any(axis=1).to_numpy().nonzero()[0]
            frame, first_row = frame.iloc[: filled.max() + 1 if len(filled) else 0].copy(), 2
    for name in frame.columns:
        if name not in NUMERIC_COLUMNS:
            frame[name] = _as_text(frame[name])
    return frame, first_row


def _load(
    fs: fsspec.AbstractFileSystem, root: str, role: str, problems: list[ValidationProblem]
) -> _Table | None:
    """Find and read ``role``.csv or ``role``.parquet; record why it cannot be used."""
    folder = fs.unstrip_protocol(root).removeprefix("file://")
    # An unreachable store is not a problem of the file: it stops the run, naming the store.
    with as_store_unavailable(folder, f"looking for {role}", any_os_error=False):
        found = [f"{role}.{ext}" for ext in ("csv", "parquet") if fs.exists(f"{root}/{role}.{ext}")]
    either = f"{role}.{{csv,parquet}}"
    if len(found) == 2:
        problems.append(
            ValidationProblem(either, None, [], "both csv and parquet exist", "keep only one")
        )
    elif not found and role != "questions":
        problems.append(ValidationProblem(either, None, [], f"missing file in {folder}", "add it"))
    if len(found) != 1:
        return None
    try:
        with as_store_unavailable(folder, f"reading {found[0]}", any_os_error=False):
            frame, first_row = _read(fs, f"{root}/{found[0]}")
    except (OSError, ValueError, TypeError) as exc:  # parser, decoding, IO and arrow errors
        fix = "export it again as UTF-8 csv or parquet"
        problems.append(ValidationProblem(found[0], None, [], f"cannot be read: {exc}", fix))
        return None
    if frame.empty and role != "questions":
        problems.append(ValidationProblem(found[0], None, [], "no data rows", "export its data"))
    return _Table(found[0], frame, first_row)


def _schema_problems(table: _Table, schema: pa.DataFrameSchema) -> list[ValidationProblem]:
    """Run ``schema`` lazily; one problem per (column, check), values and rows aggregated."""
    try:
        schema.validate(table.frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    problems: list[ValidationProblem] = []
    groups: dict[tuple[bool, Any, str, int | None], list[Any]] = {}
    for case in cases.itertuples(index=False):
        if case.check == "column_in_schema":
            name, fix = str(case.failure_case), schema.metadata["unexpected_fix"]
            problems.append(ValidationProblem(table.name, name, [], "unexpected column", fix))
        elif case.check == "column_in_dataframe":
            name = str(case.failure_case)
            fix = schema.columns[name].metadata["missing_fix"]
            problems.append(ValidationProblem(table.name, name, [], "missing column", fix))
        else:
            frame_level = case.schema_context == "DataFrameSchema"
            number = None if pd.isna(case.check_number) else int(case.check_number)
            key = (frame_level, None if frame_level else case.column, case.check, number)
            groups.setdefault(key, []).append(case)
    for (frame_level, column, check_name, number), group in groups.items():
        index = [case.index for case in group if not pd.isna(case.index)]
        if number is None:  # pandera's built-in checks
            message = "missing value" if check_name == "not_nullable" else check_name
            fix = BUILTIN_FIXES.get(check_name, "see the input contract in the documentation")
        elif frame_level:  # duplicate rows: show the duplicated keys
            check = schema.checks[number]
            rows = table.frame.loc[sorted(set(index)), check.statistics["key"]]
            found = _values(rows.itertuples(index=False, name=None))
            message, fix = f"{check.error}: {found}", check.description
        else:
            check = schema.columns[column].checks[number]
            found = _values(case.failure_case for case in group)
            message, fix = f"{check.error}, found {found}", check.description
        problems.append(table.problem(column, index, message, fix))
    return problems


def _answered(respondents: _Table | None, answers: _Table | None) -> pd.DataFrame | None:
    """Answers (index kept) with the respondent's market; None when that cannot be known.

    A duplicated respondent id joins every market it appears in, so the duplicate is reported
    once, not again as answers of the wrong market.
    """
    columns = ["respondent_id", "question_id", "option"]
    if respondents is None or answers is None:
        return None
    if not (respondents.has("respondent_id", "market") and answers.has(*columns)):
        return None
    markets = respondents.frame[["respondent_id", "market"]].dropna().drop_duplicates()
    joined = answers.frame[columns].reset_index().merge(markets, on="respondent_id")
    return joined.set_index("index").dropna(subset=["question_id", "option"])


def _unknown_respondents(respondents: _Table, answers: _Table) -> list[ValidationProblem]:
    """Answers whose respondent is not in the respondents file."""
    if not (respondents.has("respondent_id") and answers.has("respondent_id")):
        return []
    ids = answers.frame["respondent_id"]
    unknown = ids.notna() & ~ids.isin(set(respondents.frame["respondent_id"].dropna()))
    if not unknown.any():
        return []
    message = f"answers of respondents not in {respondents.name}: {_values(ids[unknown])}"
    fix = f"add these respondents to {respondents.name}, or drop their answers"
    return [answers.problem("respondent_id", ids.index[unknown], message, fix)]


def _census_coverage(
    respondents: _Table, poststrat: _Table, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """Every surveyed market and demographic level must exist in that market's census table."""
    if not (respondents.has("market") and poststrat.has("market")):
        return []
    problems = []
    surveyed, census = respondents.frame["market"], poststrat.frame["market"]
    census_markets = sorted(set(census.dropna()))
    for market in dict.fromkeys(surveyed[surveyed.notna() & ~surveyed.isin(census_markets)]):
        message = (
            f"market '{market}' has no rows in {poststrat.name} "
            f"(its markets: {_join(census_markets)})"
        )
        fix = (
            f"add the census cells of market {market} to {poststrat.name}, or drop its respondents"
        )
        problems.append(
            respondents.problem("market", surveyed.index[surveyed.eq(market)], message, fix)
        )
    for name in demographics:
        if not (respondents.has(name) and poststrat.has(name)):
            continue
        for market in sorted(set(surveyed.dropna()) & set(census_markets)):
            levels = sorted(set(poststrat.frame.loc[census.eq(market), name].dropna()))
            level = respondents.frame[name]
            bad = surveyed.eq(market) & level.notna() & ~level.isin(levels)
            if bad.any():
                one = level[bad].nunique() == 1
                message = (
                    f"value{'' if one else 's'} {_values(level[bad])} "
                    f"{'is not a level' if one else 'are not levels'} of the poststrat table "
                    f"for market {market} (levels: {_join(levels)})"
                )
                fix = f"recode to the census levels, or add the level to {poststrat.name}"
                problems.append(respondents.problem(name, level.index[bad], message, fix))
    return problems


def _base_problem(
    base: str, question: str, market: str, options: dict[tuple[str, str], list[str]]
) -> str | None:
    """Why a well-formed base cannot filter ``question`` in ``market``, if it cannot."""
    parsed = parse_base(base)
    if parsed is None:  # malformed: reported by the schema
        return None
    base_question, base_option = parsed
    shown = options.get((market, base_question))
    if shown is None:
        return f"base '{base}': question '{base_question}' has no answers in market {market}"
    if base_option not in shown:
        return (
            f"base '{base}': question '{base_question}' never shows option '{base_option}' "
            f"in market {market} (options: {_join(shown)})"
        )
    if base_question == question:
        return f"base '{base}' names the question itself"
    return None


def _question_keys(frame: pd.DataFrame) -> pd.Series:
    """(market, question_id) of each row, index kept."""
    pairs = zip(frame["market"], frame["question_id"], strict=True)
    return pd.Series(list(pairs), index=frame.index, dtype=object)


def _question_problems(
    questions: _Table, answers: _Table, answered: pd.DataFrame
) -> list[ValidationProblem]:
    """The questions file must match the answers: coverage both ways, bases, single kinds."""
    if not questions.has("question_id", "market"):
        return []
    options: dict[tuple[str, str], list[str]] = {
        (str(market), str(question)): sorted(set(group))
        for (market, question), group in answered.groupby(["market", "question_id"])["option"]
    }
    listed = questions.frame.dropna(subset=["question_id", "market"])
    keys = _question_keys(listed)
    problems = []
    unanswered = keys[[key not in options for key in keys]]
    if len(unanswered):
        message = f"no answers in its market for {_pairs(unanswered)}"
        fix = f"drop the row, or fix its question_id / market to match {answers.name}"
        problems.append(questions.problem("question_id", unanswered.index, message, fix))
    listed_keys, answered_keys = set(keys), _question_keys(answered)
    unlisted = answered_keys[[key not in listed_keys for key in answered_keys]]
    if len(unlisted):
        message = f"answered but not listed in {questions.name}: {_pairs(unlisted)}"
        fix = f"add a row (question_id, market, brand, kind, base) to {questions.name}"
        problems.append(answers.problem("question_id", unlisted.index, message, fix))
    for i, row in listed.iterrows():
        question, market = row["question_id"], row["market"]
        wrong_base = None
        if row.get("base") is not None:
            wrong_base = _base_problem(row["base"], question, market, options)
        if wrong_base is not None:
            fix = "name an existing question=option of the same market, or leave it empty"
            problems.append(questions.problem("base", [i], wrong_base, fix))
        shown = options.get((market, question), [])
        if row.get("kind") == "single" and len(shown) > 1:
            message = (
                f"question '{question}' is single but shows {len(shown)} options "
                f"in market {market}: {_join(shown)}"
            )
            fix = "set kind to multi, or keep one option (e.g. yes) per single question"
            problems.append(questions.problem("kind", [i], message, fix))
    return problems


def _cross_file_problems(
    tables: dict[str, _Table | None], answered: pd.DataFrame | None, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """Rules that relate files, each run only when the files and columns it needs are there."""
    respondents, answers = tables["respondents"], tables["answers"]
    poststrat, questions = tables["poststrat"], tables["questions"]
    problems = []
    if respondents is not None and answers is not None:
        problems += _unknown_respondents(respondents, answers)
    if respondents is not None and poststrat is not None:
        problems += _census_coverage(respondents, poststrat, demographics)
    if questions is not None and answers is not None and answered is not None:
        problems += _question_problems(questions, answers, answered)
    return problems


def _questions_frame(questions: _Table | None, answered: pd.DataFrame) -> pd.DataFrame:
    """The questions file cleaned, or defaults derived from the answers when it is absent."""
    columns = ["question_id", "market", "brand", "kind", "base", "label"]
    if questions is None:
        n_options = answered.groupby(["market", "question_id"])["option"].nunique().reset_index()
        frame = n_options[["question_id", "market"]].astype(str)
        frame["brand"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        frame["kind"] = n_options["option"].gt(1).map({True: "multi", False: "single"}).astype(str)
        frame["base"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        frame["label"] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        return frame[columns]
    source = questions.frame.reset_index(drop=True)
    frame = source[["question_id", "market"]].astype(str)
    frame["brand"] = source["brand"].astype(object)
    frame["kind"] = source["kind"].astype(str)
    bases = [None if b is None else "=".join(parse_base(b) or ()) for b in source["base"]]
    frame["base"] = pd.Series(bases, index=frame.index, dtype=object)
    labels = source["label"] if "label" in source.columns else [None] * len(frame)
    frame["label"] = pd.Series(list(labels), index=frame.index, dtype=object)
    return frame[columns]


def read_wave(
    input_uri: str, demographics: Sequence[str], storage_options: dict[str, Any] | None = None
) -> WaveData:
    """Read and validate a wave folder; raise one error listing every problem found.

    Parameters
    ----------
    input_uri
        Local folder or fsspec URL (``s3://bucket/prefix``); only read, never written.
    demographics
        Demographic column names from the config; respondents and poststrat need exactly these.
    storage_options
        Passed to fsspec (credentials, endpoint, ...).

    Raises
    ------
    InputValidationError
        With ``.report`` listing every problem of every file.
    """
    demographics = tuple(demographics)
    schemas = {
        "respondents": respondents_schema(demographics),
        "answers": answers_schema(),
        "poststrat": poststrat_schema(demographics),
        "questions": questions_schema(),
    }
    fs, root = fsspec.core.url_to_fs(input_uri, **(storage_options or {}))
    root = root.rstrip("/")
    problems: list[ValidationProblem] = []
    tables: dict[str, _Table | None] = {}
    for role in WAVE_FILES:
        tables[role] = table = _load(fs, root, role, problems)
        if table is not None:
            problems += _schema_problems(table, schemas[role])
    answered = _answered(tables["respondents"], tables["answers"])
    problems += _cross_file_problems(tables, answered, demographics)
    problems.sort(key=lambda problem: WAVE_FILES.index(problem.file.split(".")[0]))
    if problems:
        raise InputValidationError(ValidationReport(problems))

    respondents, answers, poststrat = (tables[r] for r in ("respondents", "answers", "poststrat"))
    assert respondents is not None
    assert answers is not None
    assert poststrat is not None
    assert answered is not None
    answer_frame = answers.frame[["respondent_id", "question_id", "option"]].astype(str)
    answer_frame["selected"] = pd.to_numeric(answers.frame["selected"]).astype("int8")
    census = poststrat.frame[["market", *demographics]].astype(str)
    census["population"] = pd.to_numeric(poststrat.frame["population"]).astype("float64")
    wave = WaveData(
        respondents=respondents.frame[["respondent_id", "market", *demographics]].astype(str),
        answers=answer_frame,
        poststrat=census,
        questions=_questions_frame(tables["questions"], answered),
        demographics=demographics,
    )
    logger.info(
        "read wave %s: %d respondents, %d answer rows, %d markets",
        input_uri,
        len(wave.respondents),
        len(wave.answers),
        len(wave.markets),
    )
    return wave
