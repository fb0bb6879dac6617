"""The simulator's truth: exact small cases, and ROAS defined as the estimate defines it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from misterp.mmm.simulate import (
    BASELINE,
    geometric_adstock,
    logistic_saturation,
    simulate_mmm,
    true_roas,
)


def test_geometric_adstock_spreads_one_pulse_by_normalised_weights() -> None:
    out = geometric_adstock(np.array([4.0, 0.0, 0.0, 0.0]), alpha=0.5, l_max=3)
    # weights 1, 0.5, 0.25 over their sum 1.75
    np.testing.assert_allclose(out, [4 / 1.75, 2 / 1.75, 1 / 1.75, 0.0])


def test_geometric_adstock_keeps_a_steady_spend_at_its_level() -> None:
    out = geometric_adstock(np.full(10, 3.0), alpha=0.7, l_max=4)
    np.testing.assert_allclose(out[3:], 3.0)  # after the window has filled


def test_logistic_saturation_is_zero_at_zero_and_below_one() -> None:
    out = logistic_saturation(np.array([0.0, 1.0, 100.0]), lam=2.0)
    np.testing.assert_allclose(out[:2], [0.0, (1 - np.exp(-2)) / (1 + np.exp(-2))])
    assert out[2] <= 1.0


def test_true_roas_is_summed_contribution_over_summed_spend_in_the_window() -> None:
    dates = pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-15"])
    contributions = pd.DataFrame(
        {"date": dates, "market": "DE", "channel": "tv", "contribution": [2.0, 4.0, 8.0]}
    )
    media = pd.DataFrame({"date": dates, "market": "DE", "channel": "tv", "spend": [1.0, 1.0, 2.0]})
    assert true_roas(contributions, media)["roas"].item() == 14.0 / 4.0
    assert true_roas(contributions, media, dates[:2])["roas"].item() == 6.0 / 2.0


def test_simulated_kpi_is_baseline_plus_contributions_plus_small_noise() -> None:
    sim = simulate_mmm(20250601, markets=("DE",), n_channels=3, n_weeks=60)
    explained = sim.contributions.groupby("date")["contribution"].sum().to_numpy()
    residual = sim.kpi["kpi"].to_numpy() - explained
    assert abs(residual.mean()) < 1_000
    assert 1_000 < residual.std() < 2_000  # noise_share 0.015 of 100,000


def test_simulated_roas_over_all_weeks_is_the_channel_target_roas_times_market_factor() -> None:
    sim = simulate_mmm(1, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    roas = sim.roas().set_index(["market", "channel"])["roas"]
    # Both channels of a market share one roas_factor: the ratio is that of the targets.
    for market in ("DE", "FR"):
        np.testing.assert_allclose(roas[(market, "search")] / roas[(market, "tv")], 450 / 300)


def test_truth_is_in_raw_units() -> None:
    sim = simulate_mmm(3, markets=("DE",), n_channels=4, n_weeks=104)
    assert 70_000 < sim.kpi["kpi"].mean() < 130_000
    assert 5 < sim.media.groupby("channel")["spend"].mean().max() < 100  # thousands a week
    assert set(sim.contributions["channel"]) == {BASELINE, "tv", "search", "social", "display"}


def test_same_seed_same_data() -> None:
    a = simulate_mmm(5, markets=("DE",), n_weeks=60)
    b = simulate_mmm(5, markets=("DE",), n_weeks=60)
    pd.testing.assert_frame_equal(a.media, b.media)
    pd.testing.assert_frame_equal(a.kpi, b.kpi)
