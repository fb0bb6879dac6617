"""What a media-mix run publishes: tables per market from the stored draws, and its records.

Every number is summarised from the same posterior draws (:class:`misterp.mmm.model.DrawLayout`)
so the tables agree with each other: a channel's ROAS is the sum of its weekly contributions
over the fitted weeks divided by its spend over those weeks (the definition of
:mod:`misterp.mmm.simulate`), computed per draw and only then summarised. The marginal ROAS is
the extra contribution per extra unit of spend at the actual spend (a 1 % change either way);
the response curve the total contribution had every week's spend of the channel been a multiple
of what it was. Fit quality: in-sample R^2 and MAPE of the posterior mean over the fitted weeks,
and the MAPE of the posterior mean prediction over the holdout weeks, which the fit never saw
(adstock carried over from the fitted weeks).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from misterp.health import RunHealth, attempts_problem, model_health
from misterp.mmm.config import MMMConfig
from misterp.mmm.model import SWEEP_FACTORS, TARGET, DrawLayout, MarketInput
from misterp.mmm.simulate import BASELINE
from misterp.records import (
    FitRecordBase,
    ManifestBase,
    MaybeFloat,
    Record,
)
from misterp.status import FitStatus

__all__ = [
    "ADSTOCK_FILE",
    "CONTRIBUTIONS_FILE",
    "FITTED_FILE",
    "RESPONSE_CURVES_FILE",
    "ROAS_FILE",
    "FitQuality",
    "MMMFitRecord",
    "MMMManifest",
    "MarketTables",
    "fit_quality",
    "market_tables",
    "run_health",
    "summarise_draws",
]

CONTRIBUTIONS_FILE = "contributions.parquet"
ROAS_FILE = "roas.parquet"
RESPONSE_CURVES_FILE = "response_curves.parquet"
ADSTOCK_FILE = "adstock.parquet"
FITTED_FILE = "fitted.parquet"


def summarise_draws(draws: np.ndarray, interval: float) -> dict[str, np.ndarray]:
    """Mean and equal-tailed interval over axis 0.

    >>> s = summarise_draws(np.array([[1.0], [2.0], [3.0]]), 0.5)
    >>> [float(s[k][0]) for k in ("mean", "lower", "upper")]
    [2.0, 1.5, 2.5]
    """
    tail = (1 - interval) / 2
    return {
        "mean": draws.mean(axis=0),
        "lower": np.quantile(draws, tail, axis=0),
        "upper": np.quantile(draws, 1 - tail, axis=0),
    }


class FitQuality(Record):
    """How well the posterior mean fits: in sample, and on the weeks it never saw."""

    r2: MaybeFloat
    mape: MaybeFloat
    holdout_mape: MaybeFloat = math.nan


def _mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    keep = actual != 0
    if not keep.any():
        return math.nan
    return float(np.mean(np.abs(predicted[keep] - actual[keep]) / np.abs(actual[keep])))


def fit_quality(market: MarketInput, parts: dict[str, np.ndarray]) -> FitQuality:
    """R^2 and MAPE of the posterior mean prediction, in sample and on the holdout.

    >>> frame = pd.DataFrame({"date": [1, 2], "kpi": [10.0, 20.0], "tv": [1.0, 1.0]})
    >>> m = MarketInput("DE", frame, ("tv",), (), 0, "h")
    >>> c = np.array([[[5.0, 5.0], [5.0, 15.0]]])
    >>> fit_quality(m, {"contributions": c, "holdout": np.zeros((1, 0))}).r2
    1.0
    """
    actual = market.fit_frame[TARGET].to_numpy(dtype=float)
    predicted = parts["contributions"].sum(axis=-1).mean(axis=0)
    residual = float(np.sum((actual - predicted) ** 2))
    total = float(np.sum((actual - actual.mean()) ** 2))
    holdout = math.nan
    if market.holdout_weeks:
        holdout = _mape(
            market.holdout_frame[TARGET].to_numpy(dtype=float), parts["holdout"].mean(axis=0)
        )
    return FitQuality(
        r2=1 - residual / total if total > 0 else math.nan,
        mape=_mape(actual, predicted),
        holdout_mape=holdout,
    )


class MarketTables:
    """The published tables of one market, as frames."""

    def __init__(
        self,
        contributions: pd.DataFrame,
        roas: pd.DataFrame,
        response_curves: pd.DataFrame,
        adstock: pd.DataFrame,
        fitted: pd.DataFrame,
    ) -> None:
        self.contributions = contributions
        self.roas = roas
        self.response_curves = response_curves
        self.adstock = adstock
        self.fitted = fitted


def market_tables(
    market: MarketInput,
    layout: DrawLayout,
    draws: np.ndarray,
    config: MMMConfig,
    status: FitStatus,
) -> MarketTables:
    """Contributions, ROAS, response curves, adstock weights and the fit of one market.

    ``fitted`` is the KPI week by week beside the posterior of the model's total (the sum of
    every component, drawn as a whole: its interval is not the sum of the parts' intervals).

    Every row carries the market's fit ``status``, so a reader filtering on ``converged``
    never reads a flagged number by accident.
    """
    parts = layout.unpack(draws)
    interval = config.interval
    channels = list(layout.channels)
    dates = market.fit_frame["date"].to_numpy()
    weekly = summarise_draws(parts["contributions"], interval)  # (date, component)
    components = [*channels, BASELINE]
    contributions = pd.DataFrame(
        {
            "date": np.repeat(dates, len(components)),
            "market": market.market,
            "channel": np.tile(components, len(dates)),
            "mean": weekly["mean"].ravel(),
            "lower": weekly["lower"].ravel(),
            "upper": weekly["upper"].ravel(),
            "status": status.value,
        }
    )

    spend = market.spend.to_numpy(dtype=float)
    totals = parts["contributions"][..., : len(channels)].sum(axis=1)  # (draw, channel)
    with np.errstate(divide="ignore", invalid="ignore"):
        roas = summarise_draws(totals / spend, interval)
        low, high = SWEEP_FACTORS.index(0.99), SWEEP_FACTORS.index(1.01)
        marginal_draws = (parts["sweep"][:, high] - parts["sweep"][:, low]) / (0.02 * spend)
    marginal = summarise_draws(marginal_draws, interval)
    contribution = summarise_draws(totals, interval)
    roas_frame = pd.DataFrame(
        {
            "market": market.market,
            "channel": channels,
            "spend": spend,
            "spend_share": spend / spend.sum(),
            "contribution": contribution["mean"],
            "contribution_lower": contribution["lower"],
            "contribution_upper": contribution["upper"],
            "roas": roas["mean"],
            "roas_lower": roas["lower"],
            "roas_upper": roas["upper"],
            "marginal_roas": marginal["mean"],
            "marginal_roas_lower": marginal["lower"],
            "marginal_roas_upper": marginal["upper"],
            "status": status.value,
        }
    )

    curve = summarise_draws(parts["sweep"], interval)  # (factor, channel)
    factors = np.asarray(SWEEP_FACTORS)
    curves = pd.DataFrame(
        {
            "market": market.market,
            "channel": np.tile(channels, len(factors)),
            "spend_factor": np.repeat(factors, len(channels)),
            "spend": np.outer(factors, spend).ravel(),
            "mean": curve["mean"].ravel(),
            "lower": curve["lower"].ravel(),
            "upper": curve["upper"].ravel(),
            "status": status.value,
        }
    )

    weights = summarise_draws(parts["adstock"], interval)  # (channel, lag)
    adstock = pd.DataFrame(
        {
            "market": market.market,
            "channel": np.repeat(channels, layout.l_max),
            "lag": np.tile(np.arange(layout.l_max), len(channels)),
            "mean": weights["mean"].ravel(),
            "lower": weights["lower"].ravel(),
            "upper": weights["upper"].ravel(),
            "status": status.value,
        }
    )
    total = summarise_draws(parts["contributions"].sum(axis=-1), interval)  # (date,)
    fitted = pd.DataFrame(
        {
            "date": dates,
            "market": market.market,
            "kpi": market.fit_frame[TARGET].to_numpy(dtype=float),
            "mean": total["mean"],
            "lower": total["lower"],
            "upper": total["upper"],
            "status": status.value,
        }
    )
    return MarketTables(contributions, roas_frame, curves, adstock, fitted)


class MMMFitRecord(FitRecordBase):
    """The stored outcome of one market's fit: ``OUTPUT/mmm/RUN/fits/MARKET.json``.

    It names the data and settings it was fitted from (as hashes), so a re-run reuses it only
    while both are unchanged, and says how good the fit is besides whether it converged.
    """

    kind: ClassVar[str] = "media-mix fit record"
    market: str
    channels: tuple[str, ...]
    dropped_channels: tuple[str, ...] = ()
    n_weeks: int
    holdout_weeks: int
    first_week: str
    last_week: str
    quality: FitQuality | None = None
    #: The other markets of its pooled fit (``pooling: hierarchical``); empty when fitted alone.
    pooled_with: tuple[str, ...] = ()

    @property
    def fit_key(self) -> str:
        """The market."""
        return self.market

    def is_current(self, data_hash: str, settings_hash: str) -> bool:
        """True when fitted from this data and these settings."""
        return self.staleness_against({"data": data_hash, "settings": settings_hash}) is None

    def diagnostics(self) -> dict[str, Any]:
        """The last attempt's numbers, for tables and the CLI (None where unknown)."""
        report = self.attempts[-1].report if self.attempts else None
        quality = self.quality
        return {
            "market": self.market,
            "status": self.status.value,
            "attempts": len(self.attempts),
            "r_hat_max": report.r_hat_max if report else None,
            "ess_bulk_min": report.ess_bulk_min if report else None,
            "ess_tail_min": report.ess_tail_min if report else None,
            "divergences": report.divergences if report else None,
            "r2": quality.r2 if quality else None,
            "mape": quality.mape if quality else None,
            "holdout_mape": quality.holdout_mape if quality else None,
            "seconds": self.seconds,
        }


class MMMManifest(ManifestBase):
    """``OUTPUT/mmm/RUN/manifest.json``: written last, so its presence means the run is complete."""

    kind: ClassVar[str] = "media-mix manifest"
    run: str
    input: str
    #: sha256 of each published table, so a reader can check they belong to this manifest.
    sha256: dict[str, str]
    markets: tuple[MMMFitRecord, ...]
    notes: tuple[str, ...] = ()


def run_health(manifest: MMMManifest) -> RunHealth:
    """The tracker's health report for a media-mix run: one line per market, problems first.

    Written as ``OUTPUT/mmm/RUN/health.md`` before the manifest, shown as Prefect artifacts and
    sent with the run's ``misterp.wave.finished`` event, so one alert covers both families.
    """
    models = [
        model_health(
            record.market,
            record.status,
            record.attempts,
            record.seconds,
            attempts_problem(record.attempts) if record.status.needs_attention else None,
        )
        for record in manifest.markets
    ]
    return RunHealth(
        manifest.run,
        manifest.counts,
        tuple(models),
        subject="media-mix run",
        rerun="misterp mmm run --config CONFIG",
        results_file="roas.parquet",
    )
