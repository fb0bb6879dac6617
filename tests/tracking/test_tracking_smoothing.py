"""The local-level smoother: exact small cases against closed forms, then the learnt drift."""

from __future__ import annotations

import numpy as np
import pytest

from misterp.tracking.smoothing import kalman_filter, learn_drift_sd, local_level


def test_two_waves_match_the_closed_form_posterior_of_level_and_change() -> None:
    # flat prior on the first level: level[1] | y1 ~ N(y1, s1^2),
    # level[2] | y1 ~ N(y1, s1^2 + tau^2)
    y1, y2, s1, s2, tau = 0.40, 0.55, 0.03, 0.04, 0.02
    series = local_level(np.array([[y1, y2]]), np.array([[s1, s2]]), drift_sd=tau)
    prior_var = s1**2 + tau**2
    level2_var = 1 / (1 / prior_var + 1 / s2**2)
    level2 = level2_var * (y1 / prior_var + y2 / s2**2)
    # the change d = level2 - level1: y2 - y1 = d + e2 - e1 with d ~ N(0, tau^2)
    noise = s1**2 + s2**2
    change = tau**2 / (tau**2 + noise) * (y2 - y1)
    change_var = tau**2 * noise / (tau**2 + noise)
    assert series.level_mean[0, 1] == pytest.approx(level2, rel=1e-12)
    assert series.level_sd[0, 1] ** 2 == pytest.approx(level2_var, rel=1e-12)
    assert series.change_mean[0, 1] == pytest.approx(change, rel=1e-12)
    assert series.change_sd[0, 1] ** 2 == pytest.approx(change_var, rel=1e-12)
    # the first level given both waves, by the same Gaussian algebra
    level1_var = 1 / (1 / s1**2 + 1 / (s2**2 + tau**2))
    level1 = level1_var * (y1 / s1**2 + y2 / (s2**2 + tau**2))
    assert series.level_mean[0, 0] == pytest.approx(level1, rel=1e-12)
    assert series.level_sd[0, 0] ** 2 == pytest.approx(level1_var, rel=1e-12)
    assert np.isnan(series.change_mean[0, 0])


def test_the_likelihood_of_two_waves_is_the_second_given_the_first() -> None:
    y1, y2, s1, s2, tau = 0.40, 0.55, 0.03, 0.04, 0.02
    run = kalman_filter(np.array([[y1, y2]]), np.array([[s1, s2]]), tau)
    total = s1**2 + s2**2 + tau**2
    expected = -0.5 * (np.log(2 * np.pi * total) + (y2 - y1) ** 2 / total)
    assert run.loglik[0] == pytest.approx(expected, rel=1e-12)


def test_no_drift_gives_the_precision_weighted_mean_in_every_wave() -> None:
    y = np.array([[0.30, 0.50, 0.42, np.nan, 0.38]])
    s = np.array([[0.10, 0.05, 0.02, np.nan, 0.04]])
    series = local_level(y, s, drift_sd=0.0)
    seen = ~np.isnan(y)
    weights = 1 / s[seen] ** 2
    pooled = float((weights * y[seen]).sum() / weights.sum())
    np.testing.assert_allclose(series.level_mean[0], pooled, rtol=1e-12)
    np.testing.assert_allclose(series.level_sd[0] ** 2, 1 / weights.sum(), rtol=1e-12)
    np.testing.assert_allclose(series.change_mean[0, 1:], 0.0, atol=1e-12)


def test_a_large_drift_leaves_each_wave_its_own_estimate() -> None:
    y = np.array([[0.30, 0.50, 0.42]])
    s = np.array([[0.02, 0.03, 0.02]])
    series = local_level(y, s, drift_sd=100.0)
    np.testing.assert_allclose(series.level_mean, y, atol=1e-6)
    np.testing.assert_allclose(series.level_sd, s, rtol=1e-4)


def test_waves_before_the_first_observed_one_are_left_blank_and_gaps_are_bridged() -> None:
    y = np.array([[np.nan, 0.4, np.nan, 0.6], [np.nan] * 4])
    s = np.array([[np.nan, 0.02, np.nan, 0.02], [np.nan] * 4])
    series = local_level(y, s, drift_sd=0.05)
    assert np.isnan(series.level_mean[0, 0])
    assert np.isnan(series.level_mean[1]).all()
    # the missing wave lies between its neighbours, less certain than either
    assert 0.4 < series.level_mean[0, 2] < 0.6
    assert series.level_sd[0, 2] > max(series.level_sd[0, 1], series.level_sd[0, 3])
    # the two changes across the gap add up to the change from wave 2 to wave 4
    assert series.change_mean[0, 2] + series.change_mean[0, 3] == pytest.approx(
        series.level_mean[0, 3] - series.level_mean[0, 1]
    )


def test_the_learnt_drift_recovers_the_simulated_one() -> None:
    rng = np.random.default_rng(7)
    tau, sd = 0.02, 0.03
    levels = 0.4 + np.cumsum(rng.normal(0, tau, size=(3000, 8)), axis=1)
    means = levels + rng.normal(0, sd, size=levels.shape)
    learnt, totals = learn_drift_sd(means, np.full(means.shape, sd))
    assert learnt == pytest.approx(tau, rel=0.15)
    assert totals.shape == (48,)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(estimates, waves\)"):
        local_level(np.zeros((2, 3)), np.zeros((2, 2)))
