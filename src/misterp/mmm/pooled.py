"""One media-mix model over several markets, with each channel's parameters partially pooled.

With ``pooling: hierarchical`` the markets of a run are fitted together as one
``pymc_marketing.mmm.MMM`` with ``dims=("market",)``: every parameter has a market dimension,
and the three that decide a channel's return are drawn around that channel's mean over markets
instead of independently (the geo-level hierarchy of Sun et al. 2017):

- the effect at saturation, ``saturation_beta[m, c] = exp(mu_c + tau * z[m, c])``;
- the saturation rate of a logistic curve, ``saturation_lam`` the same way;
- the carry-over, ``adstock_alpha[m, c] = sigmoid(mu_c + tau * z[m, c])``;

each with ``z ~ N(0, 1)`` (non-centred, so a small spread ``tau`` leaves no funnel),
``tau ~ HalfNormal(priors.market_sigma)`` learnt from the data, and ``mu_c`` centred where the
independent model's prior is. The intercept, controls, seasonality and noise stay per market.
Scaling is per market (KPI by the market's maximum, spend by the market's channel maximum), so
the pooled quantities are comparable across markets of different size.

The fit is one task for all markets through the same retry loop; its draws are the markets'
draws side by side (each in :class:`misterp.mmm.model.DrawLayout`), split per market when
stored, so every table and report is the same as for independent fits.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import SamplerConfig
from misterp.fitting import Extract, Sample
from misterp.mmm.config import ChannelPrior, MMMConfig, SaturationKind
from misterp.mmm.model import (
    SWEEP_FACTORS,
    TARGET,
    FittedMMM,
    MarketInput,
    adstock_weights,
    channel_prior_sigmas,
    layout_for,
    market_seed,
    media_components,
    sample_mmm,
    stacked_draws,
    thin_index,
)

__all__ = [
    "MARKET",
    "POOLED_KEY",
    "PooledInput",
    "build_pooled_mmm",
    "ordered",
    "pooled_extractor",
    "pooled_hash",
    "pooled_priors",
    "pooled_sampler",
    "pooling_problems",
    "split_pooled_draws",
]

#: The market column and model dimension of a pooled model.
MARKET = "market"
#: The key of the pooled fit in logs and events.
POOLED_KEY = "pooled"
#: Centres of the pooled means on the log (logit) scale, matching pymc-marketing's independent
#: priors: Gamma(3, 1) for the logistic rate (median 2.67, log-sd about 0.6) and Beta(1, 3) for
#: the carry-over (mean 0.25, logit-sd about 1.2).
_LAM_CENTRE, _LAM_SD = math.log(2.67), 0.6
_ALPHA_CENTRE, _ALPHA_SD = math.log(0.25 / 0.75), 1.2


@dataclass(frozen=True)
class PooledInput:
    """The markets of a pooled fit, in order; they share weeks, channels and controls."""

    markets: tuple[MarketInput, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Market ids, in model order."""
        return tuple(market.market for market in self.markets)

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels every market has."""
        return self.markets[0].channels

    @property
    def controls(self) -> tuple[str, ...]:
        """The controls every market has."""
        return self.markets[0].controls

    @property
    def data_hash(self) -> str:
        """One hash of every market's data: a change in any market refits them all."""
        return pooled_hash({market.market: market.data_hash for market in self.markets})

    def versions(self) -> list[PooledInput]:
        """One pooled input per KPI draw (all markets' draw ``i`` together), or itself."""
        per_market = [market.versions() for market in self.markets]
        if all(len(versions) == 1 for versions in per_market):
            return [self]
        return [PooledInput(tuple(markets)) for markets in zip(*per_market, strict=True)]

    def _stacked(self, frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
        named = zip(frames, self.names, strict=True)
        tagged = [frame.assign(**{MARKET: name}) for frame, name in named]
        return pd.concat(tagged, ignore_index=True)

    @property
    def fit_frame(self) -> pd.DataFrame:
        """The fitted weeks of every market, long (one row per week and market)."""
        return self._stacked([market.fit_frame for market in self.markets])

    @property
    def holdout_frame(self) -> pd.DataFrame:
        """The holdout weeks of every market, long."""
        return self._stacked([market.holdout_frame for market in self.markets])

    @property
    def lift_tests(self) -> pd.DataFrame | None:
        """Every market's lift tests with a ``market`` column, or None without any."""
        frames = [
            market.lift_tests.assign(**{MARKET: market.market})
            for market in self.markets
            if market.lift_tests is not None and not market.lift_tests.empty
        ]
        return pd.concat(frames, ignore_index=True) if frames else None


def pooled_hash(data_hashes: Mapping[str, str]) -> str:
    """The data hash of a pooled fit from each market's, in market order.

    >>> pooled_hash({"DE": "a", "FR": "b"}) == pooled_hash({"FR": "b", "DE": "a"})
    False
    """
    digest = hashlib.sha256()
    for market, data_hash in data_hashes.items():
        digest.update(f"{market}={data_hash};".encode())
    return digest.hexdigest()


def pooling_problems(markets: Sequence[MarketInput]) -> list[str]:
    """Why these markets cannot be fitted as one pooled model (empty when they can).

    pymc-marketing's multi-market model needs rectangular data: the same weeks in every market
    and one set of channels and controls.

    >>> frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=3, freq="W-MON")})
    >>> de = MarketInput("DE", frame, ("tv",), (), 0, "h1")
    >>> fr = MarketInput("FR", frame.iloc[1:], ("tv", "radio"), (), 0, "h2")
    >>> for line in pooling_problems([de, fr]):
    ...     print(line[:74])
    market FR has weeks 2024-01-08 to 2024-01-15, DE 2024-01-01 to 2024-01-15:
    market FR has channels radio, tv, DE tv: pooling hierarchical needs one se
    """
    if len(markets) < 2:
        return [
            f"pooling hierarchical needs at least 2 markets, got {len(markets)}; "
            "use pooling: independent"
        ]
    first, problems = markets[0], []
    if any(market.market == POOLED_KEY for market in markets):
        problems.append(
            f"a market is named '{POOLED_KEY}', the name of the pooled fit's task: rename it, "
            "or use pooling: independent"
        )

    def weeks(market: MarketInput) -> str:
        dates = pd.to_datetime(market.frame["date"])
        return f"{dates.iloc[0].date()} to {dates.iloc[-1].date()}"

    first_dates = pd.to_datetime(first.frame["date"]).to_numpy()
    for market in markets[1:]:
        dates = pd.to_datetime(market.frame["date"]).to_numpy()
        if len(dates) != len(first_dates) or (dates != first_dates).any():
            problems.append(
                f"market {market.market} has weeks {weeks(market)}, {first.market} "
                f"{weeks(first)}: pooling hierarchical needs the same weeks in every market; "
                "cut the input to common weeks, or use pooling: independent"
            )
        if set(market.channels) != set(first.channels):
            problems.append(
                f"market {market.market} has channels {', '.join(sorted(market.channels))}, "
                f"{first.market} {', '.join(sorted(first.channels))}: pooling hierarchical "
                "needs one set of channels; drop the extra channels from the input (a channel "
                "a market does not buy is a zero-spend channel: drop_zero_spend_channels), or "
                "use pooling: independent"
            )
        if set(market.controls) != set(first.controls):
            problems.append(
                f"market {market.market} has controls {', '.join(sorted(market.controls))}, "
                f"{first.market} {', '.join(sorted(first.controls))}: pooling hierarchical "
                "needs one set of controls in every market"
            )
    return problems


def ordered(markets: Sequence[MarketInput]) -> PooledInput:
    """The markets as one pooled input, each with the first market's channel order."""
    channels = markets[0].channels
    return PooledInput(tuple(replace(market, channels=channels) for market in markets))


def pooled_priors(pooled: PooledInput, config: MMMConfig) -> dict[str, Any]:
    """pymc-marketing model config with the channel parameters pooled across markets.

    The effect's pooled mean per channel is centred on the median of the independent model's
    prior (``HalfNormal(sigma_c)``, median ``0.674 sigma_c``, with ``sigma_c`` the mean over
    markets of the spend-share sigmas), with a log-sd of 1.
    """
    from pymc_extras.prior import Prior  # type: ignore[import-untyped]

    dims = (MARKET, "channel")
    channels = list(pooled.channels)
    if config.priors.channel is ChannelPrior.SPEND_SHARE:
        sigmas = np.mean(
            [channel_prior_sigmas(market.spend, config) for market in pooled.markets], axis=0
        )
    else:
        sigmas = np.full(len(channels), 2.0)  # pymc-marketing's HalfNormal(2)
    spread = config.priors.market_sigma

    def pooled_prior(centre: np.ndarray | float, sd: float, transform: str) -> Any:
        import xarray as xr

        centres = xr.DataArray(
            np.broadcast_to(centre, (len(channels),)).astype(float),
            dims="channel",
            coords={"channel": channels},
        )
        return Prior(
            "Normal",
            mu=Prior("Normal", mu=centres, sigma=sd, dims="channel"),
            sigma=Prior("HalfNormal", sigma=spread),
            dims=dims,
            centered=False,
            transform=transform,
        )

    priors = {
        "saturation_beta": pooled_prior(np.log(0.674 * sigmas), 1.0, "exp"),
        "adstock_alpha": pooled_prior(_ALPHA_CENTRE, _ALPHA_SD, "sigmoid"),
    }
    if config.saturation is SaturationKind.LOGISTIC:
        priors["saturation_lam"] = pooled_prior(_LAM_CENTRE, _LAM_SD, "exp")
    return priors


def build_pooled_mmm(pooled: PooledInput, config: MMMConfig) -> Any:
    """pymc-marketing's MMM over every market, scaled per market, with pooled priors."""
    from pymc_marketing.mmm import MMM
    from pymc_marketing.mmm.scaling import DataDerivedScaling

    adstock, saturation = media_components(config)
    # dims=(): reduce over dates only, so each market (and market x channel) has its own scale
    per_market = DataDerivedScaling(method="max", dims=())
    return MMM(
        date_column="date",
        channel_columns=list(pooled.channels),
        target_column=TARGET,
        dims=(MARKET,),
        adstock=adstock,
        saturation=saturation,
        control_columns=list(pooled.controls) or None,
        yearly_seasonality=config.yearly_seasonality or None,
        scaling={"target": per_market, "channel": per_market},
        model_config=pooled_priors(pooled, config),
    )


def pooled_sampler(pooled: PooledInput, config: MMMConfig) -> Sample:
    """The ``sample`` function of the retry loop: a fresh pooled model sampled with ``settings``."""

    def sample(settings: SamplerConfig) -> FittedMMM:
        mmm = build_pooled_mmm(pooled, config)
        seed = market_seed("|".join(pooled.names), settings.random_seed)
        return FittedMMM(mmm, sample_mmm(mmm, pooled.fit_frame, settings, seed, pooled.lift_tests))

    return sample


def pooled_extractor(pooled: PooledInput, config: MMMConfig) -> Extract:
    """The ``extract`` function: every market's draws, side by side in market order."""
    layout = layout_for(pooled.markets[0], config)
    channels = list(pooled.channels)

    def extract(fitted: Any, settings: SamplerConfig) -> np.ndarray:
        idata, mmm = fitted.idata, fitted.mmm
        scales = idata["constant_data"]["target_scale"]
        posterior = idata["posterior"].to_dataset()
        sweep = mmm.sensitivity.run_sweep(
            var_input="channel_data",
            sweep_values=np.asarray(SWEEP_FACTORS),
            var_names="channel_contribution",
            sweep_type="multiplicative",
        )
        holdout = None
        if pooled.markets[0].holdout_weeks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                holdout = mmm.sample_posterior_predictive(
                    pooled.holdout_frame.drop(columns=[TARGET]),
                    include_last_observations=True,
                    extend_idata=False,
                    var_names=["mu"],
                    progressbar=False,
                    random_seed=settings.random_seed,
                )["mu"]
        packed = []
        for name in pooled.names:
            scale = float(scales.sel({MARKET: name}).values)
            one = posterior.sel({MARKET: name})
            channel = stacked_draws(one["channel_contribution"].sel(channel=channels)) * scale
            mu = stacked_draws(one["mu"]) * scale
            n_samples = channel.shape[0]
            swept = sweep.sel({MARKET: name, "channel": channels})
            swept = swept.transpose("sample", "sweep", "channel")
            parts = {
                "contributions": np.concatenate(
                    [channel, (mu - channel.sum(axis=-1))[..., None]], axis=-1
                ),
                "sweep": np.asarray(swept.values, dtype=float) * scale,
                "adstock": adstock_weights(one, config.adstock, config.l_max),
                "holdout": np.zeros((n_samples, 0))
                if holdout is None
                else np.asarray(
                    holdout.sel({MARKET: name}).transpose("sample", "date").values, dtype=float
                )
                * scale,
            }
            keep = thin_index(n_samples, settings.stored_draws)
            packed.append(layout.pack({part: values[keep] for part, values in parts.items()}))
        return np.concatenate(packed, axis=1)

    return extract


def split_pooled_draws(draws: np.ndarray, n_markets: int) -> list[np.ndarray]:
    """Each market's ``(draws, width)`` from the side-by-side array of a pooled fit.

    >>> [part.tolist() for part in split_pooled_draws(np.arange(4.0).reshape(1, 4), 2)]
    [[[0.0, 1.0]], [[2.0, 3.0]]]
    """
    return [np.ascontiguousarray(part) for part in np.split(draws, n_markets, axis=1)]
