"""Convergence of one fit, judged on numbers a person would otherwise read off trace plots.

Missing statistics count as *unknown*, and unknown is never a pass: a posterior without
sample stats (a mocked sampler, a truncated trace) is reported as not converged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.records import ConvergenceReport

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ConvergenceReport",
    "EstimandDraws",
    "check_convergence",
    "ess_bulk",
    "ess_tail",
    "monitored_variables",
    "next_attempt",
    "rank_r_hat",
    "stacked_draws",
]


def monitored_variables(posterior: xr.Dataset) -> list[str]:
    """The parameters whose mixing decides convergence."""
    return [
        str(name)
        for name, var in posterior.data_vars.items()
        if not str(name).endswith("_offset") and "__obs__" not in var.dims
    ]


def _min_or_nan(values: np.ndarray) -> float:
    flat = np.asarray(values, dtype=float).ravel()
    return float(np.nanmin(flat)) if np.isfinite(flat).any() else math.nan


def _max_or_nan(values: np.ndarray) -> float:
    flat = np.asarray(values, dtype=float).ravel()
    return float(np.max(flat)) if flat.size and np.isfinite(flat).all() else math.nan


def _dataset(group: Any) -> xr.Dataset:
    return group.to_dataset() if hasattr(group, "to_dataset") else group


def stacked_draws(posterior: xr.Dataset, names: list[str]) -> np.ndarray:
    """The draws of ``names`` as one ``(quantity, chain, draw)`` array, one row per scalar.

    Each row is contiguous, the layout ArviZ's per-quantity loop reads; the diagnostics of a
    row do not depend on which other rows are stacked with it.
    """
    chains, draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
    blocks = [
        np.moveaxis(
            np.asarray(posterior[name].transpose("chain", "draw", ...)).reshape(chains, draws, -1),
            -1,
            0,
        )
        for name in names
    ]
    if not blocks:
        return np.empty((0, chains, draws))
    return np.ascontiguousarray(np.concatenate(blocks, axis=0))


# --- R-hat and ESS of many quantities at once ------------------------------------------------
#
# ArviZ computes these one quantity at a time in Python (``make_ufunc`` over ``rankdata``,
# ``norm.ppf`` and Geyer's sequence in a ``while`` loop): about 1 ms per quantity, 0.1-0.3 s a
# look at a fit with ~100 parameters and estimands, as long as a short fit's sampling. A fit
# judged while it samples (issue 23) looks several times, so the same formulas run here on all
# quantities at once. ``tests/core/test_diagnostics.py`` holds them equal to ArviZ's.


def _split_chains(draws: np.ndarray) -> np.ndarray:
    """``(quantity, chain, draw)`` -> ``(quantity, 2 chain, draw // 2)``, as ArviZ splits."""
    half = draws.shape[2] // 2
    return np.concatenate((draws[:, :, :half], draws[:, :, draws.shape[2] - half :]), axis=1)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along each row, ties given their average rank (``rankdata``'s "average").

    ``scipy.stats.rankdata(axis=1)`` took 27 ms for 120 x 2,000 draws; one argsort takes 5.
    """
    rows, size = values.shape
    order = np.argsort(values, axis=1)  # ties share a rank: their order does not matter
    flat_order = (order + (np.arange(rows) * size)[:, None]).ravel()
    ordered = values.ravel()[flat_order].reshape(rows, size)
    positions = np.arange(1, size + 1, dtype=float)
    ranked = np.broadcast_to(positions, values.shape)
    starts = np.ones(values.shape, dtype=bool)
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts[:, 1:])
    if not starts.all():  # ties (rare for continuous draws): each gets its group's average
        ends = np.ones(values.shape, dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        first = np.maximum.accumulate(np.where(starts, positions, 0.0), axis=1)
        last = np.minimum.accumulate(np.where(ends, positions, np.inf)[:, ::-1], axis=1)
        ranked = (first + last[:, ::-1]) / 2
    ranks = np.empty(rows * size)
    ranks[flat_order] = ranked.ravel()
    return ranks.reshape(rows, size)


def _z_scale(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised draws per quantity (average ranks, Blom's offset 3/8, normal scores)."""
    from scipy.special import ndtri  # type: ignore[import-untyped]

    flat = draws.reshape(draws.shape[0], -1)
    size = flat.shape[1]
    scores = np.asarray(ndtri((_average_ranks(flat) - 3 / 8) / (size - 2 * 3 / 8 + 1)))
    scores[np.isnan(flat).any(axis=1)] = np.nan  # as ArviZ: a quantity with NaN has no rank
    return scores.reshape(draws.shape)


def _r_hat_of(draws: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of each quantity over its chains."""
    n = draws.shape[2]
    between = n * draws.mean(axis=2).var(axis=1, ddof=1)
    within = draws.var(axis=2, ddof=1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.sqrt((between / within + n - 1) / n))


def rank_r_hat(draws: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (bulk and folded, the larger) per ``(quantity, chain, draw)``."""
    return _rank_r_hat_and_bulk_scores(draws)[0]


def _rank_r_hat_and_bulk_scores(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rank_r_hat` and the rank-normalised split draws that bulk ESS is computed on.

    Both start from the same ranks of the split chains; a look needs both, so they are ranked
    once (the ranking is most of a look's diagnostics).
    """
    split = _split_chains(draws)
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    scores = _z_scale(split)
    return np.maximum(_r_hat_of(scores), _r_hat_of(_z_scale(folded))), scores


def _autocov(draws: np.ndarray) -> np.ndarray:
    """Autocovariance of every chain at every lag (FFT, as ArviZ)."""
    from scipy.fft import next_fast_len  # type: ignore[import-untyped]

    n = draws.shape[2]
    size = next_fast_len(2 * n)
    centred = draws - draws.mean(axis=2, keepdims=True)
    spectrum = np.fft.rfft(centred, n=size, axis=2)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=size, axis=2)[:, :, :n] / n


def _ess_of(draws: np.ndarray) -> np.ndarray:
    """ESS per quantity from Geyer's initial monotone sequence, as ``arviz_stats``' ``_ess``."""
    draws = np.asarray(draws, dtype=float)
    count, chains, n = draws.shape
    total = chains * n
    flat = draws.reshape(count, -1)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    acov = _autocov(draws)
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + draws.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    kept = np.zeros((count, n))
    kept[:, 0] = 1.0
    kept[:, 1] = rho[:, 1]
    even, odd = np.ones(count), rho[:, 1].copy()
    stop = np.ones(count, dtype=int)  # ArviZ's t after its first loop
    active = np.ones(count, dtype=bool)
    lag = 1
    while True:  # Geyer's initial positive sequence, pair by pair
        with np.errstate(invalid="ignore"):
            active &= (lag < n - 3) & (even + odd > 0.0)
        if not active.any():
            break
        pair_even, pair_odd = rho[:, lag + 1], rho[:, lag + 2]
        even = np.where(active, pair_even, even)
        odd = np.where(active, pair_odd, odd)
        with np.errstate(invalid="ignore"):
            store = active & (pair_even + pair_odd >= 0)
        kept[store, lag + 1] = pair_even[store]
        kept[store, lag + 2] = pair_odd[store]
        stop = np.where(active, lag + 2, stop)
        lag += 2
    max_t = stop - 2
    rows = np.arange(count)
    with np.errstate(invalid="ignore"):
        improve = even > 0
    kept[rows[improve], max_t[improve] + 1] = even[improve]
    for lag in range(1, int(max_t.max(initial=0)) - 1, 2):  # Geyer's initial monotone sequence
        pairs = kept[:, lag + 1] + kept[:, lag + 2]
        previous = kept[:, lag - 1] + kept[:, lag]
        with np.errstate(invalid="ignore"):
            lower = (lag <= max_t - 2) & (pairs > previous)
        kept[lower, lag + 1] = previous[lower] / 2.0
        kept[lower, lag + 2] = previous[lower] / 2.0
    lags = np.arange(n)[None, :]
    tau = (
        -1.0
        + 2.0 * np.where(lags <= max_t[:, None], kept, 0.0).sum(axis=1)
        + np.where(lags == max_t[:, None] + 1, kept, 0.0).sum(axis=1)
    )
    tau = np.maximum(tau, 1 / np.log10(total))
    ess = total / tau
    ess[np.isnan(kept).any(axis=1)] = np.nan
    ess[constant] = total
    return ess


def ess_bulk(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS per ``(quantity, chain, draw)``: the ESS of the rank-normalised split chains."""
    return _ess_of(_z_scale(_split_chains(draws)))


def ess_tail(draws: np.ndarray, prob: float) -> np.ndarray:
    """Tail ESS: the smaller ESS of the indicators below the ``(1 - prob)/2`` and upper quantiles.

    As ``az.ess(method="tail", prob=prob)`` on an array: the quantiles at ``prob`` and
    ``1 - prob`` (sorted), linear interpolation.
    """
    low, high = sorted((prob, 1 - prob))
    flat = draws.reshape(draws.shape[0], -1)
    bounds = np.quantile(flat, [low, high], axis=1)  # (2, quantity)
    below_low = (draws <= bounds[0][:, None, None]).astype(float)
    below_high = (draws <= bounds[1][:, None, None]).astype(float)
    ess = np.minimum(_ess_of(_split_chains(below_low)), _ess_of(_split_chains(below_high)))
    ess[np.isnan(flat).any(axis=1)] = np.nan  # as ArviZ: unknown, not "constant"
    return ess


#: A fit's published quantities: their names and draws ``(quantity, chain, draw)``.
EstimandDraws = tuple[tuple[str, ...], np.ndarray]


def check_convergence(
    idata: Any,
    seconds: float = math.nan,
    *,
    estimands: EstimandDraws | None = None,
    parameter_tail: bool = True,
) -> ConvergenceReport:
    """Compute a ``ConvergenceReport`` from an ArviZ ``DataTree``/``InferenceData``.

    Rank-normalised split R-hat, bulk and tail ESS over every scalar of
    :func:`monitored_variables` (the formulas of ``az.rhat``/``az.ess``, on every quantity at
    once: :func:`rank_r_hat`). ``estimands``: the published quantities drawn from the same
    posterior (a tracker's poststratified shares); R-hat covers them too, and their bulk and
    tail ESS are reported on their own, with the name of the quantity that limited each
    statistic. ``parameter_tail=False`` skips the parameters' tail ESS (NaN), which the
    estimand policy does not judge. Divergences and E-BFMI come from ``sample_stats``;
    without them the report says unknown, which never passes.
    """
    from arviz_base import rcParams

    posterior = _dataset(idata["posterior"])
    chains, draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
    names = monitored_variables(posterior)
    params = stacked_draws(posterior, names)
    labels = [
        name for name in names for _ in range(int(np.prod(posterior[name].shape[2:], dtype=int)))
    ]
    prob = rcParams["stats.ci_prob"]  # what az.ess(Dataset, method="tail") uses by default
    estimand_names: tuple[str, ...] = ()
    estimand_draws = np.empty((0, chains, draws))
    if estimands is not None:
        estimand_names, estimand_draws = estimands
    every = np.concatenate([params, estimand_draws], axis=0)
    r_hat, bulk = np.empty(0), np.empty(0)
    if len(every):
        r_hat, bulk_scores = _rank_r_hat_and_bulk_scores(every)
        bulk = _ess_of(bulk_scores)  # = ess_bulk(every), on the ranks R-hat already made
    param_bulk, estimand_bulk = bulk[: len(params)], bulk[len(params) :]
    param_tail = ess_tail(params, prob) if parameter_tail and len(params) else np.empty(0)
    estimand_tail = ess_tail(estimand_draws, prob) if len(estimand_draws) else np.empty(0)
    every_label = [*labels, *estimand_names]
    divergences, bfmi_min, steps_per_draw = -1, math.nan, math.nan
    if (
        "sample_stats" in idata.children
        if hasattr(idata, "children")
        else hasattr(idata, "sample_stats")
    ):
        stats = _dataset(idata["sample_stats"])
        if "diverging" in stats:
            divergences = int(np.asarray(stats["diverging"]).sum())
        if "energy" in stats:
            energy = np.asarray(stats["energy"], dtype=float)
            bfmi = np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1)
            bfmi_min = float(np.min(bfmi))
        if "n_steps" in stats:  # nutpie and PyMC both name it so
            steps_per_draw = float(np.asarray(stats["n_steps"], dtype=float).mean())
    return ConvergenceReport(
        r_hat_max=_max_or_nan(r_hat),
        ess_bulk_min=_min_or_nan(param_bulk),
        ess_tail_min=_min_or_nan(param_tail),
        divergences=divergences,
        bfmi_min=bfmi_min,
        chains=chains,
        draws=draws,
        seconds=seconds,
        steps_per_draw=steps_per_draw,
        estimands=len(estimand_names),
        estimand_ess_bulk_min=_min_or_nan(estimand_bulk),
        estimand_ess_tail_min=_min_or_nan(estimand_tail),
        r_hat_worst=_worst(every_label, r_hat, largest=True),
        ess_bulk_worst=_worst(labels, param_bulk, largest=False),
        estimand_ess_worst=_worst(
            [*estimand_names, *estimand_names],
            np.concatenate([estimand_bulk, estimand_tail]),
            largest=False,
        ),
    )


def _worst(labels: list[str], values: np.ndarray, *, largest: bool) -> str | None:
    """The label of the largest (smallest) value; an unknown (NaN) value is the worst."""
    if not len(values):
        return None
    unknown = np.flatnonzero(np.isnan(values))
    if unknown.size:
        return labels[int(unknown[0])]
    return labels[int(np.argmax(values) if largest else np.argmin(values))]


def next_attempt(
    report: ConvergenceReport,
    sampler: SamplerConfig,
    policy: RetryPolicy,
    thresholds: ConvergenceThresholds,
    attempt: int,
) -> SamplerConfig | None:
    """Stronger sampler settings for the next attempt, or None to give up.

    ``attempt`` is the 1-based number of the attempt that produced ``report``.
    Divergences mean the step size is too large for the posterior's curvature: raise
    ``target_accept`` and tune longer. Low ESS or high R-hat with no divergences mean the
    chains are sound but too short: draw more.
    """
    if report.passes(thresholds) or attempt >= policy.max_attempts:
        return None
    update: dict[str, Any] = {"random_seed": sampler.random_seed + 1}
    if report.divergences > thresholds.divergences_max or report.divergences < 0:
        higher = [t for t in policy.target_accept_ladder if t > sampler.target_accept]
        if higher:
            update["target_accept"] = higher[0]
        update["tune"] = int(sampler.tune * policy.tune_factor)
    if report.short_of_draws(thresholds):
        update["draws"] = int(sampler.draws * policy.draws_factor)
        update["tune"] = max(
            update.get("tune", sampler.tune), int(sampler.tune * policy.tune_factor)
        )
    return sampler.model_copy(update=update)
