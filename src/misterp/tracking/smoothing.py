"""A local-level model over waves: each estimate's smoothed trend, with drift learnt across them.

One wave's posterior of a share is noisy; a brand's true awareness moves slowly. The local
level (random walk) model says so and nothing more::

    level[t] = level[t - 1] + drift[t],   drift[t] ~ N(0, drift_sd**2)
    mean[t]  = level[t] + noise[t],       noise[t] ~ N(0, sd[t]**2)

where ``mean[t]`` and ``sd[t]`` are the wave's published posterior mean and sd of the estimate
(its draws' summaries) and the first level has a flat prior. Given ``drift_sd`` the posterior
of every level and of every wave-on-wave change of the level is Gaussian and exact: a Kalman
filter and a Rauch-Tung-Striebel smoother, run for every estimate at once with numpy.
``drift_sd`` itself is learnt across all the estimates of a wave (empirical Bayes): the value
on a grid that maximises their joint marginal likelihood. No question model is refitted;
thousands of estimates over a dozen waves take well under a second.

The smoothed figures never replace the raw wave-on-wave changes: they are a second reading of
the same published numbers, published beside them (``smoothed.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri  # type: ignore[import-untyped]

__all__ = [
    "DRIFT_SD_GRID",
    "KalmanPass",
    "SmoothedSeries",
    "kalman_filter",
    "learn_drift_sd",
    "local_level",
    "rts_smoother",
]

#: Drift sds tried by :func:`learn_drift_sd`, in share units (0.0001 to 0.2: from "never moves"
#: to "moves by 20 points a wave"), evenly spaced on the log scale.
DRIFT_SD_GRID: np.ndarray = np.geomspace(1e-4, 0.2, 48)


@dataclass(frozen=True)
class KalmanPass:
    """The filter's output, ``(..., estimates, waves)`` arrays.

    ``filtered_mean``/``filtered_var``: the level of wave t given the waves up to t;
    ``predicted_var``: the level of wave t given the waves before t (``inf`` before the first
    observed wave, where the flat prior leaves it unknown); ``loglik``: per estimate, the log
    density of every observed wave after its first given the ones before (the flat prior's
    marginal likelihood, up to a constant that does not depend on ``drift_sd``).
    """

    filtered_mean: np.ndarray
    filtered_var: np.ndarray
    predicted_var: np.ndarray
    loglik: np.ndarray


@dataclass(frozen=True)
class SmoothedSeries:
    """Each estimate's level in every wave and its change from the wave before, given all waves.

    Arrays are ``(estimates, waves)``; the change of the first wave, and anything before an
    estimate's first observed wave, is NaN.
    """

    drift_sd: float
    level_mean: np.ndarray
    level_sd: np.ndarray
    change_mean: np.ndarray
    change_sd: np.ndarray

    def level_interval(self, interval: float) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed ``interval`` bounds of the smoothed levels."""
        z = float(ndtri((1.0 + interval) / 2.0))
        return self.level_mean - z * self.level_sd, self.level_mean + z * self.level_sd

    def change_interval(self, interval: float) -> tuple[np.ndarray, np.ndarray]:
        """Equal-tailed ``interval`` bounds of the smoothed changes."""
        z = float(ndtri((1.0 + interval) / 2.0))
        return self.change_mean - z * self.change_sd, self.change_mean + z * self.change_sd

    def p_up(self) -> np.ndarray:
        """P(the level rose from the wave before), from the Gaussian posterior of the change."""
        return _p_positive(self.change_mean, self.change_sd)

    def p_down(self) -> np.ndarray:
        """P(the level fell from the wave before)."""
        return _p_positive(-self.change_mean, self.change_sd)


def _p_positive(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
    # a change known exactly (sd 0, drift_sd 0) is up only if its mean is
    z = np.where(sd > 0, z, np.where(mean > 0, np.inf, -np.inf))
    return np.where(np.isnan(mean), np.nan, ndtr(z))


def _checked(means: np.ndarray, sds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(means, dtype=float)
    s = np.asarray(sds, dtype=float)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(
            f"means {y.shape} and sds {s.shape} must both be (estimates, waves) arrays"
        )
    observed = np.isfinite(y) & np.isfinite(s)
    if (s[observed] < 0).any():
        raise ValueError("posterior sds must be >= 0")
    return np.where(observed, y, np.nan), np.where(observed, s, np.nan)


def kalman_filter(means: np.ndarray, sds: np.ndarray, drift_sd: float | np.ndarray) -> KalmanPass:
    """Filter every estimate's series of wave posteriors through the local-level model.

    Parameters
    ----------
    means, sds
        ``(estimates, waves)`` posterior means and sds, oldest wave first; NaN where an
        estimate has no comparable estimate in a wave (it is skipped, the level drifts on).
    drift_sd
        A float, or an array of drift sds to run at once (a leading axis of the result).

    Returns
    -------
    KalmanPass
        Arrays of shape ``drift_sd.shape + means.shape``; ``loglik`` of shape
        ``drift_sd.shape + (estimates,)``.

    Examples
    --------
    Two waves with the same sd and no drift: the level is their mean, its variance halved.

    >>> run = kalman_filter(np.array([[0.4, 0.6]]), np.array([[0.1, 0.1]]), 0.0)
    >>> run.filtered_mean.round(6).tolist(), run.filtered_var.round(6).tolist()
    ([[0.4, 0.5]], [[0.01, 0.005]])
    """
    y, s = _checked(means, sds)
    q = np.asarray(drift_sd, dtype=float)
    if (q < 0).any():
        raise ValueError(f"drift sd must be >= 0, got {drift_sd}")
    q = (q**2)[..., None]  # broadcast over estimates
    r = s**2
    shape = q.shape[:-1] + y.shape
    mean = np.zeros(shape[:-1])
    var = np.full(shape[:-1], np.inf)
    loglik = np.zeros(shape[:-1])
    filtered_mean, filtered_var, predicted_var = (np.empty(shape) for _ in range(3))
    for t in range(y.shape[1]):
        predicted = var + q  # inf stays inf: nothing observed yet
        observed = ~np.isnan(y[:, t])
        started = np.isfinite(predicted)
        innovation = np.where(observed, y[:, t], 0.0) - mean
        total = predicted + np.where(observed, r[:, t], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(started, predicted / total, 1.0)
            term = -0.5 * (np.log(2 * np.pi * total) + innovation**2 / total)
            updated_var = np.where(started, predicted * r[:, t] / total, r[:, t])
        loglik = loglik + np.where(observed & started, term, 0.0)
        # an exact observation (sd 0) with an exact level (total 0): the level is the observation
        gain = np.where(np.isnan(gain), 1.0, gain)
        updated_var = np.where(np.isnan(updated_var), 0.0, updated_var)
        mean = np.where(observed, mean + gain * innovation, mean)
        var = np.where(observed, updated_var, predicted)
        filtered_mean[..., t], filtered_var[..., t], predicted_var[..., t] = mean, var, predicted
    return KalmanPass(filtered_mean, filtered_var, predicted_var, loglik)


def rts_smoother(run: KalmanPass, drift_sd: float) -> tuple[np.ndarray, ...]:
    """Smoothed level means and variances, and each wave's covariance with the next.

    Returns ``(mean, var, cov_next)``, ``(estimates, waves)`` each; ``cov_next[:, t]`` is
    Cov(level[t], level[t + 1] | every wave), NaN in the last wave. Waves before an estimate's
    first observed wave come out NaN (the flat prior says nothing about them).
    """
    q = float(drift_sd) ** 2
    mean = run.filtered_mean.copy()
    var = run.filtered_var.copy()
    cov_next = np.full_like(var, np.nan)
    for t in range(mean.shape[-1] - 2, -1, -1):
        filtered = run.filtered_var[..., t]
        known = np.isfinite(filtered)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(known, filtered / (filtered + q), 1.0)
            own = np.where(known, filtered * q / (filtered + q), q)
        gain = np.where(np.isnan(gain), 1.0, gain)  # filtered 0 and no drift
        own = np.where(np.isnan(own), 0.0, own)
        mean[..., t] = run.filtered_mean[..., t] + gain * (mean[..., t + 1] - mean[..., t])
        var[..., t] = gain**2 * var[..., t + 1] + own
        cov_next[..., t] = gain * var[..., t + 1]
    before_first = np.isinf(run.filtered_var)
    mean[before_first] = np.nan
    var[before_first] = np.nan
    cov_next[before_first] = np.nan
    return mean, var, cov_next


def learn_drift_sd(
    means: np.ndarray, sds: np.ndarray, grid: np.ndarray = DRIFT_SD_GRID
) -> tuple[float, np.ndarray]:
    """The drift sd on ``grid`` that maximises the marginal likelihood of all the series.

    One drift sd for all the estimates: most of a wave's estimates move little, and a few
    that move a lot should not each learn a drift from their own dozen points. Returns the
    chosen drift sd and the total log likelihood at every grid point.

    The grid is evaluated in chunks so memory stays at a few grid points x estimates x waves.
    """
    grid = np.asarray(grid, dtype=float)
    totals = np.empty(len(grid))
    chunk = max(1, 4_000_000 // max(1, np.asarray(means).size))
    for start in range(0, len(grid), chunk):
        part = grid[start : start + chunk]
        totals[start : start + chunk] = kalman_filter(means, sds, part).loglik.sum(axis=-1)
    return float(grid[int(np.argmax(totals))]), totals


def local_level(
    means: np.ndarray,
    sds: np.ndarray,
    *,
    drift_sd: float | None = None,
    grid: np.ndarray = DRIFT_SD_GRID,
) -> SmoothedSeries:
    """Smooth every estimate's series: levels and wave-on-wave changes given all its waves.

    Parameters
    ----------
    means, sds
        ``(estimates, waves)`` posterior means and sds, oldest wave first, NaN where missing.
    drift_sd
        Use this drift sd; default: learnt on ``grid`` (:func:`learn_drift_sd`).
    grid
        The drift sds tried when learning it.

    Examples
    --------
    With (almost) no drift, the level is the precision-weighted mean of the waves:

    >>> series = local_level(np.array([[0.3, 0.5]]), np.array([[0.1, 0.05]]), drift_sd=1e-9)
    >>> series.level_mean.round(4).tolist()
    [[0.46, 0.46]]
    """
    if drift_sd is None:
        drift_sd, _ = learn_drift_sd(means, sds, grid)
    run = kalman_filter(means, sds, drift_sd)
    mean, var, cov_next = rts_smoother(run, drift_sd)
    change_mean = np.full_like(mean, np.nan)
    change_var = np.full_like(var, np.nan)
    change_mean[:, 1:] = mean[:, 1:] - mean[:, :-1]
    change_var[:, 1:] = var[:, 1:] + var[:, :-1] - 2 * cov_next[:, :-1]
    return SmoothedSeries(
        drift_sd=float(drift_sd),
        level_mean=mean,
        level_sd=np.sqrt(np.clip(var, 0.0, None)),
        change_mean=change_mean,
        change_sd=np.sqrt(np.clip(change_var, 0.0, None)),
    )
