"""Brands against each other, draw-wise: ranks, P(rank 1), expected rank, share of the total."""

from __future__ import annotations

import numpy as np
import pytest

from misterp.mrp.specs import ModelSpec
from misterp.status import FitStatus
from misterp.tracking.competitors import (
    COMPETITOR_COLUMNS,
    competitor_table,
    rank_draws,
    rank_probabilities,
    share_of_total,
)

F = "p(yes, n) ~ 1"

# Three brands, four paired draws (rows); b1 leads in draws 0, 1, 3, b2 in draw 2.
VALUES = np.array(
    [
        [0.5, 0.25, 0.125],
        [0.5, 0.375, 0.125],
        [0.25, 0.5, 0.125],
        [0.75, 0.5, 0.25],
    ]
)


def test_rank_draws_ranks_the_highest_value_first_in_each_draw() -> None:
    assert rank_draws(VALUES).tolist() == [[1, 2, 3], [1, 2, 3], [2, 1, 3], [1, 2, 3]]


def test_rank_probabilities_of_known_ranks() -> None:
    p = rank_probabilities(rank_draws(VALUES))
    assert p.tolist() == [[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]]
    # each brand has one rank per draw, and each rank one brand (no ties here)
    assert p.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    assert p.sum(axis=0).tolist() == [1.0, 1.0, 1.0]


def test_tied_brands_share_the_better_rank() -> None:
    assert rank_draws(np.array([[0.5, 0.5, 0.25]])).tolist() == [[1, 1, 3]]


def test_share_of_total_sums_to_one_in_every_draw() -> None:
    rng = np.random.default_rng(20250601)
    shares = share_of_total(rng.uniform(0.01, 0.9, size=(500, 5)))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert share_of_total(VALUES)[0].tolist() == [0.5 / 0.875, 0.25 / 0.875, 0.125 / 0.875]


def test_share_of_total_is_nan_where_every_brand_is_zero() -> None:
    assert np.isnan(share_of_total(np.zeros((1, 3)))).all()


def _specs(family: str, option: str = "yes") -> list[ModelSpec]:
    return [ModelSpec("DE", f"{family}_b{i}", option, F, f"b{i}") for i in (1, 2, 3)]


def _draws(specs: list[ModelSpec], values: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    return {s.key: {"all": values[:, i], "women": values[:, i] / 2} for i, s in enumerate(specs)}


def test_competitor_table_per_family_and_group_with_known_ranks() -> None:
    specs = _specs("aware")
    table = competitor_table("2026-10", specs, _draws(specs, VALUES), interval=0.9)
    assert list(table.columns) == list(COMPETITOR_COLUMNS)
    assert len(table) == 6  # 3 brands x 2 groups
    rows = table.query("target_group == 'all'").set_index("brand")
    assert rows["p_rank_1"].to_dict() == {"b1": 0.75, "b2": 0.25, "b3": 0.0}
    assert rows["expected_rank"].to_dict() == {"b1": 1.25, "b2": 1.75, "b3": 3.0}
    assert rows.loc["b1", "p_rank"] == [0.75, 0.25, 0.0]
    assert set(table["family"]) == {"aware"}
    assert set(table["n_brands"]) == {3}
    assert rows.loc["b2", "mean"] == np.mean(VALUES[:, 1])
    # halving every brand changes no rank and no share
    women = table.query("target_group == 'women'").set_index("brand")
    assert women["p_rank_1"].to_dict() == rows["p_rank_1"].to_dict()
    assert women["share_of_total_mean"].to_numpy() == pytest.approx(
        rows["share_of_total_mean"].to_numpy(), abs=1e-15
    )


def test_the_mean_shares_of_awareness_sum_to_one() -> None:
    specs = _specs("aware")
    table = competitor_table("2026-10", specs, _draws(specs, VALUES))
    totals = table.groupby("target_group")["share_of_total_mean"].sum()
    np.testing.assert_allclose(totals.to_numpy(), 1.0, rtol=0, atol=1e-12)


def test_families_are_compared_separately_and_association_options_separately() -> None:
    aware, fun, cheap = _specs("aware"), _specs("assoc", "fun"), _specs("assoc", "cheap")
    draws = _draws(aware, VALUES) | _draws(fun, VALUES[:, ::-1]) | _draws(cheap, VALUES)
    table = competitor_table("2026-10", [*aware, *fun, *cheap], draws)
    assert sorted(set(zip(table["family"], table["option"], strict=True))) == [
        ("assoc", "cheap"),
        ("assoc", "fun"),
        ("aware", "yes"),
    ]
    leader = table.query("family == 'assoc' and option == 'fun' and target_group == 'all'")
    assert leader.set_index("brand")["p_rank_1"].to_dict() == {"b1": 0.0, "b2": 0.25, "b3": 0.75}


def test_a_brand_without_draws_is_left_out_and_a_lone_brand_is_not_ranked() -> None:
    specs = _specs("aware")
    draws = _draws(specs, VALUES)
    del draws[specs[2].key]  # b3 failed
    table = competitor_table("2026-10", specs, draws)
    assert set(table["brand"]) == {"b1", "b2"}
    assert set(table["n_brands"]) == {2}
    del draws[specs[1].key]
    assert competitor_table("2026-10", specs, draws).empty


def test_questions_without_a_brand_are_not_compared() -> None:
    specs = [ModelSpec("DE", "nps", "yes", F), ModelSpec("DE", "age_check", "yes", F)]
    draws = {s.key: {"all": VALUES[:, 0]} for s in specs}
    assert competitor_table("2026-10", specs, draws).empty


def test_draws_where_a_brand_is_nan_are_left_out_of_the_ranking() -> None:
    specs = _specs("aware")
    values = np.vstack([VALUES, [np.nan, 0.5, 0.25]])
    table = competitor_table("2026-10", specs, _draws(specs, values))
    rows = table.query("target_group == 'all'").set_index("brand")
    assert rows["p_rank_1"].to_dict() == {"b1": 0.75, "b2": 0.25, "b3": 0.0}


def test_every_brand_of_a_family_is_flagged_when_one_brand_did_not_converge() -> None:
    specs = _specs("aware")
    statuses = {specs[1].key: FitStatus.NOT_CONVERGED}
    table = competitor_table("2026-10", specs, _draws(specs, VALUES), statuses=statuses)
    assert set(table["status"]) == {"not_converged"}
    assert set(competitor_table("2026-10", specs, _draws(specs, VALUES))["status"]) == {"converged"}
