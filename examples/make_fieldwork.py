"""Write examples/fieldwork.sav and examples/census.csv: a survey export as fieldwork delivers it.

A small simulated wave (misterp.mrp.simulate: 2 markets, 2 brands, 150 respondents each, a
category-user profile) is turned back into what an SPSS export looks like: one row per
respondent, codes with value labels, question texts as variable labels, ages in years, "don't
know" as 98 and "prefer not to say" as 99 (declared user-missing, as SPSS files do), blank
where a question was not asked. ``misterp import`` with examples/mapping.yaml turns it into
the wave the simulation started from. Run from the repository root:

    .venv/bin/python examples/make_fieldwork.py

The committed files are its output (seed 2026); tests/mrp/test_survey_import.py checks that
they still match it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from misterp.mrp.simulate import ProfileTruth, SimulatedWave, WaveTruthSpec, simulate_wave

HERE = Path(__file__).resolve().parent
SEED = 2026
BRANDS = ("brand01", "brand02")
OPTIONS = ("innovative", "trusted")
MARKET_CODES = {"DE": 1, "FR": 2}
GENDER_CODES = {"male": 1, "female": 2}
EDUCATION_CODES = {"low": 1, "medium": 2, "high": 3}
REGION_CODES = {"north": 1, "east": 2, "south": 3, "west": 4, "central": 5}
AGE_YEARS = {"18-24": (18, 24), "25-34": (25, 34), "35-44": (35, 44), "45-54": (45, 54)}
OLDEST = (55, 79)
DONT_KNOW, NO_ANSWER = 98, 99


def simulated() -> SimulatedWave:
    """The wave the export is made from."""
    spec = WaveTruthSpec(
        markets=tuple(MARKET_CODES),
        brands=BRANDS,
        n_respondents=150,
        rare_brand=None,
        association_options=OPTIONS,
        profile=ProfileTruth(audiences={"category_users": {"category_user": ["yes"]}}),
    )
    return simulate_wave(SEED, spec)


def fieldwork(wave: SimulatedWave, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """The wide export and its SPSS metadata (variable labels, value labels, missing codes)."""
    people = wave.respondents.reset_index(drop=True)
    n = len(people)
    ages = [rng.integers(*AGE_YEARS.get(band, OLDEST), endpoint=True) for band in people["age"]]
    profile = people["category_user"].map({"yes": 1.0, "no": 2.0})
    profile[rng.random(n) < 0.04] = NO_ANSWER  # a few "prefer not to say"
    frame = pd.DataFrame(
        {
            "resp_id": [f"R{i:05d}" for i in range(1, n + 1)],
            "country": people["market"].map(MARKET_CODES).astype(float),
            "sex": people["gender"].map(GENDER_CODES).astype(float),
            "age_years": np.array(ages, dtype=float),
            "educ": people["education"].map(EDUCATION_CODES).astype(float),
            "region": people["region"].map(REGION_CODES).astype(float),
            "q10_category": profile.astype(float),
        }
    )
    labels = {
        "resp_id": "Respondent ID",
        "country": "Country of interview",
        "sex": "Gender",
        "age_years": "Age in years",
        "educ": "Highest education",
        "region": "Region",
        "q10_category": "Q10 Have you bought in this category in the last 12 months?",
    }
    values = {
        "country": {1: "Germany", 2: "France"},
        "sex": {1: "Male", 2: "Female"},
        "educ": {1: "Lower secondary or less", 2: "Upper secondary", 3: "Tertiary"},
        "region": {code: name.title() for name, code in REGION_CODES.items()},
        "q10_category": {1: "Yes", 2: "No", NO_ANSWER: "Prefer not to say"},
    }
    answers = wave.answers.pivot_table(
        index="respondent_id", columns=["question_id", "option"], values="selected"
    )
    answers = answers.reindex(people["respondent_id"]).reset_index(drop=True)
    for i, brand in enumerate(BRANDS, start=1):
        aware = answers[(f"aware_{brand}", "yes")]
        # "no" answers: a few said "don't know" (98); the mapping counts them as not aware
        aware_codes = aware.map({1.0: 1.0, 0.0: 2.0})
        aware_codes[(aware == 0) & (rng.random(n) < 0.08)] = DONT_KNOW
        frame[f"q1_{i}"] = aware_codes
        labels[f"q1_{i}"] = f"Q1_{i} Have you heard of {brand}?"
        values[f"q1_{i}"] = {1: "Yes", 2: "No", DONT_KNOW: "Don't know"}
        consider = answers[(f"consider_{brand}", "yes")]  # blank: not aware, so not asked
        frame[f"q2_{i}"] = consider.map({1.0: 1.0, 0.0: 2.0})
        labels[f"q2_{i}"] = f"Q2_{i} Would you consider {brand}?"
        values[f"q2_{i}"] = {1: "Yes", 2: "No"}
        for j, option in enumerate(OPTIONS, start=1):
            column = f"q3_{i}_{j}"
            frame[column] = answers[(f"assoc_{brand}", option)]
            labels[column] = f"Q3_{i} Which words describe {brand}? - {option}"
    meta = {
        "column_labels": labels,
        "variable_value_labels": values,
        "missing_ranges": {
            "q10_category": [NO_ANSWER],
            **{f"q1_{i}": [DONT_KNOW] for i in range(1, len(BRANDS) + 1)},
        },
    }
    return frame, meta


def main(folder: Path = HERE) -> None:
    """Write fieldwork.sav and census.csv into ``folder``."""
    wave = simulated()
    frame, meta = fieldwork(wave, np.random.default_rng(SEED))
    pyreadstat.write_sav(frame, folder / "fieldwork.sav", **meta)
    wave.poststrat.to_csv(folder / "census.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
