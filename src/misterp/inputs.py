"""Reading and checking a family's input folder: shared by the tracker and the media-mix models.

Both families read a folder (local path or fsspec URL such as ``s3://bucket/prefix``) of files
``ROLE.csv`` or ``ROLE.parquet``, as text, and check them with pandera schemas whose every check
carries its message (``error``) and its fix (``description``). Every problem is collected, so a
user fixes the export once instead of re-running for each error, and each one names the file,
column, rows (as an editor shows them) and the fix. The family modules
(:mod:`misterp.mrp.validation`, :mod:`misterp.mmm.validation`) hold only their own rules.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pandera.pandas as pa

from misterp.ids import ID_RULE, is_safe_id, shown
from misterp.storage import as_store_unavailable

__all__ = [
    "BUILTIN_FIXES",
    "ID_FIX",
    "ROW_LIMIT",
    "VALUE_LIMIT",
    "InputTable",
    "InputValidationError",
    "RepeatedHeader",
    "ValidationProblem",
    "ValidationReport",
    "case_clashes",
    "check_with_fix",
    "format_rows",
    "join_distinct",
    "load_table",
    "no_duplicate_rows",
    "open_folder",
    "quote_values",
    "read_table",
    "safe_id_check",
    "schema_problems",
    "text_column",
]

#: Rows named in one problem before the rest are counted.
ROW_LIMIT = 10
#: Distinct values named in one problem before the rest are counted.
VALUE_LIMIT = 5

#: Fixes for pandera's built-in, structural checks (the custom checks carry their own).
BUILTIN_FIXES: dict[str, str] = {
    "not_nullable": "fill in every value of this column, or drop the incomplete rows",
}

#: Why ids are restricted, for every fix that asks to rename one (see :mod:`misterp.ids`).
ID_FIX = (
    "ids become file and folder names of the results "
    "(OUTPUT/WAVE/draws/MARKET/QUESTION/OPTION.parquet, OUTPUT/mmm/RUN/fits/MARKET.json)"
)


@dataclass(frozen=True)
class ValidationProblem:
    """One problem in the input files.

    Attributes
    ----------
    file
        File name within the input folder, e.g. ``"answers.csv"``.
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
    """All problems found in an input folder, rendered for humans by ``str()``."""

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
    """The input files break the contract; ``.report`` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(str(report))
        self.report = report


def format_rows(rows: Sequence[int], limit: int = ROW_LIMIT) -> str:
    """``row 3`` / ``rows 3, 7`` / ``rows 2, 3, ..., 11, ... (250 rows)``.

    >>> format_rows([3, 7])
    'rows 3, 7'
    """
    listed = ", ".join(str(row) for row in rows[:limit])
    more = f", ... ({len(rows)} rows)" if len(rows) > limit else ""
    return f"row{'' if len(rows) == 1 else 's'} {listed}{more}"


def join_distinct(items: Iterable[str], limit: int = VALUE_LIMIT) -> str:
    """Distinct items, first ``limit`` of them, so a message stays one readable line.

    >>> join_distinct(["a", "b", "a", "c"], limit=2)
    'a, b, ... (3 distinct)'
    """
    distinct = list(dict.fromkeys(items))
    more = f", ... ({len(distinct)} distinct)" if len(distinct) > limit else ""
    return ", ".join(distinct[:limit]) + more


def quote_values(values: Iterable[Any]) -> str:
    """Quoted values (quotes make stray whitespace visible); tuples as ``(a, b)``.

    A long value is cut: a 300-character id in full would bury the rest of the message.
    """
    return join_distinct(
        "(" + ", ".join(map(str, v)) + ")" if isinstance(v, tuple) else shown(v) for v in values
    )


@dataclass(frozen=True)
class InputTable:
    """A file read as text: python strings, blank cells as None (numeric columns untouched)."""

    name: str
    frame: pd.DataFrame
    first_row: int

    def has(self, *columns: str) -> bool:
        """Whether the file has every one of ``columns``."""
        return set(columns) <= set(self.frame.columns)

    def problem(
        self, column: str | None, index: Iterable[Any], message: str, fix: str
    ) -> ValidationProblem:
        """A problem of this file at the frame's ``index`` labels, as the file's row numbers."""
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


class RepeatedHeader(ValueError):
    """A csv header that names a column twice (pandas would rename the second to ``name.1``)."""

    def __init__(self, name: str, positions: Sequence[int]) -> None:
        self.name, self.positions = name, tuple(positions)
        where = " and ".join(map(str, self.positions))
        super().__init__(f"the header repeats column '{name}' (columns {where})")


def _repeated_header(raw: bytes) -> RepeatedHeader | None:
    """The first column name a csv header repeats, with its 1-based positions."""
    first_line = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(first_line)), [])
    names = [name.strip() for name in header]
    for name in dict.fromkeys(names):
        positions = [i for i, other in enumerate(names, start=1) if other == name]
        if name and len(positions) > 1:
            return RepeatedHeader(name, positions)
    return None


def read_table(
    fs: fsspec.AbstractFileSystem, path: str, numeric_columns: Collection[str] = frozenset()
) -> tuple[pd.DataFrame, int]:
    """Read a file as text (only empty csv cells are missing) and its first data row number.

    Columns in ``numeric_columns`` keep a parquet file's numbers as they are.

    Raises
    ------
    RepeatedHeader
        When a csv header names a column twice.
    """
    with fs.open(path, "rb") as handle:
        if path.endswith(".parquet"):
            frame = pd.read_parquet(handle)
            if any(name is not None for name in frame.index.names):
                frame = frame.reset_index()
            frame, first_row = frame.reset_index(drop=True), 1
        else:
            raw = handle.read()
            repeated = _repeated_header(raw)
            if repeated is not None:
                raise repeated
            # keep blank lines so row numbers match the file's lines; drop only trailing ones
            frame = pd.read_csv(
                io.BytesIO(raw),
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                skip_blank_lines=False,
                encoding="utf-8-sig",
            )
            filled = frame.notna().any(axis=1).to_numpy().nonzero()[0]
            frame, first_row = frame.iloc[: filled.max() + 1 if len(filled) else 0].copy(), 2
    for name in frame.columns:
        if name not in numeric_columns:
            frame[name] = _as_text(frame[name])
    return frame, first_row


def open_folder(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system of an input folder (local path or fsspec URL) and the folder's path."""
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, root.rstrip("/")


def load_table(
    fs: fsspec.AbstractFileSystem,
    root: str,
    role: str,
    problems: list[ValidationProblem],
    *,
    optional: bool = False,
    hashes: dict[str, str] | None = None,
    numeric_columns: Collection[str] = frozenset(),
) -> InputTable | None:
    """Find and read ``role``.csv or ``role``.parquet; record why it cannot be used.

    Parameters
    ----------
    fs, root
        The input folder, as :func:`open_folder` returns it.
    role
        The file's stem, e.g. ``"answers"``.
    problems
        Gets a problem for a missing, doubled, unreadable or empty file.
    optional
        A missing or empty file is not a problem (the run does without it).
    hashes
        Gets the sha256 of the file's bytes under its name, when given.
    numeric_columns
        As for :func:`read_table`.

    Returns
    -------
    InputTable or None
        None when there is no single readable file.
    """
    folder = fs.unstrip_protocol(root).removeprefix("file://")
    # An unreachable store is not a problem of the file: it stops the run, naming the store.
    with as_store_unavailable(folder, f"looking for {role}", any_os_error=False):
        found = [f"{role}.{ext}" for ext in ("csv", "parquet") if fs.exists(f"{root}/{role}.{ext}")]
    either = f"{role}.{{csv,parquet}}"
    if len(found) == 2:
        problems.append(
            ValidationProblem(either, None, [], "both csv and parquet exist", "keep only one")
        )
    elif not found and not optional:
        problems.append(ValidationProblem(either, None, [], f"missing file in {folder}", "add it"))
    if len(found) != 1:
        return None
    path = f"{root}/{found[0]}"
    try:
        with as_store_unavailable(folder, f"reading {found[0]}", any_os_error=False):
            if hashes is not None:
                hashes[found[0]] = hashlib.sha256(fs.cat_file(path)).hexdigest()
            frame, first_row = read_table(fs, path, numeric_columns)
    except RepeatedHeader as exc:
        fix = f"keep one column named '{exc.name}': remove or rename the others"
        problems.append(ValidationProblem(found[0], exc.name, [1], str(exc), fix))
        return None
    except (OSError, ValueError, TypeError) as exc:  # parser, decoding, IO and arrow errors
        fix = "export it again as UTF-8 csv or parquet"
        problems.append(ValidationProblem(found[0], None, [], f"cannot be read: {exc}", fix))
        return None
    if frame.empty and not optional:
        problems.append(ValidationProblem(found[0], None, [], "no data rows", "export its data"))
    return InputTable(found[0], frame, first_row)


def case_clashes(
    table: InputTable,
    column: str,
    *,
    within: Sequence[str] = (),
    what: str = "ids",
    frame: pd.DataFrame | None = None,
) -> list[ValidationProblem]:
    """Ids of ``column`` that differ only in case, among rows that share ``within``.

    Ids become file and folder names (:mod:`misterp.ids`); ``q_c`` and ``Q_C`` are two files on
    Linux and S3 but one on a case-insensitive file system (macOS, Windows, some S3 gateways),
    where one model's results would overwrite the other's. Only ids that share a folder clash:
    ``yes`` and ``YES`` as options of two questions do not. ``frame`` (rows indexed like
    ``table``'s) is checked instead of the table's own, e.g. answers joined to their market.
    """
    data = table.frame if frame is None else frame
    if column not in data.columns or any(name not in data.columns for name in within):
        return []
    data = data.dropna(subset=[column, *within])
    keys = [*within, column]
    # distinct ids first: a wave's answers have millions of rows but few distinct ids
    distinct = data[keys].astype(str).drop_duplicates()
    distinct["__folded"] = distinct[column].str.casefold()
    clashing = distinct[distinct.duplicated([*within, "__folded"], keep=False)]
    problems = []
    for key, group in clashing.groupby([*within, "__folded"], sort=True):
        variants = sorted(group[column])
        rows = data[column].astype(str).isin(variants)
        for name, value in zip(within, key[: len(within)], strict=True):
            rows &= data[name].astype(str).eq(str(value))
        context = ", ".join(
            f"{name} {value}" for name, value in zip(within, key[: len(within)], strict=True)
        )
        message = (
            f"{what} {quote_values(variants)} differ only in case"
            + (f" ({context})" if context else "")
            + ": on a case-insensitive file system or store their results would be one file"
        )
        fix = f"spell each {what.removesuffix('s')} one way: rename all but one of them"
        problems.append(table.problem(column, data.index[rows], message, fix))
    return problems


def schema_problems(table: InputTable, schema: pa.DataFrameSchema) -> list[ValidationProblem]:
    """Run ``schema`` lazily; one problem per (column, check), values and rows aggregated.

    The schema says what to do: ``metadata["unexpected_fix"]`` for a column it does not know,
    each column's ``metadata["missing_fix"]``, and each check's ``error`` and ``description``
    (the fix), as :func:`check_with_fix` and :func:`text_column` build them.
    """
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
            found = quote_values(rows.itertuples(index=False, name=None))
            message, fix = f"{check.error}: {found}", check.description
        else:
            check = schema.columns[column].checks[number]
            found = quote_values(case.failure_case for case in group)
            message, fix = f"{check.error}, found {found}", check.description
        problems.append(table.problem(column, index, message, fix))
    return problems


def check_with_fix(
    fn: Callable[..., pd.Series | bool], *, error: str, fix: str, element_wise: bool = False
) -> pa.Check:
    """A check with its message and fix side by side (the fix is kept in ``description``)."""
    return pa.Check(fn, error=error, description=fix, element_wise=element_wise)


def safe_id_check(what: str) -> pa.Check:
    """Values must be safe ids (:mod:`misterp.ids`); blank cells are reported apart."""
    return check_with_fix(
        _safe_ids,
        error=f"not a safe id ({ID_RULE})",
        fix=f"rename the {what}, in every file that uses it; {ID_FIX}",
    )


def _safe_ids(values: pd.Series) -> pd.Series:
    """``is_safe_id`` of each value, judged once per distinct value.

    An answers file repeats a few hundred ids over millions of rows: one regex per row took
    2.4 s of a 1,000-model wave's validation, once per distinct value it takes milliseconds.
    """
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    safe = np.fromiter((is_safe_id(value) for value in distinct), dtype=bool, count=len(distinct))
    return pd.Series(safe[codes], index=values.index)


def text_column(
    missing_fix: str, *, nullable: bool = False, checks: list[pa.Check] | None = None
) -> pa.Column:
    """A text column; blank cells arrive as missing values (see :func:`read_table`)."""
    return pa.Column(
        None, nullable=nullable, checks=checks or [], metadata={"missing_fix": missing_fix}
    )


def no_duplicate_rows(key: Sequence[str], *, error: str, fix: str) -> pa.Check:
    """Rows must be unique on ``key``; skipped when a key column is missing (reported apart)."""

    def unique(frame: pd.DataFrame) -> pd.Series | bool:
        if not set(key) <= set(frame.columns):
            return True
        return ~frame.duplicated(list(key), keep=False)

    # ``statistics`` records the key so a report can show the duplicated key values
    return pa.Check(unique, error=error, description=fix, statistics={"key": list(key)})
