"""A simulated profile variable (category users): exact audience truth, opt-in, ignorable panel.

The accuracy bench and the demo score audiences against this truth, so it must be exact: the
truth of an audience is the population-weighted share over census cells x profile levels with
N_c x P(level | c), and a very large panel, reweighted to the census by cell only, must land on
it (the panel's selection is ignorable given the cell and the profile).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from misterp.mrp.simulate import (
    ProfileTruth,
    SimulatedWave,
    TrueChange,
    WaveTruthSpec,
    simulate_wave,
    simulate_waves,
)

SEED = 20261201
SMALL: dict[str, Any] = {
    "markets": ("DE",),
    "brands": ("brand01",),
    "rare_brand": None,
    "n_respondents": 300,
}
KEYS = ["market", "question_id", "option", "target_group"]


@pytest.fixture(scope="module")
def waves() -> tuple[SimulatedWave, SimulatedWave]:
    off = simulate_wave(SEED, WaveTruthSpec(**SMALL))
    on = simulate_wave(SEED, WaveTruthSpec(**SMALL, profile=ProfileTruth()))
    return off, on


def test_the_profile_draws_from_its_own_streams(
    waves: tuple[SimulatedWave, SimulatedWave],
) -> None:
    off, on = waves
    # same census, same people in the same cells; only their profile and answers are new
    pd.testing.assert_frame_equal(on.poststrat, off.poststrat)
    pd.testing.assert_frame_equal(on.respondents.drop(columns="category_user"), off.respondents)
    pd.testing.assert_frame_equal(on.questions, off.questions)
    assert set(on.respondents["category_user"]) == {"no", "yes"}
    assert off.profiles == ()
    assert on.profiles == ("category_user",)
    # the whole population's shares are kept: the items' intercepts are solved again
    both = on.truth.merge(off.truth, on=KEYS, suffixes=("", "_off"))
    whole = both[both["target_group"] == "all"]
    assert whole["true_value"].to_numpy() == pytest.approx(whole["true_value_off"], abs=1e-9)
    assert "profiles" not in off.config("in", "out")
    assert on.config("in", "out")["profiles"] == ["category_user"]


def test_users_are_more_aware_and_considering_in_every_cell(
    waves: tuple[SimulatedWave, SimulatedWave],
) -> None:
    _, on = waves
    ct = on.cell_truth
    for question in ("aware_brand01", "consider_brand01"):
        p = ct[ct["question_id"] == question].pivot_table(
            index=list(on.demographics), columns="category_user", values="p_true"
        )
        assert (p["yes"] > p["no"]).all()


def test_audience_truth_is_the_population_weighted_share_over_cells_and_levels(
    waves: tuple[SimulatedWave, SimulatedWave],
) -> None:
    """Recompute the truth by hand from cell_truth and the users per cell."""
    _, on = waves
    size = on.audience_truth.set_index("target_group")["true_share"]
    assert size["all"] == pytest.approx(1.0)
    assert size["category_users"] == pytest.approx(ProfileTruth().share, abs=1e-9)
    # census group shares are the census's
    census = on.poststrat
    young = census["age"].isin(["18-24", "25-34"])
    women = census["gender"].eq("female")
    share = census.loc[young & women, "population"].sum() / census["population"].sum()
    assert size["women_18_34"] == pytest.approx(share)
    assert 0 < size["category_users_18_34"] < size["category_users"]

    # by hand: users' weights N_c x P(yes | c), each cell's users' probabilities
    population = on.truth_population
    demos = list(on.demographics)
    per_cell = population.groupby(demos)["population"].sum().reset_index()
    pd.testing.assert_frame_equal(
        per_cell, census.groupby(demos)["population"].sum().astype(float).reset_index()
    )
    ct = on.cell_truth
    users = population[population["category_user"] == "yes"]
    for question in ("aware_brand01", "consider_brand01"):
        users = users.merge(
            ct.loc[ct["question_id"] == question, [*demos, "category_user", "p_true"]].rename(
                columns={"p_true": question}
            ),
            on=[*demos, "category_user"],
        )
    weight = users["population"]
    base = weight * users["aware_brand01"]
    truth = on.truth.set_index(["question_id", "target_group"])["true_value"]
    assert truth["aware_brand01", "category_users"] == pytest.approx(
        base.sum() / weight.sum(), abs=1e-12
    )
    assert truth["consider_brand01", "category_users"] == pytest.approx(
        (base * users["consider_brand01"]).sum() / base.sum(), abs=1e-12
    )
    assert weight.sum() / census["population"].sum() == pytest.approx(size["category_users"])


def test_a_large_panel_reweighted_by_cell_lands_on_the_audience_truth() -> None:
    """Selection is ignorable given the cell and the profile: cell weights alone recover it."""
    spec = WaveTruthSpec(**(SMALL | {"n_respondents": 150_000}), profile=ProfileTruth())
    wave = simulate_wave(SEED, spec)
    demos = list(wave.demographics)
    people = wave.respondents.merge(wave.poststrat, on=["market", *demos])
    per_cell = people.groupby(demos)["respondent_id"].transform("size")
    people["weight"] = people["population"] / per_cell
    users = people[people["category_user"] == "yes"]
    size = wave.audience_truth.set_index("target_group")["true_share"]
    # ~1,000 respondents per cell: Monte Carlo error about 0.003 on the shares below
    assert users["weight"].sum() / people["weight"].sum() == pytest.approx(
        size["category_users"], abs=0.01
    )
    aware = wave.answers[wave.answers["question_id"] == "aware_brand01"]
    users = users.merge(aware, on="respondent_id")
    estimate = (users["weight"] * users["selected"]).sum() / users["weight"].sum()
    truth = wave.truth.set_index(["question_id", "target_group"])["true_value"]
    assert estimate == pytest.approx(truth["aware_brand01", "category_users"], abs=0.01)
    # while the panel's own users are off (young and educated over-recruited)
    raw = users["selected"].mean()
    assert abs(raw - truth["aware_brand01", "category_users"]) > 0.02


def test_a_change_in_an_audience_is_exactly_the_declared_one() -> None:
    spec = WaveTruthSpec(**SMALL, profile=ProfileTruth())
    change = TrueChange("consider_brand01", "yes", "category_users", -0.05, "w2")
    series = simulate_waves(SEED, spec, ["w1", "w2"], [change])
    declared = series.true_changes[series.true_changes["declared"]]
    assert declared["true_change"].tolist() == pytest.approx([-0.05], abs=1e-9)
    first = simulate_wave(SEED, spec)
    pd.testing.assert_frame_equal(series.waves["w1"].truth, first.truth)
    pd.testing.assert_frame_equal(series.waves["w1"].respondents, first.respondents)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": ProfileTruth(name="age")}, "also a demographic"),
        (
            {"profile": ProfileTruth(audiences={"women_18_34": {"category_user": ["yes"]}})},
            "also target groups",
        ),
        (
            {"profile": ProfileTruth(audiences={"fans": {"category_user": ["yse"]}})},
            "unknown 'category_user' levels",
        ),
        ({"target_groups": {"fans": {"category_user": ["yes"]}}}, "unknown 'category_user'"),
    ],
)
def test_unusable_profiles_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WaveTruthSpec(**kwargs)
