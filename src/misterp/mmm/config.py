"""Typed configuration of a media-mix run, validated at the boundary like the tracker's.

One YAML file says where the weekly data is, where results go, which pymc-marketing
components to use and how to sample. Unknown keys are refused with a "did you mean" hint, as
in :mod:`misterp.config`, whose sampler, convergence and retry types are reused unchanged so
that one retry policy and one meaning of "converged" hold across model families.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from misterp.config import (
    ConvergencePolicy,
    ConvergenceThresholds,
    RetryPolicy,
    SamplerConfig,
    check_sampling_settings,
    check_storage_options,
    read_config_file,
    validate_config,
)
from misterp.ids import ID_RULE, id_problem, shown

__all__ = [
    "BRAND_CONTROL",
    "DEFAULT_MMM_SAMPLER",
    "AdstockKind",
    "BrandLink",
    "BrandRole",
    "BudgetConfig",
    "ChannelPrior",
    "MMMConfig",
    "MMMConvergence",
    "MMMPriors",
    "MMMSampler",
    "MediaAlignment",
    "Pooling",
    "SaturationKind",
    "load_mmm_config",
    "parse_mmm_config",
]


class AdstockKind(StrEnum):
    """Carry-over shapes offered (pymc-marketing ``GeometricAdstock``, ``DelayedAdstock``)."""

    GEOMETRIC = "geometric"
    DELAYED = "delayed"


class SaturationKind(StrEnum):
    """Diminishing-returns shapes offered (``LogisticSaturation``, ``HillSaturation``)."""

    LOGISTIC = "logistic"
    HILL = "hill"


class ChannelPrior(StrEnum):
    """Where the prior on each channel's effect ceiling (``saturation_beta``) comes from.

    ``spend_share``: ``HalfNormal(sigma_c)`` with ``sigma_c = beta_sigma * n_channels *
    share_c`` (floored at ``min_sigma``), the recipe of pymc-marketing's example notebooks: a
    channel that gets 40 % of the budget may plausibly drive more than one that gets 2 %.
    ``pymc_marketing``: the library's default, one ``HalfNormal`` for every channel (sigma 2
    for logistic, 1.5 for Hill saturation). Both keep channel effects positive.
    """

    SPEND_SHARE = "spend_share"
    PYMC_MARKETING = "pymc_marketing"


class Pooling(StrEnum):
    """How markets share what is learnt about a channel.

    ``independent``: one model per market, each fitted alone (its own task or pod).
    ``hierarchical``: one model over all markets (pymc-marketing's ``dims=("market",)``) in
    which each channel's effect, carry-over and saturation in a market are drawn around that
    channel's mean over markets, with a learnt spread (partial pooling, as in Sun et al. 2017,
    "Geo-level Bayesian hierarchical media mix modeling"). A market short of data borrows from
    the others; a market with a lot of data keeps its own values. It is one fit for all
    markets, so it needs the same weeks and channels in every market.
    """

    INDEPENDENT = "independent"
    HIERARCHICAL = "hierarchical"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetConfig(_Frozen):
    """The next period's budget to split across each market's channels (pymc-marketing's optimiser).

    Spends are per week in the units of the media file. ``bounds`` fixes a channel's weekly
    spend range; every other channel may move within ``relative_bounds`` times its current
    weekly spend (the mean of the last ``reference_weeks`` fitted weeks), so the advice stays
    within the response curve's observed range, where the model knows something.
    """

    weeks: int = Field(4, ge=1, le=52, description="weeks of the period to plan")
    total: float | None = Field(
        None,
        gt=0,
        description="spend over the whole period; None: current weekly spend x weeks",
    )
    reference_weeks: int = Field(8, ge=1, description="last fitted weeks that set current spend")
    relative_bounds: tuple[float, float] = Field(
        (0.5, 1.5), description="[min, max] times current weekly spend, per channel"
    )
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="channel: [min, max] weekly spend, overriding"
    )

    @field_validator("relative_bounds", "bounds")
    @classmethod
    def _ordered(cls, value: Any) -> Any:
        pairs = value.values() if isinstance(value, dict) else [value]
        if any(not 0 <= low <= high for low, high in pairs):
            raise ValueError(f"bounds must be [min, max] with 0 <= min <= max; got {value}")
        return value


#: Name of the control column the brand metric becomes with ``brand_link.as: control``.
BRAND_CONTROL = "brand_metric"


class BrandRole(StrEnum):
    """What the tracker's brand metric is in the media-mix model.

    ``kpi``: the metric itself is explained by media (does advertising move awareness?), and
    the ``kpi`` file is not read. ``control``: it explains part of the KPI (sales) beside the
    media, scaled like the other controls.
    """

    KPI = "kpi"
    CONTROL = "control"


class MediaAlignment(StrEnum):
    """How weekly spend meets a brand metric measured once per wave (``brand_link.as: kpi``).

    ``wave``: each week's spend is its wave's mean weekly spend, so media and KPI carry the same
    information: a wave measures the period's level, so where in the month a channel spent is
    not in the KPI, and a model given the weekly spend against a flat month reads that
    within-month spend as noise and shrinks fast-moving channels (on simulated awareness, search
    came out 48 % low). Spend totals per wave, and so ROAS, are unchanged. ``week``: the spend
    as delivered.
    """

    WAVE = "wave"
    WEEK = "week"


class BrandLink(_Frozen):
    """One brand metric of the tracker's ``trends.parquet``, aligned to the media weeks.

    Markets are matched by id: the tracker's market ``DE`` is the media-mix market ``DE``.
    """

    trends: str = Field(
        description="the tracker's trends.parquet, or the results root that holds it"
    )
    question_id: str
    option: str
    target_group: str = "all"
    role: BrandRole = Field(alias="as", description="kpi or control")
    uncertainty_draws: int = Field(
        4,
        ge=0,
        le=50,
        description="as kpi: fit this many draws of the tracker's trend and pool the "
        "posteriors, so the survey's error reaches the ROAS intervals; 0: fit the trend's "
        "mean as if it were exact (intervals too narrow)",
    )
    media: MediaAlignment = Field(
        MediaAlignment.WAVE,
        description="as kpi: wave, each week's spend is its wave's mean weekly spend (the "
        "KPI has one value per wave); week, spend as delivered",
    )


class MMMPriors(_Frozen):
    """Priors on the scaled model (target and spend divided by their maxima)."""

    channel: ChannelPrior = ChannelPrior.SPEND_SHARE
    beta_sigma: float = Field(1.0, gt=0, description="multiplies the spend-share sigmas")
    min_sigma: float = Field(
        0.1, gt=0, description="smallest sigma, so a low-spend channel is not forced to zero"
    )
    market_sigma: float = Field(
        0.5,
        gt=0,
        description="pooling hierarchical: HalfNormal scale of how much a channel's log effect, "
        "log saturation and logit carry-over vary across markets (0.5: about +-65 % on the "
        "effect between typical markets)",
    )


class MMMSampler(SamplerConfig):
    """A market's sampler: pymc-marketing samples a fixed run, judged once.

    4 x (500 + 1,000) draws give bulk and tail ESS well above 400 on simulated markets;
    target_accept 0.9 leaves no divergences there (0.95 costs ~30 % more). The tracker's
    shorter warm-up (200) was measured for its models judged at looks, not for these. Also the
    defaults of a ``sampler:`` section in a media-mix config (before 2026-12-06 such a section
    fell back to the tracker's target_accept 0.95).
    """

    tune: int = Field(500, gt=0)
    target_accept: float = Field(0.9, gt=0.5, lt=1.0)
    check_every: int | None = Field(None, gt=0, description="pymc-marketing is judged once")


def market_sampler_config(section: Mapping[str, Any]) -> SamplerConfig:
    """A ``sampler:`` section with the media-mix defaults, as the shared ``SamplerConfig``.

    :class:`MMMSampler` only supplies the defaults: records store a ``SamplerConfig``, and a
    record read back must equal the one written.
    """
    return SamplerConfig.model_validate(MMMSampler.model_validate(section).model_dump())


#: Sampler defaults for one market (:class:`MMMSampler`'s).
DEFAULT_MMM_SAMPLER = market_sampler_config({})


class MMMConvergence(ConvergenceThresholds):
    """A media-mix fit's convergence: its parameters are what it publishes (ROAS, curves)."""

    policy: Literal[ConvergencePolicy.ALL_PARAMETERS] = ConvergencePolicy.ALL_PARAMETERS


class MMMConfig(_Frozen):
    """A media-mix run: one pymc-marketing MMM per market, fitted, checked and published."""

    input: str = Field(description="folder or fsspec URL with kpi, media (and controls) files")
    output: str = Field(description="results root; the run goes to OUTPUT/mmm/RUN/")
    run: str | None = Field(
        None,
        description="run id (a folder name); None: the last week of the data, so a re-run on "
        "the same data reuses its converged markets and new data gets its own folder",
    )
    markets: list[str] | None = Field(None, description="fit only these markets; None: all")
    pooling: Pooling = Field(
        Pooling.INDEPENDENT,
        description="independent: one model per market; hierarchical: one model over all "
        "markets with partially pooled channel parameters, for markets short of data",
    )
    adstock: AdstockKind = AdstockKind.GEOMETRIC
    saturation: SaturationKind = SaturationKind.LOGISTIC
    l_max: int = Field(8, ge=1, le=52, description="weeks a week's spend keeps working")
    yearly_seasonality: int = Field(
        2, ge=0, le=10, description="Fourier order of the yearly seasonality; 0: none"
    )
    trend: bool = Field(True, description="add a linear trend (as a control from 0 to 1)")
    controls: list[str] = Field(
        default_factory=list, description="columns of controls.csv to use (scaled by max |x|)"
    )
    priors: MMMPriors = MMMPriors()
    drop_zero_spend_channels: bool = Field(
        False,
        description="drop a channel with no spend in a market instead of refusing the input",
    )
    holdout_weeks: int = Field(
        12,
        ge=0,
        description="last weeks of each market kept out of the fit to measure out-of-sample "
        "error; contributions and ROAS cover the fitted weeks; 0: fit every week",
    )
    sampler: SamplerConfig = DEFAULT_MMM_SAMPLER
    convergence: ConvergenceThresholds = MMMConvergence()
    retry: RetryPolicy = RetryPolicy()
    workers: int | None = Field(
        None, ge=1, description="markets fitted at once in processes; None: one per 2 cores"
    )
    interval: float = Field(0.90, gt=0.5, lt=0.999, description="credible interval level")
    budget: BudgetConfig | None = Field(
        None, description="recommend next period's split per converged market (budget.parquet)"
    )
    brand_link: BrandLink | None = Field(
        None, description="a brand metric of the tracker as the KPI or as a control"
    )
    # Never serialised (exclude): a config handed to a flow as an object is stored as a run
    # parameter without them, and no record or manifest can carry a credential.
    storage_options: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _options_s3fs_takes(self) -> MMMConfig:
        check_storage_options(self.storage_options, (self.input, self.output))
        return self

    @field_validator("sampler", mode="before")
    @classmethod
    def _market_sampler_defaults(cls, value: Any) -> Any:
        # a `sampler:` section of a config file: the media-mix defaults for what it leaves out
        return market_sampler_config(value) if isinstance(value, Mapping) else value

    @field_validator("convergence", mode="before")
    @classmethod
    def _market_convergence_defaults(cls, value: Any) -> Any:
        return MMMConvergence.model_validate(value) if isinstance(value, Mapping) else value

    @field_validator("convergence")
    @classmethod
    def _parameters_are_the_estimands(cls, value: ConvergenceThresholds) -> ConvergenceThresholds:
        if value.policy is not ConvergencePolicy.ALL_PARAMETERS:
            raise ValueError(
                "a media-mix run publishes its parameters (ROAS, curves): convergence.policy "
                "must be all_parameters"
            )
        return value

    @model_validator(mode="after")
    def _thresholds_the_draws_allow(self) -> MMMConfig:
        check_sampling_settings(self.sampler, self.convergence)
        return self

    @field_validator("run")
    @classmethod
    def _safe_run(cls, value: str | None) -> str | None:
        if value is not None and (problem := id_problem(value)) is not None:
            raise ValueError(
                f"run id {shown(value)} {problem}; it becomes OUTPUT/mmm/RUN/, so use {ID_RULE}"
            )
        return value

    @field_validator("controls")
    @classmethod
    def _distinct_controls(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value) or {"trend", BRAND_CONTROL} & set(value):
            raise ValueError(
                f"controls must be distinct and neither 'trend' (set trend: true instead) nor "
                f"'{BRAND_CONTROL}' (set brand_link.as: control instead); got {value}"
            )
        return value

    @model_validator(mode="after")
    def _pooling_without_budget(self) -> MMMConfig:
        if self.pooling is Pooling.HIERARCHICAL and self.budget is not None:
            raise ValueError(
                "budget is not available with pooling: hierarchical yet (pymc-marketing's "
                "optimiser on a multi-market model splits one total across markets, not per "
                "market); drop budget, or fit with pooling: independent for the advice"
            )
        return self

    def model_settings(self) -> dict[str, Any]:
        """What decides a market's fit besides its data; hashed to tell if a fit is current.

        ``pooling`` and ``priors.market_sigma`` are left out while markets are independent, so
        fits made before pooling existed stay current.
        """
        settings = self._model_settings()
        if self.pooling is Pooling.INDEPENDENT:
            settings["priors"].pop("market_sigma", None)
        else:
            settings["pooling"] = self.pooling.value
        return settings

    def _model_settings(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json",
            include={
                "adstock",
                "saturation",
                "l_max",
                "yearly_seasonality",
                "trend",
                "controls",
                "priors",
                "holdout_weeks",
                "sampler",
                "convergence",
                "retry",
                "brand_link",
                "budget",
            },
        )


def parse_mmm_config(raw: Mapping[str, Any], source: str = "<config>") -> MMMConfig:
    """Validate a config mapping, turning pydantic errors into one readable ``ConfigError``."""
    return validate_config(MMMConfig, raw, source, "media-mix config")


def load_mmm_config(uri: str | Path) -> MMMConfig:
    """Read and validate a media-mix YAML config from a path or fsspec URL."""
    raw = read_config_file(uri)
    return parse_mmm_config(raw, source=str(uri))
