"""Reading a survey export for ``misterp import``: SPSS ``.sav``/``.zsav``, wide CSV, XLSX.

Every format becomes one :class:`SurveySource`: the respondents' rows with every value as text
(:func:`~misterp.mrp.survey_mapping.code_text`: ``1.0`` from SPSS and ``"1"`` from a CSV are
the same code) and, from SPSS, the variable and value labels. SPSS "user missing" codes
(98/99 declared missing in the file) are kept as codes: the mapping, not the file, says
whether they mean "not asked" or "don't know". A file that cannot be read is an input error
naming it, never a crash.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pandas as pd

from misterp.inputs import InputTable, InputValidationError, ValidationProblem, ValidationReport
from misterp.mrp.survey_mapping import code_text
from misterp.storage import as_store_unavailable

__all__ = ["SOURCE_FORMATS", "SurveySource", "read_source"]

#: File name endings misterp import reads, and what it reads them with.
SOURCE_FORMATS: dict[str, str] = {
    ".sav": "SPSS (pyreadstat)",
    ".zsav": "SPSS, compressed (pyreadstat)",
    ".csv": "wide CSV (one row per respondent)",
    ".xlsx": "wide XLSX (one row per respondent)",
}


@dataclass(frozen=True)
class SurveySource:
    """A survey export as text, one row per respondent, with its labels where it has them.

    Attributes
    ----------
    table
        The rows (python strings, blanks None) and how its row numbers read in the file.
    variable_labels
        Column -> the question text (SPSS variable labels); empty for CSV and XLSX.
    value_labels
        Column -> code -> label (SPSS value labels), codes as text.
    """

    table: InputTable
    variable_labels: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file's name, as problems name it."""
        return self.table.name

    @property
    def frame(self) -> pd.DataFrame:
        """The rows."""
        return self.table.frame

    def label_of(self, column: str, code: str | None) -> str | None:
        """The value label of ``code`` in ``column``, if the file has one."""
        return None if code is None else self.value_labels.get(column, {}).get(code)


def _unreadable(name: str, reason: str, fix: str) -> InputValidationError:
    problem = ValidationProblem(name, None, [], f"cannot be read: {reason}", fix)
    return InputValidationError(ValidationReport([problem]))


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as :func:`code_text` (object dtype): one spelling for a code in any format."""
    columns = {
        str(name): pd.Series([code_text(v) for v in frame[name]], index=frame.index, dtype=object)
        for name in frame.columns
    }
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def _read_spss(name: str, data: bytes) -> SurveySource:
    import pyreadstat

    try:
        frame, meta = pyreadstat.read_sav(io.BytesIO(data), user_missing=True)
    except Exception as exc:  # ReadstatError and its kin: a damaged or truncated file
        raise _unreadable(
            name,
            f"{type(exc).__name__}: {exc} (not an SPSS file, or truncated)",
            "export it again from SPSS (File > Save As .sav) and check the copy is complete",
        ) from None
    value_labels = {
        str(column): {str(code_text(code)): str(label) for code, label in labels.items()}
        for column, labels in (meta.variable_value_labels or {}).items()
    }
    variable_labels = {
        str(column): str(label)
        for column, label in (meta.column_names_to_labels or {}).items()
        if label
    }
    return SurveySource(InputTable(name, _as_text(frame), 1), variable_labels, value_labels)


def _read_csv(name: str, data: bytes) -> SurveySource:
    try:
        frame = pd.read_csv(
            io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise _unreadable(name, str(exc), "export it again as UTF-8 CSV") from None
    return SurveySource(InputTable(name, _as_text(frame), 2))


def _read_xlsx(name: str, data: bytes, sheet: str | None) -> SurveySource:
    try:
        workbook = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors
        raise _unreadable(
            name, f"{type(exc).__name__}: {exc}", "save it again from Excel as .xlsx"
        ) from None
    sheets = [str(s) for s in workbook.sheet_names]
    if sheet is None and len(sheets) > 1:
        problem = ValidationProblem(
            name,
            None,
            [],
            f"the workbook has {len(sheets)} sheets ({', '.join(sheets)}) and the mapping "
            "names none",
            f"add sheet: NAME to the mapping (one of {', '.join(sheets)}), or save the "
            "respondents' sheet alone",
        )
        raise InputValidationError(ValidationReport([problem]))
    if sheet is not None and sheet not in sheets:
        problem = ValidationProblem(
            name,
            None,
            [],
            f"the mapping's sheet '{sheet}' is not in the workbook (sheets: {', '.join(sheets)})",
            "set sheet in the mapping to one of them",
        )
        raise InputValidationError(ValidationReport([problem]))
    frame = pd.read_excel(
        workbook, sheet_name=sheet if sheet is not None else sheets[0], dtype=object
    )
    return SurveySource(InputTable(name, _as_text(frame), 2))


def read_source(
    uri: str, *, sheet: str | None = None, storage_options: dict[str, Any] | None = None
) -> SurveySource:
    """Read a survey export (local path or fsspec URL) by its file name ending.

    Raises
    ------
    InputValidationError
        An unknown ending, a missing, unreadable or truncated file, or an XLSX with several
        sheets and none named, each naming the file and the fix.
    """
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    ending = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ending not in SOURCE_FORMATS:
        known = ", ".join(f"{end} ({what})" for end, what in SOURCE_FORMATS.items())
        raise _unreadable(name, f"unknown file type '{ending or name}'", f"export it as {known}")
    try:
        with (
            as_store_unavailable(uri, f"reading {name}", any_os_error=False),
            fsspec.open(uri, "rb", **(storage_options or {})) as handle,
        ):
            data = handle.read()
    except FileNotFoundError:
        raise _unreadable(name, f"no such file: {uri}", "check the --source path") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise _unreadable(name, f"{type(exc).__name__}: {uri}", "give a readable file") from None
    if ending in (".sav", ".zsav"):
        return _read_spss(name, data)
    if ending == ".csv":
        return _read_csv(name, data)
    return _read_xlsx(name, data, sheet)
