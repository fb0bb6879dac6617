"""One market's media-mix model: pymc-marketing's ``MMM``, and what the retry loop keeps of it.

misterp does not rewrite the model. It builds ``pymc_marketing.mmm.MMM`` (in 1.3 the
recommended class; ``pymc_marketing.mmm.multidimensional`` is a deprecated alias of it) with
the configured adstock and saturation, and hands the shared retry loop
(:func:`misterp.fitting.fit_with_policy`) a ``sample`` function (sampler settings in, a fitted
model out, sampled with nutpie) and an ``extract`` function (the fitted model in, a flat array
of posterior draws of everything the outputs need, in KPI units, out).

Scaling is part of the pipeline: pymc-marketing divides the KPI by its maximum and each
channel's spend by that channel's maximum (``DataDerivedScaling(method="max")``) before the
priors apply, and misterp divides each control by its largest absolute value, because
pymc-marketing leaves controls as they are while its ``gamma_control`` prior assumes the
scaled target. So raw units (spend in thousands, a KPI of 100,000) need no preparation.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import SamplerConfig
from misterp.diagnostics import check_convergence
from misterp.fitting import Diagnose, Extract, Sample
from misterp.mmm.brand import trend_draws
from misterp.mmm.budget import BUDGET_ROWS, optimise_budget
from misterp.mmm.config import (
    BRAND_CONTROL,
    AdstockKind,
    BrandRole,
    ChannelPrior,
    MediaAlignment,
    MMMConfig,
    SaturationKind,
)
from misterp.mmm.validation import MMMData, market_frame
from misterp.records import ConvergenceReport

__all__ = [
    "SWEEP_FACTORS",
    "TARGET",
    "TREND",
    "DrawLayout",
    "FittedMMM",
    "MarketInput",
    "adstock_weights",
    "build_mmm",
    "calibrated_mmm",
    "channel_prior_sigmas",
    "diagnose_fit",
    "layout_for",
    "market_extractor",
    "market_lift_tests",
    "market_sampler",
    "market_seed",
    "media_components",
    "prepare_market",
    "sample_mmm",
    "stacked_draws",
    "thin_index",
    "with_lift_tests",
]

logger = logging.getLogger(__name__)

#: Column of the KPI in the frame handed to pymc-marketing.
TARGET = "kpi"
#: Name of the linear-trend control misterp adds when ``trend`` is on.
TREND = "trend"
#: Multiples of each channel's actual spend at which its total contribution is evaluated:
#: 0.99 and 1.01 give the marginal ROAS by a central difference, the rest the response curve.
SWEEP_FACTORS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.99, 1.0, 1.01, 1.25, 1.5, 2.0)


@dataclass(frozen=True)
class MarketInput:
    """One market's weekly data, split into the fitted weeks and the holdout weeks.

    ``frame`` has ``date``, ``kpi``, one spend column per channel and the scaled controls
    (with ``trend`` when configured); the last ``holdout_weeks`` rows are never fitted.
    """

    market: str
    frame: pd.DataFrame
    channels: tuple[str, ...]
    controls: tuple[str, ...]
    holdout_weeks: int
    data_hash: str
    #: ``(draws, weeks)`` KPI series drawn from the tracker's posterior (``brand_link`` as the
    #: KPI, ``uncertainty_draws`` > 0); ``frame`` then holds their mean (the trend's mean).
    kpi_draws: np.ndarray | None = None
    #: The market's lift tests (``channel, x, delta_x, delta_y, sigma``: weekly spend and KPI
    #: units) of its fitted channels, or None; they calibrate the saturation curves.
    lift_tests: pd.DataFrame | None = None

    def versions(self) -> list[MarketInput]:
        """One input per KPI draw (the market itself when there are none), fitted in turn."""
        if self.kpi_draws is None:
            return [self]
        return [
            replace(self, frame=self.frame.assign(**{TARGET: series}), kpi_draws=None)
            for series in self.kpi_draws
        ]

    @property
    def fit_frame(self) -> pd.DataFrame:
        """The weeks the model is fitted on."""
        return self.frame.iloc[: len(self.frame) - self.holdout_weeks].reset_index(drop=True)

    @property
    def holdout_frame(self) -> pd.DataFrame:
        """The last weeks, kept out of the fit to measure out-of-sample error."""
        return self.frame.iloc[len(self.frame) - self.holdout_weeks :].reset_index(drop=True)

    @property
    def spend(self) -> pd.Series:
        """Total spend per channel over the fitted weeks."""
        return self.fit_frame[list(self.channels)].sum()


def prepare_market(data: MMMData, market: str, config: MMMConfig) -> MarketInput:
    """The model frame of one market: spend wide, controls scaled, a trend added.

    Controls are divided by their largest absolute value over the fitted weeks (holdout weeks
    use the same divisor, as a forecast would); the trend runs from 0 to 1 over the fitted
    weeks and on beyond 1 in the holdout. With ``brand_link`` the tracker's metric (aligned by
    :mod:`misterp.mmm.brand`) is either the KPI, with series drawn from its posterior for the
    pooled fits, or the control ``brand_metric``, scaled like the others (its posterior mean:
    a control's error would need an errors-in-variables model pymc-marketing does not offer).
    As the KPI, each week's spend is by default its wave's mean weekly spend
    (:class:`misterp.mmm.config.MediaAlignment`).
    """
    frame = market_frame(data, market, config.controls)
    n_fit = len(frame) - config.holdout_weeks
    controls = list(config.controls)
    link, kpi_draws = config.brand_link, None
    if link is not None and data.brand is not None:
        aligned = data.brand.market(market)
        if link.role is BrandRole.CONTROL:
            frame[BRAND_CONTROL] = aligned["mean"].to_numpy()
            controls.append(BRAND_CONTROL)
        else:
            if link.media is MediaAlignment.WAVE:
                waves = frame["date"].map(dict(zip(aligned["date"], aligned["wave"], strict=True)))
                for channel in data.channels[market]:
                    frame[channel] = frame.groupby(waves)[channel].transform("mean")
            if link.uncertainty_draws:
                seed = market_seed(market, config.sampler.random_seed)
                kpi_draws = trend_draws(aligned, link.uncertainty_draws, seed)
    for name in controls:
        divisor = float(frame[name].iloc[:n_fit].abs().max())
        frame[name] = frame[name] / divisor if divisor > 0 else frame[name]
    if config.trend:
        frame[TREND] = np.arange(len(frame)) / max(n_fit - 1, 1)
        controls.append(TREND)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    if kpi_draws is not None:
        digest.update(np.ascontiguousarray(kpi_draws).tobytes())
    lift = market_lift_tests(data, market)
    if lift is not None:
        digest.update(pd.util.hash_pandas_object(lift, index=False).to_numpy().tobytes())
    return MarketInput(
        market=market,
        frame=frame,
        channels=tuple(data.channels[market]),
        controls=tuple(controls),
        holdout_weeks=config.holdout_weeks,
        data_hash=digest.hexdigest(),
        kpi_draws=kpi_draws,
        lift_tests=lift,
    )


#: The lift-test columns pymc-marketing reads (``add_lift_test_measurements``).
LIFT_COLUMNS: tuple[str, ...] = ("channel", "x", "delta_x", "delta_y", "sigma")


def market_lift_tests(data: MMMData, market: str) -> pd.DataFrame | None:
    """The validated lift tests of ``market``'s fitted channels, or None without any.

    A test of a channel dropped for zero spend is left out (the model has no curve for it).

    >>> from types import SimpleNamespace
    >>> lift = pd.DataFrame({"market": ["DE", "DE", "FR"], "channel": ["tv", "radio", "tv"],
    ...     "x": [1.0, 2.0, 3.0], "delta_x": [1.0, 1.0, 1.0], "delta_y": [5.0, 5.0, 5.0],
    ...     "sigma": [1.0, 1.0, 1.0]})
    >>> data = SimpleNamespace(lift_tests=lift, channels={"DE": ["tv"], "FR": ["tv"]})
    >>> market_lift_tests(data, "DE").values.tolist()
    [['tv', 1.0, 1.0, 5.0, 1.0]]
    """
    lift = data.lift_tests
    if lift is None:
        return None
    rows = lift[(lift["market"] == market) & lift["channel"].isin(list(data.channels[market]))]
    if rows.empty:
        return None
    return rows.loc[:, list(LIFT_COLUMNS)].reset_index(drop=True)


def calibrated_mmm(market: MarketInput, config: MMMConfig) -> Any:
    """``build_mmm``, built on the fitted weeks, with the market's lift tests added, if any.

    pymc-marketing's ``add_lift_test_measurements`` needs a built model: it scales ``x`` and
    ``delta_x`` like the channel's spend and ``delta_y`` and ``sigma`` like the KPI, and adds
    the likelihood ``lift_measurements`` of the saturation curve's difference. Without lift
    tests the model is returned unbuilt (``fit`` builds it).
    """
    return with_lift_tests(build_mmm(market, config), market.fit_frame, market.lift_tests)


def with_lift_tests(mmm: Any, fit: pd.DataFrame, lift: pd.DataFrame | None) -> Any:
    """``mmm`` built on ``fit`` with the lift tests' likelihood added; unbuilt without tests."""
    if lift is None or lift.empty:
        return mmm
    mmm.build_model(fit.drop(columns=[TARGET]), fit[TARGET].rename(TARGET))
    mmm.add_lift_test_measurements(lift)
    return mmm


def channel_prior_sigmas(spend: pd.Series, config: MMMConfig) -> np.ndarray:
    """``saturation_beta`` sigmas by spend share: ``beta_sigma * n_channels * share``.

    >>> from misterp.mmm.config import MMMConfig
    >>> config = MMMConfig(input="in", output="out")
    >>> channel_prior_sigmas(pd.Series({"tv": 3.0, "search": 1.0}), config).tolist()
    [1.5, 0.5]
    """
    share = spend / spend.sum()
    sigmas = (config.priors.beta_sigma * len(spend) * share).clip(lower=config.priors.min_sigma)
    return np.asarray(sigmas, dtype=float)


def media_components(config: MMMConfig) -> tuple[Any, Any]:
    """The configured pymc-marketing adstock and saturation, with their default priors."""
    from pymc_marketing.mmm import (
        DelayedAdstock,
        GeometricAdstock,
        HillSaturation,
        LogisticSaturation,
    )

    adstock = {
        AdstockKind.GEOMETRIC: GeometricAdstock,
        AdstockKind.DELAYED: DelayedAdstock,
    }[config.adstock](l_max=config.l_max)
    saturation = {
        SaturationKind.LOGISTIC: LogisticSaturation,
        SaturationKind.HILL: HillSaturation,
    }[config.saturation]()
    return adstock, saturation


def sample_mmm(
    mmm: Any, fit: pd.DataFrame, settings: SamplerConfig, seed: int, lift: pd.DataFrame | None
) -> Any:
    """Sample a pymc-marketing MMM on the fitted weeks with nutpie (the InferenceData).

    With lift tests the model is built first and their likelihood added
    (:func:`with_lift_tests`).
    """
    features, target = fit.drop(columns=[TARGET]), fit[TARGET].rename(TARGET)
    cores = settings.cores or min(settings.chains, os.cpu_count() or 1)
    with warnings.catch_warnings():
        # pymc-marketing's notices about its own defaults are not the user's business
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return with_lift_tests(mmm, fit, lift).fit(
            features,
            target,
            nuts_sampler=settings.backend,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=cores,
            target_accept=settings.target_accept,
            random_seed=seed,
            progressbar=False,
        )


def build_mmm(market: MarketInput, config: MMMConfig) -> Any:
    """pymc-marketing's MMM for one market, with misterp's components and priors."""
    import xarray as xr
    from pymc_extras.prior import Prior  # type: ignore[import-untyped]
    from pymc_marketing.mmm import MMM

    adstock, saturation = media_components(config)
    model_config: dict[str, Any] = {}
    if config.priors.channel is ChannelPrior.SPEND_SHARE:
        sigma = xr.DataArray(
            channel_prior_sigmas(market.spend, config),
            dims="channel",
            coords={"channel": list(market.channels)},
        )
        model_config["saturation_beta"] = Prior("HalfNormal", sigma=sigma, dims="channel")
    return MMM(
        date_column="date",
        channel_columns=list(market.channels),
        target_column=TARGET,
        adstock=adstock,
        saturation=saturation,
        control_columns=list(market.controls) or None,
        yearly_seasonality=config.yearly_seasonality or None,
        model_config=model_config,
    )


def market_seed(market: str, base_seed: int) -> int:
    """A reproducible seed per market, different across markets."""
    offset = int(hashlib.sha256(market.encode()).hexdigest()[:8], 16)
    return (base_seed + offset) % (2**32)


@dataclass
class FittedMMM:
    """A sampled model and its posterior, as the retry loop passes it to extract."""

    mmm: Any
    idata: Any


def market_sampler(market: MarketInput, config: MMMConfig) -> Sample:
    """The ``sample`` function of the retry loop: a fresh model sampled with ``settings``."""

    def sample(settings: SamplerConfig) -> FittedMMM:
        mmm = build_mmm(market, config)
        seed = market_seed(market.market, settings.random_seed)
        return FittedMMM(mmm, sample_mmm(mmm, market.fit_frame, settings, seed, market.lift_tests))

    return sample


def diagnose_fit(fitted: Any, seconds: float) -> ConvergenceReport:
    """Diagnostics over the model's free parameters only.

    The deterministic contributions are left out on purpose: a channel's contribution in a week
    without (carried-over) spend is exactly 0 in every draw, and its R-hat is undefined, which
    the shared rule would read as not converged.
    """
    import xarray as xr

    posterior = fitted.idata["posterior"].to_dataset()
    names = [var.name for var in fitted.mmm.model.free_RVs if var.name in posterior]
    tree = xr.DataTree.from_dict(
        {"posterior": posterior[names], "sample_stats": fitted.idata["sample_stats"].to_dataset()}
    )
    return check_convergence(tree, seconds=seconds)


@dataclass(frozen=True)
class DrawLayout:
    """How one posterior draw of a market is laid out in the flat array that is stored.

    Per draw: the weekly contribution of every channel and of the baseline over the fitted
    weeks (KPI units), the total contribution of each channel at ``SWEEP_FACTORS`` times its
    actual spend, the adstock weights per channel and lag, and the predicted mean KPI of each
    holdout week. A flat float array per market keeps storage and reuse as simple as the
    tracker's cell draws.
    """

    n_dates: int
    channels: tuple[str, ...]
    l_max: int
    n_holdout: int
    #: Whether a budget recommendation is stored (``misterp.mmm.budget.BUDGET_ROWS``).
    budget: bool = False

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name and per-draw shape of each part, in stored order."""
        n = len(self.channels)
        return {
            "contributions": (self.n_dates, n + 1),
            "sweep": (len(SWEEP_FACTORS), n),
            "adstock": (n, self.l_max),
            "holdout": (self.n_holdout,),
            "budget": (len(BUDGET_ROWS) if self.budget else 0, n),
        }

    @property
    def width(self) -> int:
        """Numbers per draw."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    def pack(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """``(draws, width)`` from parts shaped ``(draws, *shape)``."""
        draws = next(iter(parts.values())).shape[0]
        empty = {n: np.zeros((draws, 0)) for n, s in self.shapes.items() if not math.prod(s)}
        parts = empty | dict(parts)
        return np.concatenate(
            [parts[name].reshape(draws, -1) for name in self.shapes], axis=1
        ).astype(np.float64)

    def unpack(self, draws: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of ``(draws, width)``, each ``(draws, *shape)``.

        >>> layout = DrawLayout(n_dates=2, channels=("tv",), l_max=1, n_holdout=0)
        >>> parts = layout.unpack(np.arange(2 * layout.width, dtype=float).reshape(2, -1))
        >>> parts["contributions"].shape, parts["sweep"].shape
        ((2, 2, 2), (2, 10, 1))
        """
        if draws.shape[1] != self.width:
            raise ValueError(f"stored draws have {draws.shape[1]} columns, layout {self.width}")
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            out[name] = draws[:, start : start + size].reshape(draws.shape[0], *shape)
            start += size
        return out


def layout_for(market: MarketInput, config: MMMConfig) -> DrawLayout:
    """The layout of a market's stored draws."""
    return DrawLayout(
        n_dates=len(market.fit_frame),
        channels=market.channels,
        l_max=config.l_max,
        n_holdout=market.holdout_weeks,
        budget=config.budget is not None,
    )


def adstock_weights(posterior: Any, kind: AdstockKind, l_max: int) -> np.ndarray:
    """Normalised lag weights per draw and channel, ``(samples, channel, lag)``.

    The same weights pymc-marketing applies with ``normalize=True``: geometric
    ``alpha**l``, delayed ``alpha**((l - theta)**2)``, each divided by its sum.
    """
    lags = np.arange(l_max)
    alpha = stacked_draws(posterior["adstock_alpha"])[..., None]
    if kind is AdstockKind.GEOMETRIC:
        weights = alpha**lags
    else:
        theta = stacked_draws(posterior["adstock_theta"])[..., None]
        weights = alpha ** ((lags - theta) ** 2)
    return weights / weights.sum(axis=-1, keepdims=True)


def stacked_draws(variable: Any) -> np.ndarray:
    """``(chain * draw, ...)`` values of a posterior variable, chains one after another."""
    stacked = variable.stack(sample=("chain", "draw"))
    return np.asarray(stacked.transpose("sample", ...).values, dtype=float)


def thin_index(n_samples: int, n_keep: int) -> np.ndarray:
    """Evenly spaced sample positions (all of them when there are fewer than ``n_keep``).

    >>> thin_index(10, 4).tolist()
    [0, 3, 6, 9]
    """
    if n_samples <= n_keep:
        return np.arange(n_samples)
    return np.linspace(0, n_samples - 1, n_keep).round().astype(int)


def market_extractor(market: MarketInput, config: MMMConfig) -> Extract:
    """The ``extract`` function of the retry loop: a fitted model in, its draws out."""
    layout = layout_for(market, config)
    channels = list(market.channels)

    def extract(fitted: Any, settings: SamplerConfig) -> np.ndarray:
        idata, mmm = fitted.idata, fitted.mmm
        scale = float(idata["constant_data"]["target_scale"].values)
        posterior = idata["posterior"].to_dataset()
        channel = stacked_draws(posterior["channel_contribution"].sel(channel=channels)) * scale
        mu = stacked_draws(posterior["mu"]) * scale
        baseline = mu - channel.sum(axis=-1)
        sweep = mmm.sensitivity.run_sweep(
            var_input="channel_data",
            sweep_values=np.asarray(SWEEP_FACTORS),
            var_names="channel_contribution",
            sweep_type="multiplicative",
        )
        sweep_values = np.asarray(sweep.sel(channel=channels).values, dtype=float) * scale
        parts = {
            "contributions": np.concatenate([channel, baseline[..., None]], axis=-1),
            "sweep": sweep_values,
            "adstock": adstock_weights(posterior, config.adstock, config.l_max),
        }
        n_samples = channel.shape[0]
        if market.holdout_weeks:
            holdout = market.holdout_frame
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                predicted = mmm.sample_posterior_predictive(
                    holdout.drop(columns=[TARGET]),
                    include_last_observations=True,
                    extend_idata=False,
                    var_names=["mu"],
                    progressbar=False,
                    random_seed=settings.random_seed,
                )
            values = predicted["mu"].transpose("sample", "date").values
            parts["holdout"] = np.asarray(values, dtype=float) * scale
        else:
            parts["holdout"] = np.zeros((n_samples, 0))
        if config.budget is not None:
            advice = optimise_budget(mmm, market.fit_frame, channels, config.budget)
            # one row per posterior sample, as the other parts (repeated if pymc-marketing
            # returned fewer)
            parts["budget"] = advice[np.arange(n_samples) % len(advice)]
        keep = thin_index(n_samples, settings.stored_draws)
        return layout.pack({name: part[keep] for name, part in parts.items()})

    return extract


#: The diagnose function the run hands the retry loop.
DIAGNOSE: Diagnose = diagnose_fit
