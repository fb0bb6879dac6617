"""The demo tracker's plan of true changes and its scoring against them (no fitting)."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import flows.demo
from flows.demo import (
    DEMO_AUDIENCE,
    DEMO_PROFILE,
    ChangeScore,
    audience_table,
    demo_wave_ids,
    plan_demo_changes,
    score_changes,
    summarise_scores,
)
from misterp.mrp.simulate import (
    ProfileTruth,
    TrueChange,
    WaveTruthSpec,
    simulate_wave,
    simulate_waves,
)

KEYS = ["wave", "market", "question_id", "option", "target_group"]


def test_the_examples_in_the_module_run() -> None:
    assert doctest.testmod(flows.demo).failed == 0


def test_demo_waves_are_consecutive_months_across_a_year_end() -> None:
    assert demo_wave_ids(4, "2026-11") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert demo_wave_ids(1) == ["2026-09"]


def test_demo_needs_at_least_one_wave() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        demo_wave_ids(0)


def _truth(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(m, q, "yes", g, v) for m, q, g, v in rows],
        columns=["market", "question_id", "option", "target_group", "true_value"],
    )


def test_planned_changes_move_each_market_towards_one_half() -> None:
    base = _truth(
        [
            ("DE", "aware_b1", "women_18_34", 0.75),
            ("FR", "aware_b1", "women_18_34", 0.25),
            ("DE", "consider_b2", "all", 0.125),
            ("FR", "consider_b2", "all", 0.5),
        ]
    )
    changes = plan_demo_changes(base, ["b1", "b2"], "2026-11")
    assert changes == [
        TrueChange("aware_b1", "yes", "women_18_34", -0.15, "2026-11", market="DE"),
        TrueChange("aware_b1", "yes", "women_18_34", 0.15, "2026-11", market="FR"),
        TrueChange("consider_b2", "yes", "all", 0.08, "2026-11", market="DE"),
        TrueChange("consider_b2", "yes", "all", -0.08, "2026-11", market="FR"),
    ]


def test_a_change_naming_a_brand_the_demo_lacks_is_left_out() -> None:
    base = _truth([("DE", "aware_b1", "women_18_34", 0.5)])
    assert [c.question_id for c in plan_demo_changes(base, ["b1"], "2026-10")] == ["aware_b1"]


@pytest.mark.parametrize("profile", [None, DEMO_PROFILE], ids=["census", "category_users"])
def test_planned_changes_are_the_true_changes_of_the_simulated_last_wave(
    profile: ProfileTruth | None,
) -> None:
    """With the demo's profile too: its changes are solved over census cells x user levels."""
    spec = WaveTruthSpec(
        markets=("DE", "FR"),
        brands=("brand01", "brand02"),
        n_respondents=50,
        association_options=("innovative",),
        rare_brand="brand02",
        profile=profile,
    )
    waves = demo_wave_ids(3)
    planned = plan_demo_changes(simulate_wave(7, spec).truth, spec.brands, waves[-1])
    series = simulate_waves(7, spec, waves, planned)
    declared = series.true_changes[series.true_changes["declared"]]
    assert len(declared) == len(planned) == 4
    assert set(declared["wave"]) == {waves[-1]}
    by_key = {(c.market, c.question_id, c.target_group): c.delta for c in planned}
    for row in declared.itertuples():
        # exact up to the bisection that solves the logit shift (60 halvings of [-20, 20])
        assert row.true_change == pytest.approx(
            by_key[row.market, row.question_id, row.target_group], abs=1e-9
        )


def test_the_demo_audience_has_a_truth_for_every_estimate_and_a_size() -> None:
    """What the demo prints beside its audience's estimates: a truth row for each, and a size."""
    wave = simulate_wave(7, WaveTruthSpec(markets=("DE",), n_respondents=50, profile=DEMO_PROFILE))
    assert wave.config("in", "out")["target_groups"][DEMO_AUDIENCE] == {"category_user": ["yes"]}
    truth = wave.truth[wave.truth["target_group"] == DEMO_AUDIENCE]
    estimates = truth.drop(columns="true_value").assign(
        mean=0.5, q05=0.0, q95=1.0, lower=0.0, upper=1.0, raked_mean=0.5, raw_mean=0.5, n=10
    )
    table = audience_table(estimates, wave.truth, DEMO_AUDIENCE)
    assert len(table) == len(truth) > 0
    assert table["true_value"].notna().all()
    assert table["covered"].all()
    size = wave.audience_truth.set_index("target_group")["true_share"]
    assert size[DEMO_AUDIENCE] == pytest.approx(DEMO_PROFILE.share)


def _changes(rows: list[tuple[str, str, str, float, float, float, str, bool, str]]) -> pd.DataFrame:
    """Rows of changes.parquet: wave, question, reference, mean, lower, upper, flag, comparable."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "wave",
            "question_id",
            "reference",
            "mean",
            "lower",
            "upper",
            "flag",
            "comparable",
            "reference_waves",
        ],
    )
    frame["market"] = "DE"
    frame["option"] = "yes"
    frame["target_group"] = "all"
    frame["p_up"] = np.where(frame["flag"] == "up", 0.99, 0.5)
    frame["p_down"] = 1 - frame["p_up"]
    return frame


def _true(rows: list[tuple[str, str, float, bool]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["wave", "question_id", "true_change", "declared"])
    frame["market"] = "DE"
    frame["option"] = "yes"
    frame["target_group"] = "all"
    frame["reference_wave"] = frame["wave"].map({"2026-10": "2026-09", "2026-11": "2026-10"})
    return frame


def test_scoring_joins_previous_wave_changes_with_their_truth() -> None:
    changes = _changes(
        [
            # declared +0.125, flagged up, interval holds it
            ("2026-11", "aware_b1", "previous", 0.125, 0.0625, 0.1875, "up", True, "2026-10"),
            # unchanged, flagged down: a false alarm whose interval misses 0
            ("2026-11", "aware_b2", "previous", -0.0625, -0.125, -0.03125, "down", True, "2026-10"),
            # unchanged and steady
            ("2026-11", "consider_b1", "previous", 0.0, -0.0625, 0.0625, "steady", True, "2026-10"),
            # induced by a change elsewhere, steady, interval holds it
            (
                "2026-11",
                "consider_b2",
                "previous",
                0.03125,
                -0.03125,
                0.0625,
                "steady",
                True,
                "2026-10",
            ),
            # not the previous-wave reference, or not comparable: not scored
            ("2026-11", "aware_b1", "rolling", 0.5, 0.25, 0.75, "up", True, "2026-09,2026-10"),
            ("2026-10", "aware_b1", "previous", 0.5, 0.25, 0.75, "up", False, "2026-09"),
        ]
    )
    truth = _true(
        [
            ("2026-11", "aware_b1", 0.125, True),
            ("2026-11", "aware_b2", 0.0, False),
            ("2026-11", "consider_b1", 0.0, False),
            ("2026-11", "consider_b2", 0.015625, False),
            ("2026-10", "aware_b1", 0.0, False),
        ]
    )
    scored = score_changes(changes, truth)
    assert scored[["question_id", "kind", "covered"]].to_dict("records") == [
        {"question_id": "aware_b1", "kind": "declared", "covered": True},
        {"question_id": "aware_b2", "kind": "unchanged", "covered": False},
        {"question_id": "consider_b1", "kind": "unchanged", "covered": True},
        {"question_id": "consider_b2", "kind": "induced", "covered": True},
    ]
    score = summarise_scores(scored)
    assert score == ChangeScore(
        n_declared=1, n_detected=1, n_unchanged=2, n_false_alarms=1, n_compared=4, n_covered=3
    )
    assert score.line() == (
        "true changes flagged 1 of 1; false alarms 1 of 2 unchanged estimates; "
        "90% change intervals cover the true change in 75% of 4"
    )


def test_a_declared_change_flagged_the_wrong_way_is_not_detected() -> None:
    scored = pd.DataFrame(
        {"kind": ["declared"], "true_change": [-0.0625], "flag": ["up"], "covered": [False]}
    )
    assert summarise_scores(scored).n_detected == 0


def test_a_change_compared_with_another_wave_than_the_truths_reference_is_not_scored() -> None:
    # After a failed wave, "previous" is an earlier wave than the truth's reference.
    changes = _changes(
        [("2026-11", "aware_b1", "previous", 0.0, -0.0625, 0.0625, "steady", True, "2026-09")]
    )
    truth = _true([("2026-11", "aware_b1", 0.0, False)])
    assert score_changes(changes, truth).empty
