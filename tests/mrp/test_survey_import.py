"""misterp import's core: a survey export and its mapping become the wave they describe.

The example under examples/ is a simulated wave turned into an SPSS export
(examples/make_fieldwork.py), so importing it must give back the simulated wave: every
respondent's levels and every answer, the "don't know" codes counted as no.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat
import pytest
import yaml

from misterp.config import ConfigError
from misterp.inputs import InputValidationError
from misterp.mrp.survey_import import build_wave, import_survey
from misterp.mrp.survey_mapping import SurveyMapping, load_mapping
from misterp.mrp.survey_source import read_source

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WAVE = "2026-12"


def example_generator() -> Any:
    """examples/make_fieldwork.py as a module (examples/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fieldwork", EXAMPLES / "make_fieldwork.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> Any:
    return example_generator()


@pytest.fixture(scope="module")
def simulated(generator: Any) -> Any:
    return generator.simulated()


@pytest.fixture(scope="module")
def mapping() -> SurveyMapping:
    return load_mapping(EXAMPLES / "mapping.yaml")


@pytest.fixture(scope="module")
def sav() -> tuple[pd.DataFrame, Any]:
    return pyreadstat.read_sav(EXAMPLES / "fieldwork.sav", user_missing=True)


def test_the_committed_example_is_what_its_script_writes(
    generator: Any, sav: tuple[pd.DataFrame, Any], tmp_path: Path
) -> None:
    generator.main(tmp_path)
    fresh, meta = pyreadstat.read_sav(tmp_path / "fieldwork.sav", user_missing=True)
    committed, committed_meta = sav
    pd.testing.assert_frame_equal(fresh, committed)
    assert meta.variable_value_labels == committed_meta.variable_value_labels
    assert meta.column_names_to_labels == committed_meta.column_names_to_labels
    assert (tmp_path / "census.csv").read_text() == (EXAMPLES / "census.csv").read_text()
    assert (EXAMPLES / "fieldwork.sav").stat().st_size < 50_000


def test_importing_the_example_gives_back_the_simulated_wave(
    mapping: SurveyMapping, simulated: Any
) -> None:
    imported = build_wave(mapping, read_source(str(EXAMPLES / "fieldwork.sav")), "mapping.yaml")
    # the export numbers respondents R00001... in the simulation's order
    ids = dict(
        zip(
            simulated.respondents["respondent_id"],
            [f"R{i:05d}" for i in range(1, len(simulated.respondents) + 1)],
            strict=True,
        )
    )
    truth = simulated.respondents.assign(
        respondent_id=simulated.respondents["respondent_id"].map(ids)
    )
    people = imported.respondents.set_index("respondent_id")
    truth = truth.set_index("respondent_id")
    for column in ("market", "gender", "age", "education", "region"):
        assert people[column].tolist() == truth[column].astype(str).tolist(), column
    # "prefer not to say" (99, declared missing) is a blank profile; the rest pass through
    said = people["category_user"].notna()
    assert 0 < (~said).sum() < len(people)
    assert people.loc[said, "category_user"].tolist() == truth.loc[said, "category_user"].tolist()

    expected = simulated.answers.assign(respondent_id=simulated.answers["respondent_id"].map(ids))
    key = ["respondent_id", "question_id", "option"]
    got = imported.answers.sort_values(key).reset_index(drop=True)
    expected = expected[[*key, "selected"]].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.astype(str), expected.astype(str))


def test_questions_take_kind_base_brand_and_the_spss_variable_labels(
    mapping: SurveyMapping, sav: tuple[pd.DataFrame, Any]
) -> None:
    imported = build_wave(mapping, read_source(str(EXAMPLES / "fieldwork.sav")), "mapping.yaml")
    labels = sav[1].column_names_to_labels
    questions = imported.questions.set_index(["question_id", "market"])
    assert sorted(questions.index.get_level_values("market").unique()) == ["DE", "FR"]
    aware = questions.loc[("aware_brand01", "DE")]
    assert (aware["kind"], aware["brand"], aware["label"]) == ("single", "brand01", labels["q1_1"])
    assert pd.isna(aware["base"])
    assoc = questions.loc[("assoc_brand02", "FR")]
    assert (assoc["kind"], assoc["base"]) == ("multi", "aware_brand02=yes")
    # a multi-select's label: what its option columns' labels share
    assert labels["q3_2_1"].startswith(assoc["label"])
    assert labels["q3_2_2"].startswith(assoc["label"])
    assert assoc["label"].endswith("brand02?")


def _counts(frame: pd.DataFrame, column: str) -> dict[str | None, int]:
    codes = frame[column].map(lambda v: None if pd.isna(v) else str(int(v)))
    return {k: int(v) for k, v in codes.value_counts(dropna=False).items()}


def test_the_recoding_tables_count_every_source_value(
    mapping: SurveyMapping, sav: tuple[pd.DataFrame, Any]
) -> None:
    imported = build_wave(mapping, read_source(str(EXAMPLES / "fieldwork.sav")), "mapping.yaml")
    tables = {table.target: table for table in imported.recodes}
    frame = sav[0]
    aware = {row.code: (row.label, row.result, row.count) for row in tables["aware_brand01"].rows}
    counts = _counts(frame, "q1_1")
    assert aware == {
        "1": ("Yes", "yes = 1", counts["1"]),
        "2": ("No", "yes = 0", counts["2"]),
        "98": ("Don't know", "yes = 0 (don't know)", counts["98"]),
    }
    considered = {row.code: row.result for row in tables["consider_brand01"].rows}
    assert considered[None] == "no row (not asked)"
    ages = {row.result: row.count for row in tables["age"].rows}
    years = frame["age_years"]
    assert ages["55+"] == int((years >= 55).sum())
    assert ages["18-24"] == int(years.between(18, 24).sum())
    text = imported.check_text("fieldwork.sav")
    per_market = frame["country"].map({1.0: "DE", 2.0: "FR"}).value_counts()
    assert f"respondents per market: DE {per_market['DE']}, FR {per_market['FR']}" in text
    assert "assoc_brand01: multi, 2 options, brand brand01, base aware_brand01=yes" in text
    assert f"98 (Don't know) -> yes = 0 (don't know): {counts['98']}" in text


def _with(mapping: SurveyMapping, **changes: Any) -> SurveyMapping:
    raw = mapping.model_dump(mode="json")
    for question in raw["questions"]:
        question.update(changes.get(question["id"], {}))
    raw["defaults"].update(changes.get("defaults", {}))
    return SurveyMapping.model_validate(raw)


def test_dont_know_dropped_and_not_asked_codes_leave_no_row(mapping: SurveyMapping) -> None:
    source = read_source(str(EXAMPLES / "fieldwork.sav"))
    dk = int(source.frame["q1_1"].eq("98").sum())
    as_no = build_wave(mapping, source, "m.yaml").answers
    dropped = build_wave(_with(mapping, defaults={"dont_know_as": "drop"}), source, "m.yaml")
    not_asked = build_wave(
        _with(mapping, aware_brand01={"not_asked": [98], "dont_know": []}), source, "m.yaml"
    )
    n_aware = as_no["question_id"].eq("aware_brand01").sum()
    assert dk > 0
    assert dropped.answers["question_id"].eq("aware_brand01").sum() == n_aware - dk
    assert not_asked.answers["question_id"].eq("aware_brand01").sum() == n_aware - dk
    assert not_asked.answers["question_id"].eq("aware_brand02").sum() == n_aware  # default kept


def test_a_wide_csv_and_an_xlsx_import_like_the_sav(mapping: SurveyMapping, tmp_path: Path) -> None:
    source = read_source(str(EXAMPLES / "fieldwork.sav"))
    frame = pyreadstat.read_sav(EXAMPLES / "fieldwork.sav", user_missing=True)[0]
    frame.to_csv(tmp_path / "fieldwork.csv", index=False)
    frame.to_excel(tmp_path / "fieldwork.xlsx", index=False)
    # without SPSS value labels, codes only (the sav's mapping uses the labels Male/Female)
    by_code = mapping.model_dump(mode="json")
    by_code["demographics"]["gender"]["values"] = {"1": "male", "2": "female"}
    plain = SurveyMapping.model_validate(by_code)
    expected = build_wave(mapping, source, "m.yaml")
    for name in ("fieldwork.csv", "fieldwork.xlsx"):
        got = build_wave(plain, read_source(str(tmp_path / name)), "m.yaml")
        pd.testing.assert_frame_equal(got.respondents, expected.respondents)
        pd.testing.assert_frame_equal(got.answers, expected.answers)


def test_yes_and_no_in_the_mapping_stay_text(tmp_path: Path) -> None:
    raw = yaml.safe_load((EXAMPLES / "mapping.yaml").read_text())
    assert raw["profiles"]["category_user"]["values"] == {1: True, 2: False}  # PyYAML's 1.1
    assert load_mapping(EXAMPLES / "mapping.yaml").profiles["category_user"].values == {
        "1": "yes",
        "2": "no",
    }


def test_import_validates_then_writes_the_wave_folder_and_refuses_to_overwrite_it(
    tmp_path: Path,
) -> None:
    for name in ("mapping.yaml", "wave.yaml", "census.csv", "fieldwork.sav"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    mapping, source = str(tmp_path / "mapping.yaml"), str(tmp_path / "fieldwork.sav")
    output = tmp_path / "waves"

    checked = import_survey(mapping, source, WAVE, str(output), check=True)
    assert checked.written is None
    assert not output.exists()
    done = import_survey(mapping, source, WAVE, str(output))

    assert done.written == f"{output}/{WAVE}"
    files = sorted(p.name for p in (output / WAVE).iterdir())
    assert files == ["answers.csv", "poststrat.csv", "questions.csv", "respondents.csv"]
    assert done.prepared.n_respondents == checked.prepared.n_respondents == 300
    assert len(done.prepared.specs) == len(checked.prepared.specs)
    with pytest.raises(ConfigError, match="--replace"):
        import_survey(mapping, source, WAVE, str(output))
    assert import_survey(mapping, source, WAVE, str(output), replace=True).written


def test_a_recoded_level_the_census_lacks_fails_validation_and_writes_nothing(
    tmp_path: Path,
) -> None:
    for name in ("wave.yaml", "census.csv", "fieldwork.sav"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    raw = yaml.load((EXAMPLES / "mapping.yaml").read_text(), Loader=yaml.BaseLoader)
    raw["demographics"]["age"]["bands"] = {"18-54": [18, 54], "55+": [55, 120]}
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputValidationError, match="'18-54' is not a level of the census"):
        import_survey(
            str(tmp_path / "mapping.yaml"),
            str(tmp_path / "fieldwork.sav"),
            WAVE,
            str(tmp_path / "w"),
        )
    assert not (tmp_path / "w").exists()


MAPPING_ERRORS = {
    "overlapping bands": (
        lambda raw: raw["demographics"]["age"].update(bands={"18-34": [18, 34], "30+": [30, 99]}),
        "bands '18-34' and '30+' overlap",
    ),
    "a code both yes and no": (
        lambda raw: raw["questions"][0].update(no=["1", "2"]),
        "question 'aware_brand01': codes ['1'] are both yes and no",
    ),
    "a column and options": (
        lambda raw: raw["questions"][0].update(options={"a": "q3_1_1"}),
        "give column (single choice, with its yes codes) or options",
    ),
    "missing codes of a demographic": (
        lambda raw: raw["demographics"]["gender"].update(missing=["9"]),
        "demographics ['gender'] have missing codes",
    ),
    "a base option the question lacks": (
        lambda raw: raw["questions"][1].update(base="aware_brand01=no"),
        "question 'aware_brand01' has no option 'no' (options: yes)",
    ),
    "a typo in a demographic": (
        lambda raw: raw["demographics"]["region"].update(colum=raw["demographics"]["region"]),
        "unknown key 'demographics.region.colum' (did you mean 'column'?)",
    ),
    "a typo": (
        lambda raw: raw["questions"][0].update(dont_knw=["98"]),
        "unknown key 'questions.0.dont_knw' (did you mean 'dont_know'?)",
    ),
}


@pytest.mark.parametrize("case", list(MAPPING_ERRORS), ids=list(MAPPING_ERRORS))
def test_a_mapping_that_cannot_be_right_is_a_config_error_naming_it(
    case: str, tmp_path: Path
) -> None:
    change, expected = MAPPING_ERRORS[case]
    raw = yaml.load((EXAMPLES / "mapping.yaml").read_text(), Loader=yaml.BaseLoader)
    change(raw)
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as raised:
        load_mapping(path)
    assert expected in str(raised.value)


def test_a_zsav_reads_like_the_sav(tmp_path: Path) -> None:
    frame, meta = pyreadstat.read_sav(EXAMPLES / "fieldwork.sav", user_missing=True)
    pyreadstat.write_sav(
        frame,
        tmp_path / "fieldwork.zsav",
        compress=True,
        column_labels=meta.column_names_to_labels,
        variable_value_labels=meta.variable_value_labels,
    )
    sav = read_source(str(EXAMPLES / "fieldwork.sav"))
    zsav = read_source(str(tmp_path / "fieldwork.zsav"))
    pd.testing.assert_frame_equal(zsav.frame, sav.frame)
    assert zsav.value_labels == sav.value_labels
    assert zsav.variable_labels == sav.variable_labels


def test_a_constant_market_and_a_column_without_recoding_pass_through(
    mapping: SurveyMapping,
) -> None:
    raw = mapping.model_dump(mode="json")
    raw["market"] = "DE"
    raw["profiles"]["category_user"] = {"column": "q10_category"}  # copied as it is
    source = read_source(str(EXAMPLES / "fieldwork.sav"))
    imported = build_wave(SurveyMapping.model_validate(raw), source, "m.yaml")
    assert set(imported.respondents["market"]) == {"DE"}
    assert imported.respondents["category_user"].tolist() == source.frame["q10_category"].tolist()
    assert set(imported.questions["market"]) == {"DE"}
