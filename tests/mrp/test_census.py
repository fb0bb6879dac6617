"""A census given as margins and cross-tables: what IPF recovers, what it refuses, end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mrp.census import CENSUS_FILE, CensusSeed, build_census, tables_of_joint
from misterp.mrp.config import parse_config
from misterp.mrp.records import Manifest
from misterp.mrp.simulate import SimulatedWave
from misterp.mrp.staging import load_staged_wave
from misterp.mrp.validation import InputValidationError, ValidationProblem, read_wave
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from support import PLUMBING, WAVE, no_mcmc_backends, small_simulated_wave, small_wave_config

LEVELS = {
    "gender": ["f", "m"],
    "age": ["18-34", "35-54", "55+", "old"],
    "region": ["east", "north", "west"],
}
DEMOGRAPHICS = tuple(LEVELS)


def _joint_frame(array: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(list(itertools.product(*LEVELS.values())), columns=list(LEVELS))
    frame.insert(0, "market", "DE")
    frame["population"] = array.reshape(-1)
    return frame


def _build(tables: pd.DataFrame, seed: CensusSeed = CensusSeed.UNIFORM) -> pd.DataFrame:
    no_one = pd.DataFrame(columns=["market", *DEMOGRAPHICS])
    built = build_census(
        tables, no_one, DEMOGRAPHICS, source="t", seed=seed, tolerance=1e-12, max_iterations=500
    )
    return built.joint


GIVEN = {"gender_x_age": ["gender", "age"], "region": ["region"]}


def _gender_age() -> np.ndarray:
    return np.array([[0.10, 0.14, 0.12, 0.09], [0.16, 0.13, 0.11, 0.15]])


def test_ipf_recovers_a_joint_with_only_the_interactions_the_tables_give() -> None:
    """Log-linear truth with gender x age and region independent: recovered to 1e-6."""
    truth = 1e6 * _gender_age()[:, :, None] * np.array([0.5, 0.3, 0.2])[None, None, :]
    joint = _joint_frame(truth)

    built = _build(tables_of_joint(joint, GIVEN))

    relative = np.abs(built["population"].to_numpy() / joint["population"].to_numpy() - 1)
    assert relative.max() < 1e-6


def test_ipf_does_not_invent_an_interaction_the_tables_do_not_give() -> None:
    """Region depends on age in the truth; with only gender x age and region it cannot be known.

    Every given table is matched, but the joint is the one where region is independent.
    """
    region_given_age = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.1, 0.2, 0.7]]
    )
    truth = 1e6 * _gender_age()[:, :, None] * region_given_age[None, :, :]
    joint = _joint_frame(truth)
    tables = tables_of_joint(joint, GIVEN)

    built = _build(tables)

    relative = np.abs(built["population"].to_numpy() / joint["population"].to_numpy() - 1)
    assert relative.max() > 0.5
    for name, dims in GIVEN.items():
        given = tables[tables["table"].eq(name)].set_index(dims)["population"].sort_index()
        fitted = built.groupby(dims)["population"].sum().sort_index()
        np.testing.assert_allclose(fitted.to_numpy(), given.to_numpy(), rtol=1e-9)


def test_the_sample_seed_keeps_the_respondents_association() -> None:
    """Where no table gives age x region, a sample seed carries the respondents' association."""
    region_given_age = np.array(
        [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.1, 0.2, 0.7]]
    )
    truth = 1e6 * _gender_age()[:, :, None] * region_given_age[None, :, :]
    joint = _joint_frame(truth)
    respondents = joint.loc[joint.index.repeat(np.rint(truth.reshape(-1) / 500).astype(int))]
    tables = tables_of_joint(joint, GIVEN)
    errors = {}
    for seed in CensusSeed:
        built = build_census(
            tables,
            respondents,
            DEMOGRAPHICS,
            source="t",
            seed=seed,
            tolerance=1e-12,
            max_iterations=500,
        )
        share = built.joint["population"] / built.joint["population"].sum()
        errors[seed] = float(np.abs(share - joint["population"] / joint["population"].sum()).max())
    assert errors[CensusSeed.SAMPLE] < errors[CensusSeed.UNIFORM] / 5


# -- bad input: the file, the column, the rows and the fix ----------------------------------------


def clean_wave() -> dict[str, pd.DataFrame]:
    """Two markets, two demographics; the census as an age x gender table and a gender margin."""
    respondents = pd.DataFrame(
        {
            "respondent_id": ["r1", "r2", "r3", "r4"],
            "market": ["DE", "DE", "FR", "FR"],
            "age": ["18-34", "35+", "18-34", "35+"],
            "gender": ["f", "m", "m", "f"],
        }
    )
    answers = pd.DataFrame(
        {
            "respondent_id": ["r1", "r2", "r3", "r4"],
            "question_id": "aware_brand01",
            "option": "yes",
            "selected": [1, 0, 1, 0],
        }
    )
    cells = list(itertools.product(["DE", "FR"], ["18-34", "35+"], ["f", "m"]))
    joint = pd.DataFrame(cells, columns=["market", "age", "gender"])
    joint["population"] = [100.0, 120.0, 80.0, 90.0, 50.0, 55.0, 60.0, 40.0]
    tables = tables_of_joint(joint, {"age_x_gender": ["age", "gender"], "gender": ["gender"]})
    return {"respondents": respondents, "answers": answers, "census_tables": tables}


def _write(folder: Path, frames: dict[str, pd.DataFrame]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for role, frame in frames.items():
        frame.to_csv(folder / f"{role}.csv", index=False)
    return str(folder)


def _problems(folder: str) -> list[ValidationProblem]:
    with pytest.raises(InputValidationError) as info:
        read_wave(folder, ("age", "gender"))
    return info.value.report.problems


def _only(problems: list[ValidationProblem], column: str | None) -> ValidationProblem:
    found = [p for p in problems if p.file == "census_tables.csv" and p.column == column]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


def _rows(tables: pd.DataFrame, mask: pd.Series) -> list[int]:
    return [int(i) + 2 for i in tables.index[mask]]


def test_a_clean_census_from_tables_is_the_joint(tmp_path: Path) -> None:
    frames = clean_wave()
    wave = read_wave(_write(tmp_path, frames), ("age", "gender"))
    assert wave.census is not None
    assert list(wave.poststrat.columns) == ["market", "age", "gender", "population"]
    assert wave.poststrat["population"].tolist() == pytest.approx(
        [100.0, 120.0, 80.0, 90.0, 50.0, 55.0, 60.0, 40.0]
    )
    assert wave.census.report.max_share_deviation < 1e-6


def test_tables_of_a_market_that_sum_to_different_totals(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    margin = tables["market"].eq("DE") & tables["table"].eq("gender")
    tables.loc[margin, "population"] *= 1.1

    problem = _only(_problems(_write(tmp_path, frames)), "population")

    assert "market DE: its tables sum to different totals" in problem.message
    assert "age_x_gender 390, gender 429" in problem.message
    assert problem.rows == _rows(tables, tables["market"].eq("DE"))
    assert "the same total" in problem.fix


def test_a_level_in_one_table_and_not_another(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    renamed = tables["market"].eq("FR") & tables["table"].eq("gender") & tables["gender"].eq("m")
    tables.loc[renamed, "gender"] = "male"

    problems = _problems(_write(tmp_path, frames))

    messages = [p.message for p in problems if p.column == "gender"]
    assert "market FR: gender 'male' is in table gender but not in age_x_gender" in messages
    assert "market FR: gender 'm' is in table age_x_gender but not in gender" in messages
    problem = next(p for p in problems if "'male'" in p.message)
    assert problem.file == "census_tables.csv"
    assert problem.rows == _rows(tables, renamed)
    assert "use the same levels of gender in every table of market FR" in problem.fix


def test_a_cross_table_that_contradicts_a_margin(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    margin = tables["market"].eq("DE") & tables["table"].eq("gender")
    tables.loc[margin, "population"] = [150.0, 240.0]  # was 180, 210: the same total

    problem = _only(_problems(_write(tmp_path, frames)), "gender")

    assert problem.message == (
        "market DE: tables age_x_gender and gender disagree on gender 'f': 180 in age_x_gender "
        "vs 150 in gender (more than 0.5% of the total 390 apart; 2 levels disagree)"
    )
    assert problem.rows == _rows(tables, tables["market"].eq("DE"))
    assert "age_x_gender summed over its other columns" in problem.fix


def test_a_market_whose_census_tables_are_all_zero(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    tables.loc[tables["market"].eq("FR"), "population"] = 0.0

    problem = _only(_problems(_write(tmp_path, frames)), "population")

    assert problem.message == "market FR: population is 0 in every cell, so nothing can be weighted"
    assert problem.rows == _rows(tables, tables["market"].eq("FR"))
    assert "give the census counts of market FR in census_tables.csv" in problem.fix


def test_a_respondent_level_the_tables_lack(tmp_path: Path) -> None:
    frames = clean_wave()
    frames["respondents"].loc[3, "age"] = "75+"

    problems = _problems(_write(tmp_path, frames))

    problem = next(p for p in problems if p.file == "respondents.csv")
    assert problem.column == "age"
    assert problem.rows == [5]
    assert "is not a level of the census for market FR" in problem.message
    assert "census_tables.csv" in problem.fix


def test_rows_of_a_table_that_fill_other_demographics(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    stray = tables.index[tables["table"].eq("age_x_gender")][1]
    tables.loc[stray, "gender"] = None

    problem = _only(_problems(_write(tmp_path, frames)), "gender")

    assert problem.message == (
        "market DE: table 'age_x_gender' crosses age x gender, but these rows fill age"
    )
    assert problem.rows == [int(stray) + 2]
    assert "fill the same demographics in every row of a table" in problem.fix


def test_a_demographic_no_table_gives(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    frames["census_tables"] = tables[~(tables["market"].eq("DE") & tables["table"].ne("gender"))]

    problems = _problems(_write(tmp_path, frames))

    problem = _only(problems, "age")
    assert problem.message == "market DE: no table gives age (tables: gender (gender))"
    assert "add a table of age for market DE" in problem.fix


def test_duplicate_cells_of_a_table(tmp_path: Path) -> None:
    frames = clean_wave()
    tables = frames["census_tables"]
    frames["census_tables"] = pd.concat([tables, tables.iloc[[0]]], ignore_index=True)

    problem = _only(_problems(_write(tmp_path, frames)), None)

    assert "duplicate cells of a census table" in problem.message
    assert problem.rows == [2, len(tables) + 2]
    assert "sum the population of the duplicates" in problem.fix


def test_both_or_neither_census_file(tmp_path: Path) -> None:
    frames = clean_wave()
    both = frames | {"poststrat": pd.DataFrame({"market": ["DE"], "population": [1.0]})}
    problems = _problems(_write(tmp_path / "both", both))
    assert len(problems) == 1
    assert "both poststrat (the census joint) and census_tables" in problems[0].message

    del frames["census_tables"]
    problems = _problems(_write(tmp_path / "neither", frames))
    assert len(problems) == 1
    assert problems[0].file == "poststrat.{csv,parquet}"
    assert "or census_tables" in problems[0].fix


# -- end to end ---------------------------------------------------------------------------------


def test_a_wave_with_census_tables_runs_and_publishes_its_census(tmp_path: Path) -> None:
    raw = small_wave_config(tmp_path, **PLUMBING)
    folder = tmp_path / "input"
    joint = pd.read_csv(folder / "poststrat.csv", dtype={"population": float})
    given = {"gender_x_age": ["gender", "age"], "education": ["education"], "region": ["region"]}
    tables_of_joint(joint, given).to_csv(folder / "census_tables.csv", index=False)
    (folder / "poststrat.csv").unlink()

    outcome = run_wave_inline(parse_config(raw), backends=no_mcmc_backends())

    store = ResultStore(raw["output"])
    census = store.read_parquet(f"{WAVE}/{CENSUS_FILE}")
    assert len(census) == len(joint)  # every cell of the product of the levels
    for dims in given.values():
        fitted = census.groupby(["market", *dims])["population"].sum()
        truth = joint.groupby(["market", *dims])["population"].sum()
        np.testing.assert_allclose(fitted.sort_index(), truth.sort_index(), rtol=1e-6)
    manifest = Manifest.from_json(store.read_bytes(f"{WAVE}/manifest.json"), "manifest")
    assert manifest.files["census"] == CENSUS_FILE
    assert manifest.census is not None
    assert manifest.census.max_share_deviation < 1e-6
    assert {m.market for m in manifest.census.markets} == {"DE", "FR"}
    assert "## Census built from margins" in store.read_bytes(f"{WAVE}/health.md").decode()
    assert outcome.counts.models == len(manifest.models)
    # a re-run works from the staged joint, never a rebuilt one
    staged = load_staged_wave(store, WAVE)
    assert staged.census is not None
    pd.testing.assert_frame_equal(staged.census.joint, census)


def test_the_simulated_census_can_carry_a_dependence_the_margins_do_not() -> None:
    """The bench's census: the default joint is unchanged; the option ties education to age."""
    plain = small_simulated_wave(seed=4)
    assert small_simulated_wave(seed=4, census_association={}).poststrat.equals(plain.poststrat)
    tied = small_simulated_wave(seed=4, census_association={("age", "education"): -1.0})

    def high_share(wave: SimulatedWave, age: str) -> float:
        census = wave.poststrat
        rows = census[census["age"].eq(age)]
        return float(
            rows.loc[rows["education"].eq("high"), "population"].sum() / rows["population"].sum()
        )

    assert high_share(tied, "18-24") > 2 * high_share(tied, "55+")
    assert abs(high_share(plain, "18-24") / high_share(plain, "55+") - 1) < 0.5
