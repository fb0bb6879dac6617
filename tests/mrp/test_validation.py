"""Input contract of a wave: every problem is reported at once, with file, column, rows and fix."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest

from misterp.mrp.data import WaveData
from misterp.mrp.validation import (
    InputValidationError,
    ValidationProblem,
    ValidationReport,
    format_rows,
    read_wave,
)

DEMOGRAPHICS = ("age", "gender")


def clean_frames() -> dict[str, pd.DataFrame]:
    """A small valid wave: two markets, a yes/no question and a based multi-select question."""
    respondents = pd.DataFrame(
        {
            "respondent_id": ["007", "r2", "r3", "r4"],
            "market": ["DE", "DE", "FR", "FR"],
            "age": ["18-34", "35+", "18-34", "35+"],
            "gender": ["f", "m", "m", "f"],
        }
    )
    aware = [
        (rid, "aware_brand01", "yes", s)
        for rid, s in zip(respondents.respondent_id, (1, 0, 1, 0), strict=True)
    ]
    consider = [
        (rid, "consider_brand01", option, s)
        for rid in ("007", "r3")
        for option, s in (("price", 1), ("quality", 0))
    ]
    answers = pd.DataFrame(
        aware + consider, columns=["respondent_id", "question_id", "option", "selected"]
    )
    cells = [
        (market, age, gender)
        for market in ("DE", "FR")
        for age in ("18-34", "35+")
        for gender in ("f", "m")
    ]
    poststrat = pd.DataFrame(cells, columns=["market", "age", "gender"])
    poststrat["population"] = [100.0, 120.0, 80.0, 90.0, 50.0, 55.0, 60.0, 40.0]
    questions = pd.DataFrame(
        {
            "question_id": [
                "aware_brand01",
                "aware_brand01",
                "consider_brand01",
                "consider_brand01",
            ],
            "market": ["DE", "FR", "DE", "FR"],
            "brand": ["brand01"] * 4,
            "kind": ["single", "single", "multi", "multi"],
            "base": ["", "", "aware_brand01=yes", "aware_brand01=yes"],
        }
    )
    return {
        "respondents": respondents,
        "answers": answers,
        "poststrat": poststrat,
        "questions": questions,
    }


def write(folder: Path, frames: dict[str, pd.DataFrame], fmt: str = "csv") -> str:
    """Write the frames as a wave folder; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, frame in frames.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{role}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{role}.parquet", index=False)
    return str(folder)


def problems_of(folder: str) -> list[ValidationProblem]:
    with pytest.raises(InputValidationError) as info:
        read_wave(folder, DEMOGRAPHICS)
    return info.value.report.problems


def only(problems: list[ValidationProblem], file: str, column: str | None) -> ValidationProblem:
    """The single problem of ``file``/``column``, failing with the whole list otherwise."""
    found = [p for p in problems if p.file == file and p.column == column]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


# -- clean waves --------------------------------------------------------------------------


def test_clean_wave_returns_wave_data(tmp_path: Path) -> None:
    wave = read_wave(write(tmp_path, clean_frames()), DEMOGRAPHICS)
    assert isinstance(wave, WaveData)
    assert wave.demographics == DEMOGRAPHICS
    assert wave.markets == ["DE", "FR"]
    assert wave.respondents.shape == (4, 4)
    assert wave.respondents["respondent_id"].tolist()[0] == "007"
    assert list(wave.answers.columns) == ["respondent_id", "question_id", "option", "selected"]
    assert wave.answers.shape == (8, 4)
    assert wave.answers["selected"].dtype == "int8"
    assert wave.poststrat["population"].dtype == "float64"
    assert list(wave.poststrat.columns) == ["market", "age", "gender", "population"]
    for frame in (wave.respondents, wave.answers, wave.poststrat):
        for column in frame.columns.difference(["selected", "population"]):
            assert pd.api.types.is_string_dtype(frame[column]), column
    assert wave.questions.shape == (4, 6)  # question_id, market, brand, kind, base, label
    assert wave.questions["base"].tolist() == [None, None, "aware_brand01=yes", "aware_brand01=yes"]


def test_questions_are_derived_when_the_file_is_absent(tmp_path: Path) -> None:
    frames = clean_frames()
    del frames["questions"]
    questions = read_wave(write(tmp_path, frames), DEMOGRAPHICS).questions
    assert questions.to_dict("records") == [
        {"question_id": q, "market": m, "brand": None, "kind": k, "base": None, "label": None}
        for m in ("DE", "FR")
        for q, k in (("aware_brand01", "single"), ("consider_brand01", "multi"))
    ]


def test_parquet_from_an_fsspec_url() -> None:
    fs = fsspec.filesystem("memory")
    frames = clean_frames()
    frames["respondents"].loc[2, "respondent_id"] = "r2"
    try:
        for role, frame in frames.items():
            with fs.open(f"/wave-parquet/{role}.parquet", "wb") as handle:
                frame.to_parquet(handle, index=False)
        problems = problems_of("memory://wave-parquet")
        problem = only(problems, "respondents.parquet", "respondent_id")
        assert problem.rows == [2, 3]  # parquet rows are 1-based positions
        frames["respondents"].loc[2, "respondent_id"] = "r3"
        with fs.open("/wave-parquet/respondents.parquet", "wb") as handle:
            frames["respondents"].to_parquet(handle, index=False)
        wave = read_wave("memory://wave-parquet", DEMOGRAPHICS)
    finally:
        fs.rm("/wave-parquet", recursive=True)
    assert wave.answers["selected"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert wave.answers["selected"].dtype == "int8"


def test_row_numbers_are_file_lines(tmp_path: Path) -> None:
    """A blank line inside a csv keeps its line number; trailing blank lines are ignored."""
    folder = write(tmp_path, clean_frames())
    lines = (tmp_path / "answers.csv").read_text().splitlines()
    lines[3:3] = [""]  # becomes line 4
    lines[4] = lines[4].replace(",yes,", ",,")  # line 5
    (tmp_path / "answers.csv").write_text("\n".join(lines) + "\n\n\n")
    problems = problems_of(folder)
    assert only(problems, "answers.csv", "option").rows == [4, 5]
    assert only(problems, "answers.csv", "selected").rows == [4]


def test_unreadable_file(tmp_path: Path) -> None:
    folder = write(tmp_path, clean_frames())
    (tmp_path / "poststrat.csv").write_bytes(b"")
    problem = only(problems_of(folder), "poststrat.csv", None)
    assert "cannot be read" in problem.message


# -- one test per problem ------------------------------------------------------------------


def test_missing_and_unexpected_columns(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["respondents"] = frames["respondents"].rename(columns={"gender": "sex"})
    problems = problems_of(write(tmp_path, frames))
    missing = only(problems, "respondents.csv", "gender")
    assert "missing column" in missing.message
    assert "remove 'gender' from demographics" in missing.fix
    unexpected = only(problems, "respondents.csv", "sex")
    assert "unexpected column" in unexpected.message
    assert "add it to demographics in the config" in unexpected.fix


def test_a_header_that_repeats_a_column_is_named_as_such(tmp_path: Path) -> None:
    """Issue 26: pandas renames a repeated header to 'market.1', reported as unexpected."""
    folder = write(tmp_path, clean_frames())
    path = tmp_path / "respondents.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",market", *(line + ",DE" for line in lines[1:])]))

    problems = problems_of(folder)

    problem = only(problems, "respondents.csv", "market")
    assert problem.rows == [1]
    assert problem.message == "the header repeats column 'market' (columns 2 and 5)"
    assert "keep one column named 'market'" in problem.fix
    assert not any("market.1" in str(p) for p in problems)


def test_missing_file_and_both_formats(tmp_path: Path) -> None:
    frames = clean_frames()
    folder = write(tmp_path, {"answers": frames["answers"], "poststrat": frames["poststrat"]})
    frames["poststrat"].to_parquet(tmp_path / "poststrat.parquet")
    problems = problems_of(folder)
    assert "missing file" in only(problems, "respondents.{csv,parquet}", None).message
    assert "both" in only(problems, "poststrat.{csv,parquet}", None).message


def test_duplicate_respondent_ids(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["respondents"].loc[3, "respondent_id"] = "r2"
    problem = only(problems_of(write(tmp_path, frames)), "respondents.csv", "respondent_id")
    assert problem.rows == [3, 5]
    assert "duplicate respondent_id" in problem.message
    assert "'r2'" in problem.message


def test_selected_not_zero_or_one(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["answers"]["selected"] = frames["answers"]["selected"].astype(str)
    frames["answers"].loc[2, "selected"] = "2"
    frames["answers"].loc[5, "selected"] = "yes"
    problem = only(problems_of(write(tmp_path, frames)), "answers.csv", "selected")
    assert problem.rows == [4, 7]
    assert "'2'" in problem.message
    assert "'yes'" in problem.message
    assert "one row per option" in problem.fix


def test_missing_values(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["respondents"].loc[1, "market"] = None
    frames["answers"].loc[0, "selected"] = None
    problems = problems_of(write(tmp_path, frames))
    assert only(problems, "respondents.csv", "market").rows == [3]
    problem = only(problems, "answers.csv", "selected")
    assert (problem.rows, problem.message) == ([2], "missing value")


def test_answers_of_unknown_respondents(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["answers"].loc[6, "respondent_id"] = "r99"
    problem = only(problems_of(write(tmp_path, frames)), "answers.csv", "respondent_id")
    assert problem.rows == [8]
    assert "'r99'" in problem.message
    assert "respondents.csv" in problem.message


def test_duplicate_answer_rows(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["answers"] = pd.concat([frames["answers"], frames["answers"].iloc[[4]]])
    problem = only(problems_of(write(tmp_path, frames)), "answers.csv", None)
    assert problem.rows == [6, 10]
    assert "duplicate answer rows" in problem.message
    assert "(007, consider_brand01, price)" in problem.message


def test_level_missing_from_the_markets_poststrat(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["respondents"].loc[0, "age"] = "17-"
    frames["respondents"].loc[2, "age"] = "17-"  # FR: reported separately
    problems = problems_of(write(tmp_path, frames))
    found = [p for p in problems if p.file == "respondents.csv" and p.column == "age"]
    assert [(p.rows, "market DE" in p.message) for p in found] == [([2], True), ([4], False)]
    assert "value '17-' is not a level" in found[0].message
    assert "levels: 18-34, 35+" in found[0].message


def test_duplicate_poststrat_cells(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["poststrat"] = pd.concat([frames["poststrat"], frames["poststrat"].iloc[[1]]])
    problem = only(problems_of(write(tmp_path, frames)), "poststrat.csv", None)
    assert problem.rows == [3, 10]
    assert "(DE, 18-34, m)" in problem.message
    assert "sum the population" in problem.fix


def test_negative_or_missing_population(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["poststrat"]["population"] = frames["poststrat"]["population"].astype(object)
    frames["poststrat"].loc[0, "population"] = -5
    frames["poststrat"].loc[3, "population"] = "many"
    frames["poststrat"].loc[5, "population"] = None
    problems = problems_of(write(tmp_path, frames))
    found = {p.message: p.rows for p in problems if p.column == "population"}
    assert found == {
        "population must be a number >= 0, found '-5', 'many'": [2, 5],
        "missing value": [7],
    }


def test_market_whose_census_population_is_zero(tmp_path: Path) -> None:
    """A market whose census counts are all zero cannot weight anything: an input error."""
    frames = clean_frames()
    frames["poststrat"].loc[frames["poststrat"]["market"] == "DE", "population"] = 0.0
    problem = only(problems_of(write(tmp_path, frames)), "poststrat.csv", "population")
    assert problem.rows == [2, 3, 4, 5]
    assert "market DE" in problem.message
    assert "population is 0 in every cell" in problem.message
    assert "census counts of market DE" in problem.fix


def test_level_with_zero_population_that_respondents_fall_into(tmp_path: Path) -> None:
    """Respondents in a level the census says nobody is in: named with the market and level."""
    frames = clean_frames()
    census = frames["poststrat"]
    census.loc[census["market"].eq("FR") & census["age"].eq("18-34"), "population"] = 0.0
    census.loc[census["market"].eq("DE") & census["gender"].eq("m"), "population"] = 0.0
    problems = problems_of(write(tmp_path, frames))
    found = sorted(
        (p for p in problems if p.file == "poststrat.csv" and p.column == "population"),
        key=lambda p: p.rows,
    )
    assert [p.rows for p in found] == [[3, 5], [6, 7]], "\n".join(map(str, problems))
    de, fr = found
    assert "market DE" in de.message
    assert "gender 'm'" in de.message
    assert "1 respondent" in de.message
    assert "market FR" in fr.message
    assert "age '18-34'" in fr.message
    assert "respondents.csv" in fr.fix
    assert "population" in fr.fix


def test_zero_population_in_a_level_nobody_answered_is_fine(tmp_path: Path) -> None:
    """An empty census cell no respondent falls into is a real census fact, not an error."""
    frames = clean_frames()
    frames["poststrat"].loc[1, "population"] = 0.0  # DE, 18-34, m: no respondent there
    wave = read_wave(write(tmp_path, frames), DEMOGRAPHICS)
    assert wave.poststrat["population"].eq(0).sum() == 1


def test_market_without_poststrat(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["poststrat"] = frames["poststrat"][frames["poststrat"]["market"] == "DE"]
    problem = only(problems_of(write(tmp_path, frames)), "respondents.csv", "market")
    assert problem.rows == [4, 5]
    assert "market 'FR' has no rows in poststrat.csv" in problem.message


def test_question_without_answers(tmp_path: Path) -> None:
    frames = clean_frames()
    extra = {"question_id": "aware_brand02", "market": "FR", "kind": "single", "base": ""}
    frames["questions"] = pd.concat([frames["questions"], pd.DataFrame([extra])])
    problem = only(problems_of(write(tmp_path, frames)), "questions.csv", "question_id")
    assert problem.rows == [6]
    assert "'aware_brand02' in FR" in problem.message


def test_answered_question_missing_from_questions(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["questions"] = frames["questions"].drop(index=[3])
    problem = only(problems_of(write(tmp_path, frames)), "answers.csv", "question_id")
    assert problem.rows == [8, 9]
    assert "'consider_brand01' in FR" in problem.message


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("aware_brand09=yes", "question 'aware_brand09' has no answers in market DE"),
        ("aware_brand01=no", "never shows option 'no' in market DE (options: yes)"),
        ("aware_brand01", "malformed base"),
        ("=yes", "malformed base"),
    ],
)
def test_bad_base(tmp_path: Path, base: str, expected: str) -> None:
    frames = clean_frames()
    frames["questions"].loc[2, "base"] = base
    problem = only(problems_of(write(tmp_path, frames)), "questions.csv", "base")
    assert problem.rows == [4]
    assert expected in problem.message


def test_unknown_kind_and_single_with_several_options(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["questions"].loc[0, "kind"] = "grid"
    frames["questions"].loc[3, "kind"] = "single"
    problems = [p for p in problems_of(write(tmp_path, frames)) if p.column == "kind"]
    assert [p.rows for p in problems] == [[2], [5]]
    assert "kind must be single or multi, found 'grid'" in problems[0].message
    assert "'consider_brand01' is single but shows 2 options in market FR" in problems[1].message


# -- the report as a whole -----------------------------------------------------------------


def test_all_problems_of_all_files_are_reported_at_once(tmp_path: Path) -> None:
    frames = clean_frames()
    frames["respondents"].loc[0, "age"] = "17-"
    frames["answers"].loc[1, "selected"] = 2
    frames["poststrat"] = frames["poststrat"].drop(columns=["gender"])
    frames["questions"].loc[1, "kind"] = "grid"
    with pytest.raises(InputValidationError) as info:
        read_wave(write(tmp_path, frames), DEMOGRAPHICS)
    where = {(p.file, p.column) for p in info.value.report}
    assert {
        ("respondents.csv", "age"),
        ("answers.csv", "selected"),
        ("poststrat.csv", "gender"),
        ("questions.csv", "kind"),
    } <= where
    text = str(info.value)
    assert text.startswith(f"Input validation failed: {len(info.value.report)} problems")
    assert "  answers.csv, column 'selected', row 3: selected must be 0 or 1, found '2'" in text
    assert "poststrat.csv, column 'gender': missing column -> add it" in text


def test_report_rendering_truncates_rows() -> None:
    assert format_rows([4]) == "row 4"
    assert format_rows(list(range(2, 30))) == "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (28 rows)"
    report = ValidationReport([ValidationProblem("a.csv", "x", [2], "bad", "fix it")])
    assert str(report) == (
        "Input validation failed: 1 problem, nothing was written\n"
        "  a.csv, column 'x', row 2: bad\n      -> fix it"
    )


# -- ids that differ only in case ---------------------------------------------------------------


def test_ids_that_differ_only_in_case_are_refused(tmp_path: Path) -> None:
    """Issue 26: 'q_c' and 'Q_C' are one file on a case-insensitive store (macOS, some S3)."""
    frames = clean_frames()
    answers = frames["answers"]
    answers.loc[answers["respondent_id"].eq("r2"), "question_id"] = "AWARE_brand01"  # DE
    answers.loc[answers["respondent_id"].eq("r3") & answers["option"].eq("quality"), "option"] = (
        "Price"  # FR, within consider_brand01
    )
    frames["respondents"].loc[3, "market"] = "fr"
    extra = pd.DataFrame(
        {
            "question_id": ["AWARE_brand01"],
            "market": ["DE"],
            "brand": ["brand01"],
            "kind": ["single"],
            "base": [""],
        }
    )
    frames["questions"] = pd.concat([frames["questions"], extra], ignore_index=True)
    problems = problems_of(write(tmp_path, frames))
    cased = [p for p in problems if "differ only in case" in p.message]
    by_column = {p.column: p for p in cased}
    assert sorted(by_column) == ["market", "option", "question_id"], "\n".join(map(str, problems))
    assert by_column["question_id"].file == "answers.csv"
    assert "'AWARE_brand01', 'aware_brand01'" in by_column["question_id"].message
    assert "market DE" in by_column["question_id"].message
    assert by_column["option"].rows == [8, 9]
    assert "'Price', 'price'" in by_column["option"].message
    assert by_column["market"].file == "respondents.csv"
    assert by_column["market"].rows == [4, 5]
    assert "rename" in by_column["market"].fix


def test_the_same_id_in_another_market_or_question_is_not_a_case_clash(tmp_path: Path) -> None:
    """Only ids that share a folder collide: 'yes' and 'YES' in two questions are fine."""
    frames = clean_frames()
    answers = frames["answers"]
    answers.loc[
        answers["question_id"].eq("consider_brand01") & answers["option"].eq("price"), "option"
    ] = "Yes"
    read_wave(write(tmp_path, frames), DEMOGRAPHICS)
