"""Poststratification draw by draw, against sums worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from misterp.mrp.poststratify import (
    SUMMARY_COLUMNS,
    draws_by_group,
    draws_frame,
    interval_quantiles,
    poststratify,
    summarise,
)

ALL2 = {"all": np.array([True, True])}


def test_two_cells_one_draw_weights_by_population() -> None:
    out = poststratify(np.array([[0.5, 1.0]]), np.array([3.0, 1.0]), ALL2)
    assert out["all"].tolist() == pytest.approx([0.625])  # (1.5 + 1.0) / 4


def test_three_cells_several_draws_for_whole_population_and_a_group() -> None:
    draws = np.array([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [1.0, 0.0, 0.0]])
    population = np.array([1.0, 2.0, 3.0])
    masks = {"all": np.array([True, True, True]), "g": np.array([False, True, True])}
    out = poststratify(draws, population, masks)
    # all: (0.1 + 0.4 + 0.9) / 6, 3 / 6, 1 / 6; g: (0.4 + 0.9) / 5, 2.5 / 5, 0 / 5
    assert out["all"].tolist() == pytest.approx([1.4 / 6, 0.5, 1 / 6])
    assert out["g"].tolist() == pytest.approx([0.26, 0.5, 0.0])


def test_base_weighting_uses_population_times_base_probability_per_draw() -> None:
    draws = np.array([[0.5, 1.0], [0.2, 0.4]])
    base = np.array([[0.5, 1.0], [1.0, 0.0]])
    out = poststratify(draws, np.array([3.0, 1.0]), ALL2, base)
    # draw 0: weights 1.5, 1.0 -> (0.75 + 1.0) / 2.5; draw 1: weights 3, 0 -> 0.6 / 3
    assert out["all"].tolist() == pytest.approx([0.7, 0.2])


def test_base_of_zero_in_every_cell_gives_nan_for_that_draw() -> None:
    draws = np.array([[0.5, 1.0], [0.5, 1.0]])
    base = np.array([[0.0, 0.0], [1.0, 1.0]])
    out = poststratify(draws, np.array([3.0, 1.0]), ALL2, base)
    assert math.isnan(out["all"][0])
    assert out["all"][1] == pytest.approx(0.625)


def test_group_with_zero_population_gives_nan_in_every_draw() -> None:
    draws = np.array([[0.2, 0.8], [0.3, 0.7]])
    masks = {"all": np.array([True, True]), "empty": np.array([True, False])}
    out = poststratify(draws, np.array([0.0, 2.0]), masks)
    assert np.isnan(out["empty"]).all()
    assert out["all"].tolist() == pytest.approx([0.8, 0.7])


def test_scaling_population_by_a_constant_leaves_estimates_unchanged() -> None:
    rng = np.random.default_rng(1)
    draws = rng.uniform(size=(50, 6))
    base = rng.uniform(size=(50, 6))
    population = rng.uniform(1, 100, size=6)
    masks = {"all": np.ones(6, dtype=bool), "g": np.array([1, 0, 1, 0, 1, 1], dtype=bool)}
    for base_draws in (None, base):
        a = poststratify(draws, population, masks, base_draws)
        b = poststratify(draws, population * 7.3, masks, base_draws)
        for name in masks:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-12)


def test_estimates_lie_within_the_cell_probabilities_of_their_group_per_draw() -> None:
    rng = np.random.default_rng(2)
    draws = rng.uniform(size=(200, 5))
    base = rng.uniform(0.01, 1, size=(200, 5))
    population = rng.uniform(1, 100, size=5)
    mask = np.array([True, False, True, True, False])
    for base_draws in (None, base):
        out = poststratify(draws, population, {"g": mask}, base_draws)["g"]
        inside = draws[:, mask]
        assert (out >= inside.min(axis=1) - 1e-12).all()
        assert (out <= inside.max(axis=1) + 1e-12).all()


def test_returns_one_estimate_per_draw_for_every_group() -> None:
    masks = {"all": np.ones(3, dtype=bool), "a": np.array([True, False, False])}
    out = poststratify(np.full((7, 3), 0.4), np.ones(3), masks)
    assert list(out) == ["all", "a"]
    assert out["all"].shape == (7,)
    assert out["a"].tolist() == pytest.approx([0.4] * 7)


def test_rejects_draws_whose_cells_do_not_match_the_population() -> None:
    with pytest.raises(ValueError, match="cell_draws must be"):
        poststratify(np.zeros((2, 3)), np.ones(2), ALL2)


def test_rejects_base_draws_of_another_shape() -> None:
    with pytest.raises(ValueError, match="base_draws"):
        poststratify(np.zeros((2, 2)), np.ones(2), ALL2, np.zeros((3, 2)))


def test_summarise_known_sample() -> None:
    s = summarise(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert list(s) == list(SUMMARY_COLUMNS)
    assert s["mean"] == pytest.approx(3.0)
    assert s["sd"] == pytest.approx(math.sqrt(2.5))
    assert s["q05"] == pytest.approx(1.2)
    assert s["q50"] == pytest.approx(3.0)
    assert s["q95"] == pytest.approx(4.8)


def test_summarise_single_draw_has_zero_sd_and_zero_moe() -> None:
    s = summarise(np.array([0.3]))
    assert s == pytest.approx(
        {
            "mean": 0.3,
            "sd": 0.0,
            "q05": 0.3,
            "q50": 0.3,
            "q95": 0.3,
            "interval": 0.9,
            "lower": 0.3,
            "upper": 0.3,
            "moe": 0.0,
        }
    )


def test_summarise_with_a_nan_draw_is_all_nan_but_keeps_its_interval_level() -> None:
    s = summarise(np.array([0.1, np.nan, 0.3]), interval=0.95)
    assert all(math.isnan(s[c]) for c in SUMMARY_COLUMNS if c != "interval")
    assert s["interval"] == 0.95


def test_summarise_empty_sample_is_all_nan_but_keeps_its_interval_level() -> None:
    s = summarise(np.array([]))
    assert all(math.isnan(s[c]) for c in SUMMARY_COLUMNS if c != "interval")
    assert s["interval"] == 0.9


def test_the_default_90_percent_interval_is_exactly_q05_to_q95() -> None:
    draws = np.random.default_rng(20250601).beta(2.0, 5.0, size=1000)
    s = summarise(draws)
    assert (s["lower"], s["upper"]) == (s["q05"], s["q95"])
    assert s["moe"] == (s["q95"] - s["q05"]) / 2


def test_a_95_percent_interval_on_201_draws_runs_from_the_6th_to_the_196th() -> None:
    # 0, 1, ..., 200: the 2.5% quantile sits exactly on draw 5 (0.025 x 200), the 97.5% on 195
    s = summarise(np.arange(201.0), interval=0.95)
    assert (s["interval"], s["lower"], s["upper"], s["moe"]) == (0.95, 5.0, 195.0, 95.0)
    assert (s["q05"], s["q95"]) == (10.0, 190.0)  # the fixed quantiles do not move


def test_moe_is_half_the_interval_even_when_it_is_not_symmetric_around_the_mean() -> None:
    # 21 draws: 0 x 19, then 10, 20; 90% interval: 5% quantile at index 1, 95% at index 19
    s = summarise(np.array([0.0] * 19 + [10.0, 20.0]))
    assert (s["lower"], s["upper"], s["moe"]) == (0.0, 10.0, 5.0)
    assert s["mean"] == pytest.approx(30 / 21)


def test_interval_quantiles_reject_a_level_outside_0_1() -> None:
    assert interval_quantiles(0.5) == (0.25, 0.75)
    with pytest.raises(ValueError, match=r"between 0 and 1 \(e.g. 0.9 or 0.95\)"):
        interval_quantiles(90)


def test_draws_by_group_inverts_draws_frame_whatever_the_row_order() -> None:
    estimates = {"all": np.array([0.5, 0.25, 0.125]), "g": np.array([1.0, 0.0, 0.5])}
    shuffled = draws_frame(estimates).sample(frac=1.0, random_state=1)
    back = draws_by_group(shuffled)
    assert sorted(back) == ["all", "g"]
    assert back["all"].tolist() == [0.5, 0.25, 0.125]
    assert back["g"].tolist() == [1.0, 0.0, 0.5]
