"""Budget recommendation: pymc-marketing's optimiser on a market's fitted model.

The optimiser needs the fitted model, which lives only inside the fit's worker, so the
recommendation is computed where the draws are extracted (:func:`misterp.mmm.model.
market_extractor`) and stored with them: per posterior sample, each channel's current and
recommended weekly spend and the channel's contribution over the planned weeks (with the
carry-over into the weeks after) at each. :func:`budget_table` turns them into
``budget.parquet`` for converged markets only, since advice from an unconverged fit is noise.

pymc-marketing's ``budget_optimizer(start, end).allocate_budget(total, bounds)`` maximises the
posterior mean media contribution over the window for a weekly total (SLSQP); the contribution
per channel is then the response at a plan in which only that channel spends (media effects add
up across channels, so this is exact), each as a posterior distribution.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from misterp.mmm.config import BudgetConfig

__all__ = ["BUDGET_FILE", "BUDGET_ROWS", "budget_table", "current_spend", "optimise_budget"]

logger = logging.getLogger(__name__)

BUDGET_FILE = "budget.parquet"
#: Rows of a market's stored budget part, per sample: spend now, spend advised, and the
#: contribution (KPI units, over the planned weeks plus carry-over) at each.
BUDGET_ROWS: tuple[str, ...] = (
    "current_spend",
    "recommended_spend",
    "current_contribution",
    "recommended_contribution",
)


def current_spend(fit_frame: pd.DataFrame, channels: list[str], budget: BudgetConfig) -> pd.Series:
    """Mean weekly spend per channel over the last ``reference_weeks`` fitted weeks.

    >>> frame = pd.DataFrame({"tv": [9.0, 1.0, 3.0], "search": [0.0, 2.0, 2.0]})
    >>> current_spend(frame, ["tv", "search"], BudgetConfig(reference_weeks=2)).tolist()
    [2.0, 2.0]
    """
    return fit_frame[channels].iloc[-budget.reference_weeks :].mean()


def weekly_bounds(current: pd.Series, budget: BudgetConfig) -> dict[str, tuple[float, float]]:
    """Each channel's [min, max] weekly spend: configured, else relative to current spend.

    >>> weekly_bounds(pd.Series({"tv": 10.0}), BudgetConfig(relative_bounds=(0.5, 2.0)))
    {'tv': (5.0, 20.0)}
    """
    low, high = budget.relative_bounds
    return {
        str(channel): budget.bounds.get(str(channel), (low * value, high * value))
        for channel, value in current.items()
    }


def optimise_budget(
    mmm: Any, fit_frame: pd.DataFrame, channels: list[str], budget: BudgetConfig
) -> np.ndarray:
    """``(samples, 4, channels)``: the rows of ``BUDGET_ROWS`` per posterior sample.

    The window is the ``weeks`` after the last fitted week. A failed or infeasible optimisation
    (bounds that cannot add up to the total) keeps current spend as the advice and logs why.
    """
    import xarray as xr

    current = current_spend(fit_frame, channels, budget)
    weekly_total = budget.total / budget.weeks if budget.total else float(current.sum())
    last = pd.Timestamp(fit_frame["date"].iloc[-1])
    optimizer = mmm.budget_optimizer(
        last + pd.Timedelta(weeks=1), last + pd.Timedelta(weeks=budget.weeks)
    )
    bounds = weekly_bounds(current, budget)
    try:
        result = optimizer.allocate_budget(weekly_total, budget_bounds=bounds)
        recommended = np.asarray(result.budgets.sel(channel=channels).values, dtype=float)
    except Exception as exc:  # pymc-marketing raises MinimizeException and ValueError
        logger.warning("budget optimisation failed (%s); advising current spend", exc)
        recommended = current.to_numpy(dtype=float)

    def contribution(spend: np.ndarray, channel: int) -> np.ndarray:
        alone = np.where(np.arange(len(channels)) == channel, spend, 0.0)
        plan = xr.DataArray(alone, dims="channel", coords={"channel": channels})
        response = optimizer.evaluate_response_distribution(plan)
        return np.asarray(response.values, dtype=float).reshape(-1)

    now = current.to_numpy(dtype=float)
    per_channel = [
        np.stack([contribution(now, i), contribution(recommended, i)], axis=-1)
        for i in range(len(channels))
    ]
    response = np.stack(per_channel, axis=-1)  # (samples, 2, channels)
    n = response.shape[0]
    spends = np.broadcast_to(np.stack([now, recommended])[None], (n, 2, len(channels)))
    return np.concatenate([spends, response], axis=1)


def budget_table(
    market: str,
    channels: list[str],
    parts: np.ndarray,
    weeks: int,
    interval: float,
    status: str,
) -> pd.DataFrame:
    """One row per channel: spend over the period now and advised, contribution at each.

    ``parts`` is ``(draws, 4, channels)`` as :func:`optimise_budget` stores it.

    >>> parts = np.array([[[1.0], [2.0], [10.0], [15.0]], [[1.0], [2.0], [12.0], [17.0]]])
    >>> row = budget_table("DE", ["tv"], parts, 4, 0.5, "converged").iloc[0]
    >>> float(row["recommended_spend"]), float(row["recommended_contribution"])
    (8.0, 16.0)
    """
    tail = (1 - interval) / 2
    out = pd.DataFrame({"market": market, "channel": channels, "weeks": weeks})
    for i, name in enumerate(BUDGET_ROWS):
        values = parts[:, i, :]
        if name.endswith("spend"):
            out[name] = values.mean(axis=0) * weeks
            continue
        out[name] = values.mean(axis=0)
        out[f"{name}_lower"] = np.quantile(values, tail, axis=0)
        out[f"{name}_upper"] = np.quantile(values, 1 - tail, axis=0)
    gain = parts[:, 3, :] - parts[:, 2, :]
    out["gain"] = gain.mean(axis=0)
    out["gain_lower"] = np.quantile(gain, tail, axis=0)
    out["gain_upper"] = np.quantile(gain, 1 - tail, axis=0)
    out["status"] = status
    return out
