"""The mapping file of ``misterp import``: how a survey export becomes a wave folder.

Fieldwork arrives as an SPSS file or a wide CSV/XLSX (one row per respondent, one column per
single-choice question, one 0/1 column per multi-select option), with ages in years, regions
as codes and "don't know" as 98/99. The mapping says, in one YAML file an analyst can read
against the questionnaire, which column is what and how each code is recoded; the recoding
itself is :mod:`misterp.mrp.survey_import`. Like the wave config it is a frozen pydantic
model with unknown keys refused, so a typo never falls back to a default.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from pydantic import Field, field_validator, model_validator

from misterp.config import FrozenSettings, read_config_file, validate_config
from misterp.errors import ConfigError
from misterp.ids import ID_RULE, id_problem, shown
from misterp.mrp.schemas import QUESTION_KINDS, parse_base

__all__ = [
    "CensusFiles",
    "DontKnow",
    "QuestionMapping",
    "Recode",
    "SurveyMapping",
    "code_text",
    "load_mapping",
]

#: The option of a single-choice question in the wave's answers (the input contract's yes/no).
YES_OPTION = "yes"


_INTEGRAL_TEXT = re.compile(r"^(-?\d+)\.0+$")


def code_text(value: object) -> str | None:
    """A source value as text: ``1.0`` (SPSS stores numbers as floats) is ``"1"``; blank None.

    One spelling for a code wherever it comes from (SPSS, CSV, XLSX, the mapping's YAML), so
    ``1`` in the mapping matches ``1.0`` in a ``.sav`` and ``"1"`` in a CSV.

    >>> [code_text(v) for v in (1.0, "1.0", 2, " 98 ", "", None, float("nan"), 17.5, "007")]
    ['1', '1', '2', '98', None, None, None, '17.5', '007']
    """
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    # a CSV written from floats says 1.0 where SPSS holds 1; ids such as 007 stay as they are
    return _INTEGRAL_TEXT.sub(r"\1", text) or None


def _codes(value: Any) -> Any:
    """A list of codes from YAML (numbers or text) as text; a single code as a list of one."""
    if value is None:
        return value
    items = value if isinstance(value, list) else [value]
    return [code_text(item) for item in items]


class DontKnow(StrEnum):
    """What a "don't know" code of a single-choice question becomes."""

    #: A row with ``selected`` 0: asked, and did not say yes (the default; the share of yes
    #: is then among everyone asked, as the questionnaire's base is).
    NO = "no"
    #: No row: left out of the question's base, like "not asked".
    DROP = "drop"


class Recode(FrozenSettings):
    """A respondent column and how its codes become the wave's levels.

    ``values`` maps a source code (or its SPSS value label) to a level; ``bands`` maps a level
    to an inclusive numeric range (ages in years); neither copies the values as text. A value
    that neither covers, and is not in ``missing``, is an error that lists it.
    """

    column: str
    values: dict[str, str] | None = None
    bands: dict[str, tuple[float, float]] | None = None
    #: Codes that mean no answer: a blank cell (profiles only: a census variable needs a level).
    missing: list[str] = Field(default_factory=list)

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {code_text(key): code_text(level) for key, level in value.items()}

    @field_validator("missing", mode="before")
    @classmethod
    def _missing_as_text(cls, value: Any) -> Any:
        return _codes(value)

    @model_validator(mode="after")
    def _one_rule(self) -> Recode:
        if self.values is not None and self.bands is not None:
            raise ValueError(f"column '{self.column}': give values or bands, not both")
        for level, (low, high) in (self.bands or {}).items():
            if low > high:
                raise ValueError(f"band '{level}' runs from {low} down to {high}; give [low, high]")
        ordered = sorted((low, high, level) for level, (low, high) in (self.bands or {}).items())
        for (_, high, level), (low, _, other) in itertools.pairwise(ordered):
            if low <= high:
                raise ValueError(
                    f"bands '{level}' and '{other}' overlap; a value must fall in one band"
                )
        return self


class CensusFiles(FrozenSettings):
    """Files copied into the wave folder as they are: the census and known profile margins."""

    poststrat: str | None = None
    census_tables: str | None = None
    profile_margins: str | None = None

    @model_validator(mode="after")
    def _one_census(self) -> CensusFiles:
        if (self.poststrat is None) == (self.census_tables is None):
            raise ValueError(
                "give the census one way: poststrat (the joint) or census_tables (margins)"
            )
        return self


class QuestionMapping(FrozenSettings):
    """One question: its id, brand, base, and the column(s) its answers come from.

    A single-choice question reads one ``column`` whose ``yes`` codes are option ``yes``
    (selected 1) and ``no`` codes selected 0; a multi-select reads one 0/1 column per option
    (``options``: option name -> column). ``not_asked``, ``dont_know`` and ``dont_know_as``
    default to the mapping's ``defaults``.
    """

    id: str
    brand: str | None = None
    kind: str | None = Field(None, description="single or multi; default: from the source")
    base: str | None = None
    label: str | None = None
    column: str | None = None
    yes: list[str] = Field(default_factory=list)
    no: list[str] = Field(default_factory=list)
    options: dict[str, str] | None = None
    not_asked: list[str] | None = None
    dont_know: list[str] | None = None
    dont_know_as: DontKnow | None = None

    @field_validator("yes", "no", "not_asked", "dont_know", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        return _codes(value)

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        problem = id_problem(value)
        if problem is not None:
            raise ValueError(f"question id {shown(value)} {problem}; use {ID_RULE}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> QuestionMapping:
        if (self.column is None) == (self.options is None):
            raise ValueError(
                f"question '{self.id}': give column (single choice, with its yes codes) or "
                "options (multi-select: option -> 0/1 column), exactly one"
            )
        if self.kind is not None and self.kind not in QUESTION_KINDS:
            raise ValueError(f"question '{self.id}': kind must be single or multi")
        if self.column is not None:
            if self.kind == "multi":
                raise ValueError(f"question '{self.id}': a multi-select question needs options")
            if not self.yes:
                raise ValueError(f"question '{self.id}': give the code(s) that mean yes")
            both = sorted(set(self.yes) & set(self.no))
            if both:
                raise ValueError(f"question '{self.id}': codes {both} are both yes and no")
        if self.options is not None:
            if self.kind == "single" and len(self.options) > 1:
                raise ValueError(f"question '{self.id}': kind single with several options")
            if self.yes or self.no:
                raise ValueError(
                    f"question '{self.id}': yes/no codes are for a single column; a "
                    "multi-select's option columns are 0/1"
                )
            for option in self.options:
                problem = id_problem(option)
                if problem is not None:
                    raise ValueError(
                        f"question '{self.id}': option {shown(option)} {problem}; use {ID_RULE}"
                    )
        return self

    @property
    def question_kind(self) -> str:
        """``single`` or ``multi``: as given, else multi for option columns."""
        return self.kind or ("single" if self.column is not None else "multi")

    @property
    def option_names(self) -> list[str]:
        """The options the question's answers show."""
        return [YES_OPTION] if self.options is None else list(self.options)

    @property
    def columns(self) -> list[str]:
        """The source columns the question reads."""
        return [self.column] if self.column is not None else list((self.options or {}).values())


class AnswerDefaults(FrozenSettings):
    """Codes shared by the questions unless a question gives its own."""

    #: Codes meaning the question was not shown: no row (a blank cell is always not asked).
    not_asked: list[str] = Field(default_factory=list)
    #: Codes meaning "don't know" / "no answer" on a single-choice question.
    dont_know: list[str] = Field(default_factory=list)
    dont_know_as: DontKnow = DontKnow.NO

    @field_validator("not_asked", "dont_know", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        return _codes(value)


class SurveyMapping(FrozenSettings):
    """A whole mapping file: the config it is validated against, respondents, questions."""

    #: The wave config (path relative to the mapping file, or a URI): demographics, profiles,
    #: target groups and census settings; the imported wave is validated against it.
    config: str
    census: CensusFiles
    #: XLSX only: the sheet to read (needed when the workbook has several).
    sheet: str | None = None
    respondent_id: str
    #: A constant market (``DE``) or a recoded column (``{column: country, values: ...}``).
    market: str | Recode
    demographics: dict[str, Recode] = Field(min_length=1)
    profiles: dict[str, Recode] = Field(default_factory=dict)
    defaults: AnswerDefaults = AnswerDefaults()
    questions: list[QuestionMapping] = Field(min_length=1)

    @field_validator("market", mode="before")
    @classmethod
    def _market_as_text(cls, value: Any) -> Any:
        return code_text(value) if isinstance(value, int | float) else value

    def not_asked(self, question: QuestionMapping) -> set[str]:
        """The codes that mean ``question`` was not shown."""
        chosen = question.not_asked if question.not_asked is not None else self.defaults.not_asked
        return set(chosen)

    def dont_know(self, question: QuestionMapping) -> set[str]:
        """The codes that mean "don't know" for ``question``."""
        chosen = question.dont_know if question.dont_know is not None else self.defaults.dont_know
        return set(chosen)

    def dont_know_as(self, question: QuestionMapping) -> DontKnow:
        """What a "don't know" of ``question`` becomes."""
        return question.dont_know_as or self.defaults.dont_know_as


def _mapping_problems(mapping: SurveyMapping) -> list[str]:
    """Rules across questions: unique ids, bases that name a mapped question and option."""
    problems = []
    counts = Counter(question.id for question in mapping.questions)
    for question_id, n in sorted(counts.items()):
        if n > 1:
            positions = [i for i, q in enumerate(mapping.questions) if q.id == question_id]
            problems.append(
                f"questions {positions}: {n} questions are mapped to id '{question_id}' -> "
                "give each question its own id (e.g. aware_brand01, aware_brand02)"
            )
    options = {question.id: question.option_names for question in mapping.questions}
    for i, question in enumerate(mapping.questions):
        if question.base is None:
            continue
        parsed = parse_base(question.base)
        where = f"questions[{i}] ('{question.id}').base '{question.base}'"
        if parsed is None:
            problems.append(f"{where}: expected question=option -> e.g. aware_brand01=yes")
            continue
        base_question, base_option = parsed
        if base_question not in options:
            problems.append(
                f"{where} names unknown question '{base_question}' (mapped: "
                f"{', '.join(sorted(options))}) -> name a question id of this mapping"
            )
        elif base_option not in options[base_question]:
            problems.append(
                f"{where}: question '{base_question}' has no option '{base_option}' "
                f"(options: {', '.join(options[base_question])}) -> name one of them"
            )
        elif base_question == question.id:
            problems.append(f"{where} names the question itself -> name the filter question")
    clash = sorted(set(mapping.demographics) & set(mapping.profiles))
    if clash:
        problems.append(f"demographics and profiles both name {clash} -> keep each in one")
    if mapping.demographics and any(recode.missing for recode in mapping.demographics.values()):
        named = [name for name, recode in mapping.demographics.items() if recode.missing]
        problems.append(
            f"demographics {named} have missing codes -> a census variable needs a level for "
            "every respondent: map those codes to a level, or drop the respondents from the export"
        )
    return problems


def relative_to(mapping_uri: str, path: str) -> str:
    """``path`` as written in the mapping: relative to the mapping file's folder, or absolute.

    So a mapping and its config and census can move together (``examples/``).
    """
    if "://" in path or Path(path).is_absolute():
        return path
    if "://" in mapping_uri:
        return str(PurePosixPath(mapping_uri).parent / path).replace(":/", "://", 1)
    return str(Path(mapping_uri).parent / path)


def load_mapping(uri: str | Path) -> SurveyMapping:
    """Read and validate a mapping file; every problem is one ``ConfigError``.

    Raises
    ------
    ConfigError
        A missing or malformed file, an unknown key (with a "did you mean"), two questions
        mapped to one id, a base naming an unknown question or option.
    """
    raw = read_config_file(uri)
    mapping = validate_config(SurveyMapping, raw, str(uri), what="mapping")
    problems = _mapping_problems(mapping)
    if problems:
        raise ConfigError(f"{uri}: invalid mapping\n" + "\n".join(f"  {p}" for p in problems))
    return mapping
