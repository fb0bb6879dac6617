"""Synthetic weekly media-mix data with a known truth, in raw units.

The demo, the recovery test and the benchmark need data whose right answer is known exactly.
Spend is in thousands per week and the KPI around 100,000 a week, as a client would deliver
them, so the recovery test also proves that the scaling inside the pipeline is right (a model
fitted on raw units with unit-scale priors would be badly wrong). The generating model is the
one the fit assumes (normalised geometric adstock, then logistic saturation of spend divided by
the channel's largest weekly spend), so a failure to recover the truth is the fit's fault.

ROAS is defined once, here, and the estimate is computed the same way
(:mod:`misterp.mmm.outputs`): the channel's summed weekly contribution over a window of weeks
divided by its summed spend over the same weeks, in KPI units per spend unit (per thousand with
spend in thousands). Spend before the first week counts as zero, as in the fitted model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "BASELINE",
    "DEFAULT_CHANNELS",
    "ChannelTruth",
    "SimulatedMMM",
    "geometric_adstock",
    "logistic_saturation",
    "simulate_mmm",
    "true_roas",
]

#: Name of the non-media part of the KPI (intercept, trend, seasonality, controls).
BASELINE = "baseline"


@dataclass(frozen=True)
class ChannelTruth:
    """How one channel is spent and how it works, before the per-market variation.

    ``level`` is the typical weekly spend (thousands), ``on_share`` the share of weeks with any
    spend (flighting), ``alpha`` the geometric retention, ``lam`` the logistic steepness on
    spend divided by the channel's largest weekly spend, ``roas`` the target ROAS over the
    whole series (the saturation ceiling is solved for it).
    """

    name: str
    level: float
    on_share: float
    alpha: float
    lam: float
    roas: float


DEFAULT_CHANNELS: tuple[ChannelTruth, ...] = (
    ChannelTruth("tv", level=40.0, on_share=0.6, alpha=0.6, lam=2.0, roas=300.0),
    ChannelTruth("search", level=25.0, on_share=1.0, alpha=0.2, lam=3.0, roas=450.0),
    ChannelTruth("social", level=15.0, on_share=0.9, alpha=0.4, lam=2.5, roas=350.0),
    ChannelTruth("display", level=8.0, on_share=0.8, alpha=0.3, lam=2.0, roas=250.0),
    ChannelTruth("radio", level=10.0, on_share=0.7, alpha=0.5, lam=1.5, roas=200.0),
)


def geometric_adstock(x: np.ndarray, alpha: float, l_max: int) -> np.ndarray:
    """Normalised geometric carry-over along axis 0, with zero spend before the first week.

    Weights ``alpha**l / sum(alpha**k)`` for lags ``l < l_max``, as pymc-marketing's
    ``GeometricAdstock(normalize=True)``: a steady spend keeps its level.

    >>> geometric_adstock(np.array([1.0, 0.0, 0.0]), alpha=0.5, l_max=2).tolist()
    [0.6666666666666666, 0.3333333333333333, 0.0]
    """
    weights = alpha ** np.arange(l_max)
    weights = weights / weights.sum()
    out = np.zeros_like(x, dtype=float)
    for lag, weight in enumerate(weights):
        if lag == 0:
            out += weight * x
        else:
            out[lag:] += weight * x[:-lag]
    return out


def logistic_saturation(x: np.ndarray, lam: float) -> np.ndarray:
    """``(1 - exp(-lam x)) / (1 + exp(-lam x))``: 0 at no spend, towards 1 at large spend.

    >>> float(logistic_saturation(np.array([0.0]), lam=2.0)[0])
    0.0
    """
    e = np.exp(-lam * x)
    return (1 - e) / (1 + e)


def true_roas(
    contributions: pd.DataFrame, media: pd.DataFrame, weeks: Sequence[pd.Timestamp] | None = None
) -> pd.DataFrame:
    """ROAS per market and channel over ``weeks`` (all weeks when None).

    Sum of the weekly contributions over the window divided by the spend over the same window;
    the definition the estimate uses too.

    >>> d = pd.to_datetime(["2024-01-01", "2024-01-08"])
    >>> c = pd.DataFrame({"date": d, "market": "DE", "channel": "tv", "contribution": [3.0, 5.0]})
    >>> m = pd.DataFrame({"date": d, "market": "DE", "channel": "tv", "spend": [1.0, 1.0]})
    >>> true_roas(c, m)[["channel", "roas"]].to_dict("records")
    [{'channel': 'tv', 'roas': 4.0}]
    """
    media_rows = media if weeks is None else media[media["date"].isin(weeks)]
    contribution_rows = (
        contributions if weeks is None else contributions[contributions["date"].isin(weeks)]
    )
    spend = media_rows.groupby(["market", "channel"])["spend"].sum()
    contribution = contribution_rows.groupby(["market", "channel"])["contribution"].sum()
    frame = pd.concat([spend, contribution], axis=1, join="inner").reset_index()
    frame["roas"] = frame["contribution"] / frame["spend"]
    total = frame.groupby("market")["spend"].transform("sum")
    frame["spend_share"] = frame["spend"] / total
    return frame[["market", "channel", "spend", "contribution", "roas", "spend_share"]]


@dataclass
class SimulatedMMM:
    """Input frames as a client delivers them, and the truth behind them.

    ``params`` holds the true ``alpha``, ``lam`` and ``beta`` (KPI units at saturation) per
    market and channel; ``contributions`` the true weekly contribution of every channel and of
    the baseline.
    """

    kpi: pd.DataFrame
    media: pd.DataFrame
    controls: pd.DataFrame
    params: pd.DataFrame
    contributions: pd.DataFrame
    l_max: int

    def roas(self, weeks: Sequence[pd.Timestamp] | None = None) -> pd.DataFrame:
        """True ROAS per market and channel over ``weeks`` (all weeks when None)."""
        return true_roas(self.contributions, self.media, weeks)

    def write(self, folder: str | Path, *, include_truth: bool = False) -> None:
        """Write ``kpi.csv``, ``media.csv``, ``controls.csv`` (and the truth) to ``folder``."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name, frame in (("kpi", self.kpi), ("media", self.media), ("controls", self.controls)):
            out = frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))
            out.to_csv(root / f"{name}.csv", index=False)
        if include_truth:
            self.roas().to_csv(root / "truth_roas.csv", index=False)
            self.params.to_csv(root / "truth_params.csv", index=False)


def simulate_mmm(
    seed: int,
    *,
    markets: Sequence[str] = ("DE", "FR"),
    n_channels: int = 4,
    n_weeks: int = 156,
    l_max: int = 8,
    noise_share: float = 0.015,
    start: str = "2023-01-02",
    channels: Sequence[ChannelTruth] = DEFAULT_CHANNELS,
) -> SimulatedMMM:
    """Weekly KPI, media spend and a price control per market, with the truth behind them.

    KPI = baseline (about 65,000, a 4 % yearly trend, yearly seasonality of order 2, a price
    effect) + media contributions + normal noise (``noise_share`` of 100,000). Each market
    scales spend levels and target ROAS by its own factor, so markets differ.

    Parameters
    ----------
    seed
        Seed of everything random; the same seed gives the same data.
    markets
        Market ids.
    n_channels
        How many of ``channels`` to use (in order).
    n_weeks
        Weeks per market, starting on the Monday ``start``.
    l_max
        Adstock length of the truth (the fitted model should use the same).
    noise_share
        Noise standard deviation as a share of 100,000.
    start
        First week (a Monday).
    channels
        The channel truths to draw from.
    """
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n_weeks, freq="W-MON")
    t = np.arange(n_weeks)
    day = dates.day_of_year.to_numpy() / 365.25
    kpi_rows, media_rows, control_rows, param_rows, contribution_rows = [], [], [], [], []
    for market in markets:
        spend_factor = rng.uniform(0.7, 1.3)
        roas_factor = rng.uniform(0.8, 1.2)
        price = 100 + np.cumsum(rng.normal(0, 0.6, n_weeks))
        price = price - (price.mean() - 100)
        baseline = (
            65_000 * (1 + 0.04 * t / 52)
            + 3_000 * np.sin(2 * np.pi * day)
            + 1_500 * np.cos(2 * np.pi * day)
            + 800 * np.sin(4 * np.pi * day)
            - 400 * (price - 100)
        )
        kpi = baseline + rng.normal(0, noise_share * 100_000, n_weeks)
        contribution_rows.append(
            pd.DataFrame(
                {"date": dates, "market": market, "channel": BASELINE, "contribution": baseline}
            )
        )
        for truth in channels[:n_channels]:
            on = rng.random(n_weeks) < truth.on_share
            wave = 1 + 0.3 * np.sin(2 * np.pi * (t / rng.uniform(20, 40) + rng.random()))
            spend = truth.level * spend_factor * wave * rng.lognormal(0, 0.35, n_weeks) * on
            spend = np.round(spend, 3)
            shape = logistic_saturation(
                geometric_adstock(spend / spend.max(), truth.alpha, l_max), truth.lam
            )
            # The ceiling that gives the channel its target ROAS over the whole series.
            beta = truth.roas * roas_factor * spend.sum() / shape.sum()
            contribution = beta * shape
            kpi = kpi + contribution
            media_rows.append(
                pd.DataFrame(
                    {"date": dates, "market": market, "channel": truth.name, "spend": spend}
                )
            )
            contribution_rows.append(
                pd.DataFrame(
                    {
                        "date": dates,
                        "market": market,
                        "channel": truth.name,
                        "contribution": contribution,
                    }
                )
            )
            param_rows.append(
                {
                    "market": market,
                    "channel": truth.name,
                    "alpha": truth.alpha,
                    "lam": truth.lam,
                    "beta": beta,
                }
            )
        kpi_rows.append(pd.DataFrame({"date": dates, "market": market, "kpi": kpi}))
        control_rows.append(pd.DataFrame({"date": dates, "market": market, "price": price}))
    return SimulatedMMM(
        kpi=pd.concat(kpi_rows, ignore_index=True),
        media=pd.concat(media_rows, ignore_index=True),
        controls=pd.concat(control_rows, ignore_index=True),
        params=pd.DataFrame(param_rows),
        contributions=pd.concat(contribution_rows, ignore_index=True),
        l_max=l_max,
    )
