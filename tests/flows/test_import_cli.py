"""``misterp import``: every bad input exits 2 naming column, values and fix, writing nothing;
the example goes from its .sav to published estimates (fits that sample nothing)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyreadstat
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from misterp.mrp.config import load_config
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from support import PLUMBING, no_mcmc_backends

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WAVE = "2026-12"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command installs a root log handler (on the runner's stream); undo it after a test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example's mapping, config, census and .sav in a folder of their own; absolute paths."""
    for name in ("mapping.yaml", "census.csv", "fieldwork.sav"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    config = yaml.safe_load((EXAMPLES / "wave.yaml").read_text())
    config["input"] = str(tmp_path / "waves" / "{wave}")
    config["output"] = str(tmp_path / "results")
    (tmp_path / "wave.yaml").write_text(yaml.safe_dump({**config, **PLUMBING, "workers": 1}))
    return tmp_path


def invoke(folder: Path, *extra: str, source: str = "fieldwork.sav") -> SimpleNamespace:
    result = CliRunner().invoke(
        app,
        [
            "import",
            "--mapping",
            str(folder / "mapping.yaml"),
            "--source",
            str(folder / source),
            "--wave",
            WAVE,
            "--output",
            str(folder / "waves"),
            *extra,
        ],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)


def edit_sav(folder: Path, change: Callable[[pd.DataFrame, dict[str, Any]], None]) -> None:
    """Rewrite the folder's .sav after ``change(frame, meta)`` (labels kept)."""
    frame, meta = pyreadstat.read_sav(folder / "fieldwork.sav", user_missing=True)
    labels = {
        "column_labels": meta.column_names_to_labels,
        "variable_value_labels": meta.variable_value_labels,
    }
    change(frame, labels)
    pyreadstat.write_sav(frame, folder / "fieldwork.sav", **labels)


def edit_mapping(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = yaml.load((folder / "mapping.yaml").read_text(), Loader=yaml.BaseLoader)
    change(raw)
    (folder / "mapping.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _rename_sex(frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    frame.columns = ["gender_code" if c == "sex" else c for c in frame.columns]
    meta["column_labels"]["gender_code"] = meta["column_labels"].pop("sex")
    meta["variable_value_labels"]["gender_code"] = meta["variable_value_labels"].pop("sex")


def _unmapped_education(frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    frame.loc[[3, 5, 8], "educ"] = 4.0
    frame.loc[10, "educ"] = 7.0
    meta["variable_value_labels"]["educ"][4.0] = "Still in education"


def _multi_select_code_2(frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    answered = frame.index[frame["q3_1_1"].notna()]
    frame.loc[answered[:2], "q3_1_1"] = 2.0


def _duplicate_id(frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    frame.loc[1, "resp_id"] = frame.loc[0, "resp_id"]


def _unknown_base(raw: dict[str, Any]) -> None:
    raw["questions"][1]["base"] = "awareness_brand01=yes"


def _same_id_twice(raw: dict[str, Any]) -> None:
    raw["questions"][3]["id"] = "aware_brand01"
    raw["questions"][4]["base"] = "aware_brand01=yes"
    raw["questions"][5]["base"] = "aware_brand01=yes"


def _truncate(folder: Path) -> None:
    data = (folder / "fieldwork.sav").read_bytes()
    (folder / "fieldwork.sav").write_bytes(data[: len(data) // 2])


def _two_sheets(folder: Path) -> None:
    frame = pyreadstat.read_sav(folder / "fieldwork.sav", user_missing=True)[0]
    with pd.ExcelWriter(folder / "fieldwork.xlsx") as writer:
        frame.to_excel(writer, sheet_name="responses", index=False)
        pd.DataFrame({"code": [1, 2], "label": ["Male", "Female"]}).to_excel(
            writer, sheet_name="codes", index=False
        )


#: Each bad input of issue 25: how to make it, the source file, what the message must say.
BAD_INPUTS: dict[str, tuple[Callable[[Path], None], str, list[str]]] = {
    "a mapped column missing from the file": (
        lambda f: edit_sav(f, _rename_sex),
        "fieldwork.sav",
        [
            "fieldwork.sav, column 'sex': missing column, mapped as demographics.gender.column",
            "fix the column name in mapping.yaml; the file's columns: resp_id, country, "
            "gender_code",
        ],
    ),
    "values outside the mapping, with counts": (
        lambda f: edit_sav(f, _unmapped_education),
        "fieldwork.sav",
        [
            "fieldwork.sav, column 'educ', rows 4, 6, 9, 11: values outside the mapping's "
            "demographics.education.values: '4' (Still in education) x 3, '7' x 1",
            "-> add them to demographics.education.values in mapping.yaml",
        ],
    ),
    "a multi-select option column with values other than 0/1/missing": (
        lambda f: edit_sav(f, _multi_select_code_2),
        "fieldwork.sav",
        [
            "fieldwork.sav, column 'q3_1_1', rows",
            "option 'innovative' of multi-select question 'assoc_brand01' must be 0, 1 or "
            "blank, found '2' x 2",
            "-> export multi-select options as 0/1 columns",
        ],
    ),
    "a base naming an unknown question": (
        lambda f: edit_mapping(f, _unknown_base),
        "fieldwork.sav",
        [
            "questions[1] ('consider_brand01').base 'awareness_brand01=yes' names unknown "
            "question 'awareness_brand01'",
            "-> name a question id of this mapping",
        ],
    ),
    "duplicate respondent ids": (
        lambda f: edit_sav(f, _duplicate_id),
        "fieldwork.sav",
        [
            "fieldwork.sav, column 'resp_id', rows 1, 2: duplicate respondent ids: 'R00001' x 2",
            "-> give each respondent one row",
        ],
    ),
    "two questions mapped to the same id": (
        lambda f: edit_mapping(f, _same_id_twice),
        "fieldwork.sav",
        [
            "questions [0, 3]: 2 questions are mapped to id 'aware_brand01'",
            "-> give each question its own id",
        ],
    ),
    "an unreadable or truncated sav": (
        _truncate,
        "fieldwork.sav",
        [
            "fieldwork.sav: cannot be read: ReadstatError",
            "(not an SPSS file, or truncated) -> export it again from SPSS",
        ],
    ),
    "an xlsx with several sheets and none named": (
        _two_sheets,
        "fieldwork.xlsx",
        [
            "fieldwork.xlsx: the workbook has 2 sheets (responses, codes) and the mapping "
            "names none -> add sheet: NAME to the mapping (one of responses, codes)",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_a_bad_input_exits_2_naming_column_values_and_fix_and_writes_nothing(
    example: Path, case: str
) -> None:
    make, source, expected = BAD_INPUTS[case]
    make(example)

    result = invoke(example, source=source)

    assert result.code == 2, result.out + result.err
    message = " ".join(result.err.split())
    for part in expected:
        assert " ".join(part.split()) in message
    assert not (example / "waves").exists()


def test_check_prints_markets_questions_and_recoding_tables_and_writes_nothing(
    example: Path,
) -> None:
    frame = pyreadstat.read_sav(example / "fieldwork.sav", user_missing=True)[0]
    per_market = frame["country"].value_counts()
    dont_know = int(frame["q1_2"].eq(98).sum())

    result = invoke(example, "--check")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert f"respondents per market: DE {per_market[1.0]}, FR {per_market[2.0]}" in lines
    assert "  assoc_brand02: multi, 2 options, brand brand02, base aware_brand02=yes" in "\n".join(
        line.split('  "')[0] for line in lines
    )
    assert "  aware_brand02 <- q1_2" in lines
    assert f"    98 (Don't know) -> yes = 0 (don't know): {dont_know}" in lines
    assert lines[-1].startswith(f"wave {WAVE} is valid: 300 respondents, 2 markets (DE, FR)")
    assert lines[-1].endswith("nothing written (--check)")
    assert not (example / "waves").exists()


def test_the_example_goes_from_its_sav_to_published_estimates(example: Path) -> None:
    """``misterp import``, then the wave runs (fits that sample nothing).

    Without the example's audience on the profile: it doubles the cells every fake fit's
    diagnostics run over (about 6 s -> 16 s on two busy cores); the profile column is still
    imported and validated as a profile, and tests/mrp/test_survey_import.py checks its values.
    """
    config = yaml.safe_load((example / "wave.yaml").read_text())
    del config["target_groups"]["category_users"]
    (example / "wave.yaml").write_text(yaml.safe_dump(config))
    imported = invoke(example)
    assert imported.code == 0, imported.err
    assert imported.out.splitlines()[-1] == (
        f"next: misterp run --config {example / 'mapping.yaml'}".replace("mapping", "wave")
        + f" --wave {WAVE}"
    )

    run_wave_inline(
        load_config(example / "wave.yaml").resolved(wave=WAVE), backends=no_mcmc_backends()
    )

    store = ResultStore(str(example / "results"))
    assert store.is_complete(WAVE)
    estimates = store.read_parquet(f"{WAVE}/estimates.parquet")
    assert set(estimates["target_group"]) == {"all", "women_18_34"}
    questions = {f"{q}_brand0{b}" for q in ("aware", "consider", "assoc") for b in (1, 2)}
    assert set(estimates["question_id"]) == questions
    assert set(estimates["market"]) == {"DE", "FR"}


def test_import_has_help_with_an_example() -> None:
    result = CliRunner().invoke(app, ["import", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Example: misterp import --mapping examples/mapping.yaml" in text
    assert "--check" in text
