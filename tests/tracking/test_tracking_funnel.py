"""The funnel, draw-wise: conditional stages multiply, stages asked to everyone are checked."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from misterp.mrp.specs import ModelSpec
from misterp.status import FitStatus
from misterp.tracking.funnel import (
    FUNNEL_COLUMNS,
    funnel_table,
    p_above,
    plan_funnels,
    stage_shares,
)

F = "p(yes, n) ~ 1"
AWARE = ModelSpec("DE", "aware_b1", "yes", F, "b1")
CONSIDER_AMONG_AWARE = ModelSpec("DE", "consider_b1", "yes", F, "b1", "aware_b1", "yes")
CONSIDER_TO_ALL = ModelSpec("DE", "consider_b1", "yes", F, "b1")
ASSOC = ModelSpec("DE", "assoc_b1", "fun", F, "b1", "aware_b1", "yes")

# Exactly representable, so products compare with ==.
AWARE_DRAWS = np.array([0.5, 0.25, 0.75, 0.5])
CONSIDER_DRAWS = np.array([0.5, 0.5, 0.25, 1.0])


def test_a_conditional_stage_is_the_product_of_the_shares_draw_by_draw() -> None:
    shares, conversions = stage_shares([AWARE_DRAWS, CONSIDER_DRAWS], [False, True])
    assert shares[0].tolist() == AWARE_DRAWS.tolist()
    assert shares[1].tolist() == [0.25, 0.125, 0.1875, 0.5]
    assert conversions[1].tolist() == CONSIDER_DRAWS.tolist()
    assert np.isnan(conversions[0]).all()


def test_a_stage_asked_to_everyone_is_its_own_share_and_its_conversion_a_ratio() -> None:
    shares, conversions = stage_shares(
        [AWARE_DRAWS, np.array([0.25, 0.5, 0.0, 0.5])], [False, False]
    )
    assert shares[1].tolist() == [0.25, 0.5, 0.0, 0.5]
    assert conversions[1].tolist() == [0.5, 2.0, 0.0, 1.0]


def test_a_conversion_from_a_zero_share_is_nan() -> None:
    _shares, conversions = stage_shares(
        [np.array([0.0, 0.5]), np.array([0.0, 0.25])], [False, False]
    )
    assert np.isnan(conversions[1][0])
    assert conversions[1][1] == 0.5


def test_the_first_stage_cannot_be_conditional() -> None:
    with pytest.raises(ValueError, match="first stage has no previous stage"):
        stage_shares([AWARE_DRAWS, CONSIDER_DRAWS], [True, True])


def test_p_above_counts_draws_strictly_above_and_leaves_out_nan_draws() -> None:
    assert p_above(np.array([0.5, 0.25, np.nan, 0.5]), np.array([0.25, 0.5, 0.1, 0.5])) == 1 / 3
    assert np.isnan(p_above(np.array([np.nan]), np.array([0.5])))


def test_funnels_follow_yes_to_yes_bases_and_leave_associations_out() -> None:
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE, ASSOC])
    assert len(funnels) == 1
    assert (funnels[0].market, funnels[0].brand, funnels[0].name) == (
        "DE",
        "b1",
        "aware > consider",
    )
    assert [(s.key, s.conditional) for s in funnels[0].stages] == [
        ("DE/aware_b1/yes", False),
        ("DE/consider_b1/yes", True),
    ]


def test_stages_asked_to_everyone_form_a_funnel_only_when_configured() -> None:
    assert plan_funnels([AWARE, CONSIDER_TO_ALL, ASSOC]) == []
    funnels = plan_funnels([AWARE, CONSIDER_TO_ALL, ASSOC], ["aware", "consider"])
    assert [(s.name, s.conditional) for s in funnels[0].stages] == [
        ("aware", False),
        ("consider", False),
    ]


def test_a_configured_funnel_is_planned_per_brand_and_skips_a_stage_a_brand_lacks() -> None:
    b2 = [
        ModelSpec("DE", "aware_b2", "yes", F, "b2"),
        ModelSpec("DE", "use_b2", "yes", F, "b2", "aware_b2", "yes"),
    ]
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE, *b2], ["aware", "consider", "use"])
    assert [(f.brand, f.name, [s.conditional for s in f.stages]) for f in funnels] == [
        ("b1", "aware > consider", [False, True]),
        ("b2", "aware > use", [False, True]),
    ]


def test_a_configured_stage_asked_among_another_base_ends_the_funnel_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefer = ModelSpec("DE", "prefer_b1", "yes", F, "b1", "aware_b1", "yes")
    with caplog.at_level(logging.WARNING, logger="misterp.tracking.funnel"):
        funnels = plan_funnels([AWARE, CONSIDER_TO_ALL, prefer], ["aware", "consider", "prefer"])
    assert [f.name for f in funnels] == ["aware > consider"]
    assert "stops before prefer_b1: it is asked among DE/aware_b1/yes" in caplog.text


def _draws(consider: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    return {
        "DE/aware_b1/yes": {"all": AWARE_DRAWS, "men_55": AWARE_DRAWS / 8},
        "DE/consider_b1/yes": {"all": consider, "men_55": consider / 8},
    }


def test_funnel_table_from_conditional_draws_is_coherent_by_construction() -> None:
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE])
    table = funnel_table("2026-10", funnels, _draws(CONSIDER_DRAWS), interval=0.9)
    assert list(table.columns) == list(FUNNEL_COLUMNS)
    assert len(table) == 4  # 2 groups x 2 stages
    row = table.query("target_group == 'all' and stage == 2").iloc[0]
    assert row["share_mean"] == np.mean([0.25, 0.125, 0.1875, 0.5])
    assert row["conversion_mean"] == np.mean(CONSIDER_DRAWS)
    assert row["p_above_previous"] == 0.0
    assert bool(row["conditional"])
    assert table["coherent"].all()
    first = table.query("stage == 1")
    assert first["p_above_previous"].isna().all()
    assert first["conversion_mean"].isna().all()


def test_funnel_table_flags_a_stage_asked_to_everyone_that_comes_out_above_the_earlier_one() -> (
    None
):
    # consider above aware in 3 of 4 draws: P = 0.75 > 0.5 -> not coherent, not hidden
    consider = np.array([0.625, 0.5, 0.875, 0.25])
    funnels = plan_funnels([AWARE, CONSIDER_TO_ALL], ["aware", "consider"])
    table = funnel_table("2026-10", funnels, _draws(consider))
    row = table.query("target_group == 'all' and stage == 2").iloc[0]
    assert row["p_above_previous"] == 0.75
    assert not row["coherent"]
    assert not row["conditional"]
    assert row["share_mean"] == np.mean(consider)
    assert row["conversion_mean"] == np.mean([1.25, 2.0, 7 / 6, 0.5])


def test_funnel_table_lower_and_upper_are_the_configured_interval_of_the_share() -> None:
    rng = np.random.default_rng(20250601)
    aware, consider = rng.uniform(0.4, 0.6, 400), rng.uniform(0.2, 0.4, 400)
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE])
    draws = {"DE/aware_b1/yes": {"all": aware}, "DE/consider_b1/yes": {"all": consider}}
    row = funnel_table("w", funnels, draws, interval=0.95).query("stage == 2").iloc[0]
    assert row["interval"] == 0.95
    assert row["share_lower"] == np.quantile(aware * consider, 0.025)
    assert row["share_upper"] == np.quantile(aware * consider, 0.975)
    assert row["conversion_lower"] == np.quantile(consider, 0.025)


def test_a_funnel_whose_second_stage_has_no_draws_gives_no_rows() -> None:
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE])
    draws = {"DE/aware_b1/yes": {"all": AWARE_DRAWS}}  # consider failed: nothing published
    table = funnel_table("2026-10", funnels, draws)
    assert table.empty
    assert list(table.columns) == list(FUNNEL_COLUMNS)


def test_a_stage_carries_the_worst_status_of_the_stages_its_share_uses() -> None:
    funnels = plan_funnels([AWARE, CONSIDER_AMONG_AWARE])
    statuses = {"DE/aware_b1/yes": FitStatus.NOT_CONVERGED}
    table = funnel_table("2026-10", funnels, _draws(CONSIDER_DRAWS), statuses=statuses)
    assert set(table["status"]) == {"not_converged"}  # stage 2's share uses stage 1's draws
    statuses = {"DE/aware_b1/yes": FitStatus.CONVERGED, "DE/consider_b1/yes": FitStatus.FAILED}
    table = funnel_table("2026-10", funnels, _draws(CONSIDER_DRAWS), statuses=statuses)
    assert table.groupby("stage")["status"].agg(set).to_dict() == {
        1: {"converged"},
        2: {"failed"},
    }
