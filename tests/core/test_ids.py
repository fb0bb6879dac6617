"""Ids become file and folder names: unsafe ones are refused at the input, the config and the store.

A question ``../../../w0`` with options ``manifest`` and ``estimates`` once overwrote another
wave's manifest; ``x/y`` + ``z`` and ``x`` + ``y/z`` shared one path; a 300-character id failed
only after every fit. Each of those is refused here before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from misterp.config import ConfigError
from misterp.ids import MAX_ID_LENGTH, id_problem, is_safe_id
from misterp.mrp.config import check_wave_id, parse_config
from misterp.mrp.validation import InputValidationError, ValidationProblem, read_wave
from misterp.storage import ResultStore, UnsafePathError
from support import small_simulated_wave

DEMOGRAPHICS = ("gender",)


def _frames(question_ids: list[str], options: list[str]) -> dict[str, pd.DataFrame]:
    """A valid wave of two respondents in market DE answering the given (question, option)s."""
    respondents = pd.DataFrame(
        {"respondent_id": ["r1", "r2"], "market": ["DE", "DE"], "gender": ["f", "m"]}
    )
    answers = pd.DataFrame(
        [
            (respondent, question, option, selected)
            for respondent, selected in (("r1", 1), ("r2", 0))
            for question, option in zip(question_ids, options, strict=True)
        ],
        columns=["respondent_id", "question_id", "option", "selected"],
    )
    poststrat = pd.DataFrame({"market": ["DE", "DE"], "gender": ["f", "m"], "population": [5, 4]})
    return {"respondents": respondents, "answers": answers, "poststrat": poststrat}


def _problems(tmp_path: Path, frames: dict[str, pd.DataFrame]) -> list[ValidationProblem]:
    for role, frame in frames.items():
        frame.to_csv(tmp_path / f"{role}.csv", index=False)
    with pytest.raises(InputValidationError) as info:
        read_wave(str(tmp_path), DEMOGRAPHICS)
    return info.value.report.problems


def _unsafe(problems: list[ValidationProblem], file: str, column: str) -> ValidationProblem:
    found = [
        p for p in problems if p.file == file and p.column == column and "safe id" in p.message
    ]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


# -- the rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("../../../w0", "contains '/'"),
        ("x/y", "contains '/'"),
        ("x\\y", "contains '\\\\'"),
        ("..", "contains '..'"),
        ("a..b", "contains '..'"),
        (".hidden", "starts with '.'"),
        ("good value", "contains whitespace"),
        ("tab\there", "contains whitespace"),
        ("bell\x07", "contains a control character"),
        ("marca_niño", "contains 'ñ'"),
        ("a=b", "contains '='"),
        ("", "is empty"),
        ("q" * 300, "has 300 characters, more than 64"),
    ],
)
def test_unsafe_ids_are_refused_with_the_reason(value: str, reason: str) -> None:
    assert not is_safe_id(value)
    assert id_problem(value) == reason


def test_every_id_the_demo_wave_uses_is_safe() -> None:
    demo = small_simulated_wave(
        brands=("brand01", "brand02", "brand03"),
        association_options=("innovative", "trustworthy", "good_value", "sustainable"),
    )
    ids = {
        *demo.respondents["market"],
        *demo.answers["question_id"],
        *demo.answers["option"],
        *demo.questions["question_id"],
        *(part for base in demo.questions["base"].dropna() for part in base.split("=")),
    }
    assert len(ids) > 10
    assert [value for value in sorted(ids) if not is_safe_id(value)] == []
    # and the ids the other tests use: zero-padded, dotted and month ids
    for value in ("007", "18-34", "2026-10", "v1.2", "a" * MAX_ID_LENGTH):
        assert is_safe_id(value), value


# -- at the input ---------------------------------------------------------------------------


def test_a_question_id_that_climbs_out_of_the_wave_is_refused_with_the_rows_and_the_fix(
    tmp_path: Path,
) -> None:
    frames = _frames(["aware_b1", "../../../w0", "../../../w0"], ["yes", "manifest", "estimates"])
    problem = _unsafe(_problems(tmp_path, frames), "answers.csv", "question_id")
    # answers.csv rows: r1 x 3 questions (lines 2-4), then r2 (lines 5-7)
    assert problem.rows == [3, 4, 6, 7]
    assert "'../../../w0'" in problem.message
    assert "64" in problem.message
    assert problem.fix.startswith("rename the question")
    assert "file and folder names" in problem.fix
    assert not (tmp_path / "results").exists()


def test_ids_that_would_share_one_path_are_refused(tmp_path: Path) -> None:
    # x/y + z and x + y/z are both x/y/z on disk
    frames = _frames(["x/y", "x"], ["z", "y/z"])
    problems = _problems(tmp_path, frames)
    assert _unsafe(problems, "answers.csv", "question_id").rows == [2, 4]
    option = _unsafe(problems, "answers.csv", "option")
    assert option.rows == [3, 5]
    assert "'y/z'" in option.message
    assert option.fix.startswith("rename the option")


def test_an_overlong_id_is_refused_before_any_fit_and_shown_cut(tmp_path: Path) -> None:
    long_id = "q" * 300
    problem = _unsafe(
        _problems(tmp_path, _frames([long_id], ["yes"])), "answers.csv", "question_id"
    )
    assert "(300 characters)" in problem.message
    assert long_id not in problem.message  # cut, so the message stays readable


def test_unsafe_markets_and_questions_file_ids_and_bases_are_refused(tmp_path: Path) -> None:
    frames = _frames(["aware_b1", "consider_b1"], ["yes", "yes"])
    frames["respondents"].loc[1, "market"] = "DE/../FR"
    frames["poststrat"].loc[1, "market"] = "DE/../FR"
    frames["questions"] = pd.DataFrame(
        {
            "question_id": ["aware_b1", "consider b1"],
            "market": ["DE", "DE"],
            "brand": ["b1", "b1"],
            "kind": ["single", "single"],
            "base": ["", "aware b1=yes"],
        }
    )
    problems = _problems(tmp_path, frames)
    assert _unsafe(problems, "respondents.csv", "market").rows == [3]
    assert _unsafe(problems, "poststrat.csv", "market").rows == [3]
    assert _unsafe(problems, "questions.csv", "question_id").rows == [3]
    base = _unsafe(problems, "questions.csv", "base")
    assert base.rows == [3]
    assert "rename the question or option" in base.fix


# -- the wave id ----------------------------------------------------------------------------


def test_a_wave_id_in_the_config_must_be_safe() -> None:
    raw = {"input": "in/{wave}", "output": "out", "demographics": ["gender"]}
    with pytest.raises(ConfigError, match=r"wave: .*'\.\./w0' contains '/'.*folder"):
        parse_config(raw | {"wave": "../w0"})
    assert parse_config(raw | {"wave": "2026-10"}).wave == "2026-10"


@pytest.mark.parametrize("wave", ["../w0", "2026/10", "x" * 65, ".", "2026 10"])
def test_a_wave_id_from_the_command_line_must_be_safe(wave: str) -> None:
    config = parse_config({"input": "in/{wave}", "output": "out", "demographics": ["gender"]})
    with pytest.raises(ConfigError, match=r"wave id .*--wave.*e\.g\. 2026-10"):
        config.resolved(wave=wave)
    with pytest.raises(ConfigError):
        check_wave_id(wave)
    assert config.resolved(wave="2026-10").input == "in/2026-10"


# -- the store, whatever slipped past ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../w0/manifest.json", "'..' segment"),
        ("w1/../../w0/manifest.json", "'..' segment"),
        ("/etc/passwd", "absolute"),
        ("w1//manifest.json", "empty segment"),
        ("w1/./manifest.json", "'.' segment"),
        ("w1\\..\\w0", "'\\\\'"),
        ("", "empty"),
    ],
)
def test_the_store_refuses_paths_that_could_leave_its_root(
    tmp_path: Path, path: str, reason: str
) -> None:
    root = tmp_path / "out"
    store = ResultStore(str(root))
    (tmp_path / "w0").mkdir()
    (tmp_path / "w0" / "manifest.json").write_text("another wave's manifest")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    for operation in (
        lambda: store.write_bytes(path, b"overwritten"),
        lambda: store.read_bytes(path),
        lambda: store.remove(path),
        lambda: store.exists(path),
        lambda: store.list(path),
    ):
        with pytest.raises(UnsafePathError, match=reason) as info:
            operation()
        assert repr(path) in str(info.value)
        assert "rename the id" in str(info.value)

    if not path.startswith("/"):  # uri() only names a path; a leading / means the root
        with pytest.raises(UnsafePathError, match=reason):
            store.uri(path)

    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "w0" / "manifest.json").read_text() == "another wave's manifest"


def test_the_store_still_reads_and_writes_plain_paths_and_folders(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path / "out"))
    store.write_bytes("2026-10/draws/DE/aware_b1/yes.parquet", b"x")
    assert store.list("2026-10/draws/") == ["2026-10/draws/DE/aware_b1/yes.parquet"]
    assert store.uri("2026-10/") == f"{tmp_path}/out/2026-10"
