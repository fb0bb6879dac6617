"""Poststratification: cell-level posterior draws to population and target-group estimates.

Weights are applied draw by draw and summarised only at the end: averaging first would collapse
the posterior to a plug-in estimate and shrink the interval.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_INTERVAL",
    "SUMMARY_COLUMNS",
    "draws_by_group",
    "draws_frame",
    "interval_quantiles",
    "poststratify",
    "rest_masks",
    "summarise",
]

#: Summary statistics of a posterior, in output order. ``q05``/``q50``/``q95`` are fixed
#: quantiles (stable for readers of earlier waves); ``lower``/``upper`` bound the equal-tailed
#: credible interval at level ``interval`` (``ReportingConfig.interval``) and ``moe`` is its
#: half-width.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "mean",
    "sd",
    "q05",
    "q50",
    "q95",
    "interval",
    "lower",
    "upper",
    "moe",
)

#: The interval level when none is configured.
DEFAULT_INTERVAL = 0.90


def poststratify(
    cell_draws: np.ndarray,
    population: np.ndarray,
    masks: Mapping[str, np.ndarray],
    base_draws: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Posterior draws of the population share in each group.

    Parameters
    ----------
    cell_draws
        ``(draws, cells)``: P(yes | cell), or P(yes | cell, base) for a conditional question.
    population
        ``(cells,)`` census counts.
    masks
        Group name to boolean ``(cells,)`` membership.
    base_draws
        ``(draws, cells)``: P(base | cell) for a question asked only within a base. Each cell's
        weight becomes population x P(base | cell), so the estimate is for the base population
        ("among people aware of the brand"), and the base's uncertainty propagates.

    Returns
    -------
    dict
        Group name to ``(draws,)`` estimates; NaN for a group with no population.

    Examples
    --------
    Two cells of 3 and 1 people with P(yes) 0.5 and 1.0, one draw:

    >>> draws = np.array([[0.5, 1.0]])
    >>> out = poststratify(draws, np.array([3.0, 1.0]), {"all": np.array([True, True])})
    >>> out["all"].tolist()  # (3 * 0.5 + 1 * 1.0) / 4
    [0.625]

    Conditional on a base held by half the first cell and all of the second, the weights
    become 3 x 0.5 and 1 x 1.0:

    >>> base = np.array([[0.5, 1.0]])
    >>> poststratify(draws, np.array([3.0, 1.0]), {"all": np.array([True, True])}, base)["all"]
    array([0.7])
    """
    cell_draws = np.asarray(cell_draws, dtype=float)
    population = np.asarray(population, dtype=float)
    if cell_draws.ndim != 2 or cell_draws.shape[1] != population.shape[0]:
        raise ValueError(
            f"cell_draws must be (draws, {population.shape[0]}), got {cell_draws.shape}"
        )
    names = list(masks)
    weights = np.stack([population * np.asarray(masks[name], dtype=float) for name in names])
    if base_draws is None:
        numerator = cell_draws @ weights.T  # (draws, groups)
        denominator = np.broadcast_to(weights.sum(axis=1), numerator.shape)
    else:
        base_draws = np.asarray(base_draws, dtype=float)
        if base_draws.shape != cell_draws.shape:
            raise ValueError(
                f"base_draws {base_draws.shape} must match cell_draws {cell_draws.shape}"
            )
        numerator = (cell_draws * base_draws) @ weights.T
        denominator = base_draws @ weights.T
    with np.errstate(invalid="ignore", divide="ignore"):
        estimates = np.where(denominator > 0, numerator / denominator, np.nan)
    return {name: estimates[:, i] for i, name in enumerate(names)}


def rest_masks(masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each group's complement, the rest of the population, for groups that leave anyone out.

    >>> rest = rest_masks({"all": np.array([True, True]), "g": np.array([True, False])})
    >>> {k: v.tolist() for k, v in rest.items()}
    {'g': [False, True]}
    """
    out = {}
    for name, mask in masks.items():
        inside = np.asarray(mask, dtype=bool)
        if not inside.all() and inside.any():
            out[name] = ~inside
    return out


def interval_quantiles(interval: float) -> tuple[float, float]:
    """Lower and upper quantile of the equal-tailed credible interval at level ``interval``.

    Rounded so that a 90% interval uses exactly the quantiles behind ``q05`` and ``q95``
    (``(1 - 0.9) / 2`` is 0.04999... in floating point).

    >>> interval_quantiles(0.9), interval_quantiles(0.95)
    ((0.05, 0.95), (0.025, 0.975))
    """
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must be between 0 and 1 (e.g. 0.9 or 0.95), got {interval}")
    tail = round((1.0 - interval) / 2.0, 12)
    return tail, round(1.0 - tail, 12)


def summarise(draws: np.ndarray, interval: float = DEFAULT_INTERVAL) -> dict[str, float]:
    """Mean, sd, the 5/50/95% quantiles and the credible interval at ``interval``.

    ``moe`` is half the interval's width, the "plus or minus" a reader expects; the interval
    itself is equal-tailed, so it need not be symmetric around the mean. An empty or non-finite
    sample gives NaN everywhere except ``interval``, so every row still says its level.

    Examples
    --------
    >>> s = summarise(np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    >>> s["mean"], s["q50"]
    (0.5, 0.5)

    Forty-one draws 0, 1, ..., 40: the 90% interval runs from the 2nd to the 38th, the 95%
    interval from the 1st to the 39th.

    >>> s = summarise(np.arange(41.0))
    >>> s["lower"], s["upper"], s["moe"], s["lower"] == s["q05"]
    (2.0, 38.0, 18.0, True)
    >>> s = summarise(np.arange(41.0), interval=0.95)
    >>> s["interval"], s["lower"], s["upper"], s["moe"]
    (0.95, 1.0, 39.0, 19.0)
    """
    lower_q, upper_q = interval_quantiles(interval)
    values = np.asarray(draws, dtype=float)
    if values.size == 0 or not np.isfinite(values).all():
        return dict.fromkeys(SUMMARY_COLUMNS, float("nan")) | {"interval": float(interval)}
    q05, q50, q95, lower, upper = np.quantile(values, [0.05, 0.5, 0.95, lower_q, upper_q])
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "q05": float(q05),
        "q50": float(q50),
        "q95": float(q95),
        "interval": float(interval),
        "lower": float(lower),
        "upper": float(upper),
        "moe": float((upper - lower) / 2.0),
    }


def draws_frame(estimates: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Long ``(target_group, draw, value)`` frame of poststratified draws, for storage."""
    parts = [
        pd.DataFrame(
            {
                "target_group": name,
                "draw": np.arange(len(values), dtype=np.int32),
                "value": np.asarray(values, dtype=np.float32),
            }
        )
        for name, values in estimates.items()
    ]
    return pd.concat(parts, ignore_index=True)


def draws_by_group(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Inverse of ``draws_frame``: target group to its ``(draws,)`` values, in draw order.

    >>> frame = draws_frame({"all": np.array([0.5, 0.25]), "g": np.array([1.0, 0.0])})
    >>> {k: v.tolist() for k, v in draws_by_group(frame).items()}
    {'all': [0.5, 0.25], 'g': [1.0, 0.0]}
    """
    codes, groups = pd.factorize(frame["target_group"], sort=True)
    order = np.lexsort((frame["draw"].to_numpy(), codes))
    values = frame["value"].to_numpy(dtype=float)[order]
    sorted_codes = codes[order]
    return {str(group): values[sorted_codes == i] for i, group in enumerate(groups)}
