"""The tracker's wave configuration (one YAML file), validated at the boundary.

Everything a wave needs to know comes from this file: input and output, demographics and
target groups, the model, the shared sampler, convergence and retry sections
(``misterp.config``), and how waves are tracked and reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from misterp.config import (
    ConvergenceThresholds,
    FrozenSettings,
    RetryPolicy,
    SamplerConfig,
    check_sampling_settings,
    check_storage_options,
    did_you_mean,
    read_config_file,
    validate_config,
)
from misterp.errors import ConfigError
from misterp.ids import ID_RULE, id_problem, shown
from misterp.mrp.census import CensusSeed
from misterp.periods import parse_period

__all__ = [
    "DEFAULT_INTERACTIONS",
    "CensusConfig",
    "Certainty",
    "CertaintySettings",
    "ConfigError",
    "FlagRule",
    "FlagSettings",
    "ModelConfig",
    "PriorConfig",
    "ProfileMissing",
    "ProfileSettings",
    "ReportingConfig",
    "SmoothingConfig",
    "TrackingConfig",
    "WaveConfig",
    "check_wave_id",
    "load_config",
    "parse_config",
]


class Certainty(StrEnum):
    """How far a number can be trusted, read at a glance from its interval's half-width."""

    SOLID = "solid"
    INDICATIVE = "indicative"
    TOO_UNCERTAIN = "too_uncertain"


class CertaintySettings(FrozenSettings):
    """Thresholds of the certainty grade on the half-width (``moe``) of an interval.

    Defaults from measured interval widths (README "Flags"; the demo's wave, 90% intervals):
    the median half-width is 2.6 points above 1,000 respondents, 3.5 at 401-1,000, 4.6 at
    201-400, 6.5 at 101-200, 9.4 at 31-100 and 14 at 30 or fewer. ``solid`` at <= 5 points is
    then a base of roughly 250 or more, ``indicative`` at <= 10 one of roughly 50 or more. The
    grade of a change is read off the change interval with the same thresholds.
    """

    solid: float = Field(
        0.05, gt=0.0, lt=1.0, description="grade solid when the interval's half-width is <= this"
    )
    indicative: float = Field(
        0.10,
        gt=0.0,
        lt=1.0,
        description="grade indicative when the half-width is <= this, too_uncertain above",
    )
    suppress: bool = Field(
        False,
        description="show 'too uncertain' instead of the number in the report and exports "
        "where the grade is too_uncertain (the parquet files keep every number)",
    )

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> CertaintySettings:
        if self.solid > self.indicative:
            raise ValueError(
                f"certainty.solid ({self.solid}) is above certainty.indicative "
                f"({self.indicative}); a solid number must also be indicative: lower solid or "
                "raise indicative"
            )
        return self


class ReportingConfig(FrozenSettings):
    """How estimates are reported: interval level, base thresholds, funnel and the report page.

    None of this changes a fit, so it is left out of the fit settings hash: changing it
    republishes a wave without refitting it.
    """

    interval: float = Field(
        0.90,
        gt=0.5,
        lt=0.999,
        description="level of the credible interval behind lower, upper and moe (e.g. 0.95)",
    )
    low_base: int = Field(50, ge=1, description="base_flag low_base when n is below this")
    very_low_base: int = Field(30, ge=1, description="base_flag very_low_base when n is below this")
    funnel: list[str] | None = Field(
        None,
        description="funnel stages in order, as question-id prefixes (the part before "
        "_BRAND), e.g. [aware, consider]; None: derived from the questions' bases",
    )
    trend_waves: int = Field(
        12, ge=1, description="waves shown in the report's trend charts and trends sheet"
    )
    headline_group: str = Field(
        "all",
        description="target group of the report's headline table and charts: 'all' (the "
        "whole population) or a name in target_groups",
    )
    certainty: CertaintySettings = CertaintySettings()

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> ReportingConfig:
        if self.very_low_base > self.low_base:
            raise ValueError(
                f"very_low_base ({self.very_low_base}) is above low_base ({self.low_base}); "
                "a very low base must also be low: lower very_low_base or raise low_base"
            )
        return self

    @field_validator("funnel")
    @classmethod
    def _stages_distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            repeated = sorted({s for s in value if value.count(s) > 1})
            if repeated or len(value) < 2:
                raise ValueError(
                    "funnel needs at least two distinct stages in order, e.g. "
                    f"[aware, consider]; got {value}"
                )
        return value


class PriorConfig(FrozenSettings):
    """Weakly informative priors on the logit scale (as in the Latana MRP model).

    Bambi's data-scaled defaults with a group effect on a two-level factor give R-hat 1.3 and
    hundreds of divergences on tracker data; these priors do not.
    """

    intercept_sigma: float = Field(2.5, gt=0, description="Intercept ~ Normal(0, s)")
    common_sigma: float = Field(1.0, gt=0, description="common (fixed) effects ~ Normal(0, s)")
    # Measured with bench/model_comparison.py and bench/wave_throughput.py (issue 14, README
    # "Modelling"): with few levels (4 education bands, 5 regions) a HalfNormal sd's posterior
    # reaches into the funnel at 0 and had the lowest ESS and the highest R-hat of every fit;
    # Gamma(2, 4) kept the accuracy and, with the pure interaction below, cut the retries of
    # the 100-model wave from 10 to 4 and the leapfrog steps per draw from 33 to 22.
    group_sigma: float = Field(
        0.5,
        gt=0,
        description="scale s of the group-effect sds' prior: the mean of Gamma(2, 2/s), or "
        "the scale of HalfNormal(s) with group_sd half_normal (previous default: 1.0)",
    )
    group_sd: Literal["gamma", "half_normal"] = Field(
        "gamma",
        description="prior of the main group effects' sds: 'gamma', Gamma(2, 2/group_sigma) "
        "(mean group_sigma, zero density at 0, so a term with few levels has no funnel at "
        "sd 0); 'half_normal', HalfNormal(group_sigma) (the previous default)",
    )
    # Measured on 36 simulated models (bench/wave_throughput.py --group-effects, and the
    # closing note of issue 14): zero_sum needs about half the leapfrog steps per draw, and
    # 1 fit in 36 had divergences at the first attempt against 9 in 36 with normal.
    # Measured with bench/model_comparison.py (issue 14): with (1|age:gender) in the default
    # formula, 0.5 kept retries where the truth has no interaction at 17 % (15 % without the
    # term) where group_sigma 1.0 let the collapsing sd make a funnel (42 %).
    interaction_sigma: float | None = Field(
        0.5,
        gt=0,
        description="sd ~ Gamma(2, 2/s) (mean s, zero-avoiding) of interaction group effects "
        "such as (1|age:gender); None: the main group effects' sd prior. "
        "It keeps an interaction the data do not support from becoming a funnel at sd 0",
    )
    # Measured (README "Modelling"): with 'total' the interaction could mimic the age main
    # effect; the divergences of the age x gender model sat where a large interaction sd met a
    # small age sd.
    interaction_zero_sum: Literal["margins", "total"] = Field(
        "margins",
        description="with zero_sum group effects, how a two-way interaction (1|a:b) whose "
        "factors are main effects sums to zero: 'margins', along each factor (the pure "
        "interaction, identified apart from the main effects); 'total', once over all pairs "
        "(the previous default)",
    )
    group_effects: Literal["zero_sum", "normal"] = Field(
        "zero_sum",
        description="group intercepts (1|x): 'zero_sum', sd times a ZeroSumNormal, so they "
        "sum to zero and the Intercept is the grand mean (no ridge between the Intercept and "
        "the group means); 'normal', independent N(0, sd) per level (non-centred)",
    )
    random_walk: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="ordered demographics and their levels in order, e.g. {age: [18-24, "
        "25-34, 35-44, 45-54, 55+]}: the group intercept (1|x) of each gets a random-walk "
        "prior across adjacent levels (Gao et al. 2021) instead of exchangeable levels, "
        "centred so the Intercept stays the grand mean; a level without respondents is "
        "interpolated from its neighbours. The order is the one given here (never sorted); "
        "the levels must be the census levels",
    )

    @field_validator("random_walk")
    @classmethod
    def _walks_have_ordered_levels(
        cls, value: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        for column, levels in value.items():
            repeated = sorted({level for level in levels if levels.count(level) > 1})
            if repeated:
                raise ValueError(
                    f"random_walk.{column} repeats {repeated}; list each level once, in order"
                )
            if len(levels) < 3:
                raise ValueError(
                    f"random_walk.{column} has {len(levels)} level(s); a walk needs at least "
                    "three levels in order (a two-level demographic is a common effect in the "
                    "default formula, which the walk would silently not touch)"
                )
        return value


#: Interactions of the default formula when ``model.interactions`` is not set: trackers' target
#: groups cross age and gender (young women, men 45+), and a main-effects model shrinks a change
#: or level confined to such a group towards the population's (issue 14's comparison).
DEFAULT_INTERACTIONS: tuple[tuple[str, str], ...] = (("age", "gender"),)


class ModelConfig(FrozenSettings):
    """Formulas in Bambi syntax; the response is always ``p(yes, n)`` over demographic cells."""

    formula: str | None = Field(
        None,
        description="default formula; None: binary demographics as common effects, "
        "others as group intercepts",
    )
    formulas: dict[str, str] = Field(
        default_factory=dict, description="per question_id overrides of the default formula"
    )
    interactions: list[tuple[str, str]] | None = Field(
        None,
        description="two-way interactions added to the default formula as group effects, "
        "e.g. [[age, gender]] adds (1|age:gender); None: age x gender when the wave has both "
        "demographics (DEFAULT_INTERACTIONS); []: main effects only. Where the truth has the "
        "interaction it cut target-group error by a third (bench/model_comparison.py)",
    )

    def interactions_for(self, demographics: Sequence[str]) -> list[tuple[str, str]]:
        """The interactions of the default formula for a wave with these demographics.

        >>> ModelConfig().interactions_for(["gender", "age", "region"])
        [('age', 'gender')]
        >>> ModelConfig().interactions_for(["age", "region"])
        []
        >>> ModelConfig(interactions=[]).interactions_for(["gender", "age"])
        []
        """
        if self.interactions is not None:
            return list(self.interactions)
        return [pair for pair in DEFAULT_INTERACTIONS if set(pair) <= set(demographics)]

    joint_questions: Literal["none", "multi"] = Field(
        "none",
        description="'multi': the options of each multi-select question (an association "
        "battery) are one model per market, sharing the demographic effects with partially "
        "pooled deviations per option, instead of one independent model per option; 'none': "
        "one model per option (the default)",
    )
    joint_families: dict[str, list[str]] = Field(
        default_factory=dict,
        description="named families of questions fitted as one joint model per market, e.g. "
        "{associations: [assoc_brand_a, assoc_brand_b]}: every option of every listed question "
        "is an item of the family, so a brand with a small base borrows the demographic "
        "structure of the others. A question is in at most one family; families take the "
        "default formula (no per-question override)",
    )

    @field_validator("joint_families")
    @classmethod
    def _families_are_distinct(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        owner: dict[str, str] = {}
        for name, questions in value.items():
            problem = id_problem(name)
            if problem is not None:
                raise ValueError(f"joint_families name {shown(name)} {problem}; {ID_RULE}")
            if not questions:
                raise ValueError(f"joint_families.{name} lists no question")
            for question in questions:
                if question in owner:
                    raise ValueError(
                        f"question '{question}' is in joint_families.{owner[question]} and "
                        f"joint_families.{name}; a question can be in one family only"
                    )
                owner[question] = name
        return value

    priors: PriorConfig = PriorConfig()


class SmoothingConfig(FrozenSettings):
    """The smoothed trend (``tracking.smoothing``): a local-level model over the last waves.

    Off by default: measured on simulated waves (``bench/smoothing_accuracy.py``), see the
    README's "Smoothed trend" for what it gains and loses against the raw wave-on-wave flag.
    """

    enabled: bool = Field(False, description="publish smoothed.parquet beside changes.parquet")
    window: int = Field(
        6,
        ge=2,
        description="waves smoothed together, this one included; a run is refused while fewer "
        "complete waves of the same kind exist",
    )


class FlagRule(StrEnum):
    """Which estimates of a wave get an arrow (a change, a group above the rest, brand vs brand)."""

    #: Bayesian false discovery rate: of all comparisons of a wave, flag the largest set whose
    #: mean posterior probability of being wrong is at most ``q``, so the expected share of
    #: false arrows among the arrows is at most ``q`` however many estimates there are.
    FDR = "fdr"
    #: Each comparison on its own at ``change_probability`` (two-sided): about
    #: ``1 - change_probability`` of unchanged estimates get an arrow, every wave.
    PER_ESTIMATE = "per_estimate"


class FlagSettings(FrozenSettings):
    """The flag rule in force for changes, group vs rest and brand vs brand comparisons."""

    # Measured with bench/flag_rules.py (README "Flags", 20 seeds, 1,000 models x 5 groups):
    # with no change anywhere per_estimate gives 253 false arrows a wave, fdr at q 0.10 0.1;
    # with 5% changed 72% of per_estimate's arrows are false, 5% of fdr 0.10's (0.05: 2%,
    # 0.20: 16%). The price is power for small changes in small groups (5 points at n = 300:
    # 29% per estimate, 3% fdr 0.10); q 0.10 keeps ~1.6 false arrows a wave where 0.20 has 7.5.
    rule: FlagRule = Field(
        FlagRule.FDR, description="fdr (default: false discovery rate q) or per_estimate"
    )
    q: float = Field(
        0.10, description="fdr: expected share of false flags among a wave's flags, in (0, 1)"
    )
    min_change: float = Field(
        0.0,
        description="smallest change that matters, as a share (0.02 = 2 points): flag on "
        "P(change > min_change) or P(change < -min_change) instead of P(up) or P(down)",
    )

    @field_validator("q")
    @classmethod
    def _q_is_a_share(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"q is {value:g}, but it is the share of false flags a wave may have and must "
                "lie strictly between 0 and 1: e.g. 0.10 (at most 10% of the flags false)"
            )
        return value

    @field_validator("min_change")
    @classmethod
    def _min_change_is_a_size(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"min_change is {value:g}, but it is the smallest change that matters, as a "
                "share, and must be at least 0 and below 1: e.g. 0.02 for 2 points, or 0 to "
                "flag any change"
            )
        return value


class TrackingConfig(FrozenSettings):
    """How waves follow one another: their period, and when a change counts as one.

    Wave ids are periods that sort (``2026-11``, ``2026-W45``, ``2026-Q4``, ``2026-11-03``),
    so "the previous wave" and "the same period last year" need no lookup table.
    """

    period: Literal["month", "week", "quarter", "date"] = Field(
        "month",
        description="what a wave id names: month YYYY-MM, week YYYY-Www (ISO), quarter "
        "YYYY-Qn, date YYYY-MM-DD",
    )
    change_probability: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="flags.rule per_estimate: two-sided level of the change flag, flagged when "
        "the central interval at this probability excludes 0, i.e. P(up) or P(down) >= "
        "(1 + p) / 2 (0.975 at 0.95)",
    )
    interval: float = Field(0.90, gt=0.0, lt=1.0, description="level of the change intervals")
    flags: FlagSettings = FlagSettings()
    rolling_waves: int = Field(3, ge=1, description="waves per window of the rolling view")
    fieldwork: dict[str, tuple[dt.date, dt.date]] = Field(
        default_factory=dict, description="per wave id: first and last day of fieldwork"
    )
    smoothing: SmoothingConfig = Field(
        default_factory=SmoothingConfig,
        description="a smoothed trend per estimate beside the raw changes (off by default)",
    )

    @field_validator("fieldwork")
    @classmethod
    def _fieldwork_in_order(
        cls, value: dict[str, tuple[dt.date, dt.date]]
    ) -> dict[str, tuple[dt.date, dt.date]]:
        for wave, (start, end) in value.items():
            if end < start:
                raise ValueError(
                    f"fieldwork of wave '{wave}' ends ({end}) before it starts ({start}); "
                    "give [first day, last day]"
                )
        return value


class ProfileMissing(StrEnum):
    """What a blank profile answer ("don't know", not asked) means."""

    #: Its own level, ``MISSING_PROFILE_LEVEL``: modelled and weighted like any other level, so
    #: an audience on the profile excludes those who did not say. No assumption is made.
    OWN_LEVEL = "own_level"
    #: Missing at random given the census cell: respondents without an answer are left out of
    #: the profile model and of the question models that use the profile, and the audience
    #: estimates assume they are like those who answered in their cell.
    AT_RANDOM = "at_random"


class ProfileSettings(FrozenSettings):
    """How profile variables (``profiles``) are modelled for audiences beyond the census."""

    missing: ProfileMissing = Field(
        ProfileMissing.OWN_LEVEL, description="own_level (default) or at_random"
    )
    predictor: bool = Field(
        True,
        description="question models get each profile an audience uses as an effect, so that "
        "users and non-users of one census cell can differ; off, an audience only reweights "
        "census cells",
    )
    # Measured with bench/profile_pooling.py (README "Audiences beyond the census"): pooling
    # sharpens the audience sizes while the shares stand still and biases them by about
    # drift x (K - 1) / 2 when they move, so it is an option, off by default.
    pool_waves: int = Field(
        1,
        ge=1,
        le=13,
        description="fit each profile model on this wave's respondents and those of the "
        "pool_waves - 1 waves before it (read from the input's {wave} folders; a wave not "
        "there is left out and said so); 1: this wave alone",
    )


class CensusConfig(FrozenSettings):
    """How a census given as margins and cross-tables (``census_tables``) becomes the joint.

    Unused when the wave gives the joint itself (``poststrat``). It changes the census cells'
    populations, never a fit, so it is left out of the fit settings hash.
    """

    # Measured with bench/census_margins.py (README "Census from margins"): uniform wins where
    # the tables carry the census' associations (target-group RMSE 1.004 x the true joint's
    # against 1.027 for sample); sample wins where they do not (1.045 against 1.41), but its
    # joint moves with each wave's respondents, so tracking would flag every change as
    # "census changed".
    seed: CensusSeed = Field(
        CensusSeed.UNIFORM,
        description="where iterative proportional fitting starts: 'uniform' (demographics "
        "that share no table come out independent) or 'sample' (the respondents' cell counts "
        "plus 0.5: they keep the sample's associations)",
    )
    tolerance: float = Field(
        1e-8, gt=0, lt=0.01, description="stop when every table is matched to this relative error"
    )
    max_iterations: int = Field(1000, ge=1, description="most cycles over the tables")


class WaveConfig(FrozenSettings):
    """A wave: where the input is, where results go, and how to model it."""

    input: str
    output: str
    wave: str | None = Field(None, description="wave id; substituted for {wave} in input/output")
    demographics: list[str] = Field(min_length=1)
    #: Respondent columns beyond the census (``category_user``, ``income_band``): target groups
    #: may use them; their share per census cell is modelled (synthetic poststratification).
    profiles: list[str] = Field(default_factory=list)
    profile_settings: ProfileSettings = ProfileSettings()
    target_groups: dict[str, dict[str, list[str]]] = Field(default_factory=dict)
    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    convergence: ConvergenceThresholds = ConvergenceThresholds()
    retry: RetryPolicy = RetryPolicy()
    reporting: ReportingConfig = ReportingConfig()
    tracking: TrackingConfig = TrackingConfig()
    census: CensusConfig = CensusConfig()
    workers: int | None = Field(None, ge=1, description="parallel fit processes; None: all cores")
    # Never serialised (exclude): a config handed to a flow as an object is stored as a run
    # parameter without them, and no record or manifest can carry a credential.
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        exclude=True,
        description="passed to fsspec/s3fs, e.g. endpoint_url",
    )

    #: ``input`` before ``{wave}`` was substituted (:meth:`resolved`): where the earlier
    #: waves' inputs are, for profile models pooled over waves.
    _input_template: str | None = PrivateAttr(default=None)

    def with_earlier_inputs(self, template: str) -> WaveConfig:
        """A copy that reads other waves' inputs from ``template`` (``DIR/{wave}``).

        For a wave whose own input is somewhere else for a while (an import validated in a
        temporary folder before it lands in ``DIR/WAVE``).
        """
        copy = self.model_copy()
        copy._input_template = template
        return copy

    def input_of(self, wave_id: str) -> str | None:
        """The input folder of another wave, by the input's ``{wave}``; None without one."""
        template = self._input_template or self.input
        return template.replace("{wave}", wave_id) if "{wave}" in template else None

    @model_validator(mode="after")
    def _options_s3fs_takes(self) -> WaveConfig:
        check_storage_options(self.storage_options, (self.input, self.output))
        return self

    @model_validator(mode="after")
    def _thresholds_the_draws_allow(self) -> WaveConfig:
        check_sampling_settings(self.sampler, self.convergence)
        return self

    @field_validator("wave")
    @classmethod
    def _safe_wave(cls, value: str | None) -> str | None:
        return None if value is None else check_wave_id(value)

    @field_validator("target_groups")
    @classmethod
    def _no_reserved_group(
        cls, value: dict[str, dict[str, list[str]]]
    ) -> dict[str, dict[str, list[str]]]:
        if "all" in value:
            raise ValueError("'all' is reserved for the whole population; rename the group")
        for name, definition in value.items():
            if not definition:
                raise ValueError(f"target group '{name}' is empty; give at least one demographic")
        return value

    @field_validator("target_groups")
    @classmethod
    def _groups_use_known_demographics(
        cls, value: dict[str, dict[str, list[str]]], info: Any
    ) -> dict[str, dict[str, list[str]]]:
        demographics = info.data.get("demographics") or []
        profiles = info.data.get("profiles") or []
        for name, definition in value.items():
            for column in definition:
                if column not in demographics and column not in profiles:
                    hint = did_you_mean(column, [*demographics, *profiles])
                    raise ValueError(
                        f"target group '{name}' uses '{column}', which is neither a demographic "
                        f"{demographics} nor a profile {profiles}{hint}; declare respondent "
                        f"columns beyond the census under profiles"
                    )
        return value

    @field_validator("profiles")
    @classmethod
    def _profiles_are_new_columns(cls, value: list[str], info: Any) -> list[str]:
        demographics = info.data.get("demographics") or []
        for name in value:
            if name in demographics:
                raise ValueError(
                    f"profile '{name}' is also a demographic; a census variable is a demographic "
                    "(in poststrat.csv), a respondent-only variable a profile, not both"
                )
            problem = id_problem(name)
            if problem is not None:
                raise ValueError(f"profile {shown(name)} {problem}; use {ID_RULE}")
        if len(set(value)) != len(value):
            raise ValueError(f"profiles {value} name a column twice")
        return value

    @property
    def audience_profiles(self) -> tuple[str, ...]:
        """The profiles some target group uses, in ``profiles`` order: only these are modelled."""
        used = {column for group in self.target_groups.values() for column in group}
        return tuple(name for name in self.profiles if name in used)

    def resolved(
        self,
        *,
        wave: str | None = None,
        input: str | None = None,
        output: str | None = None,
    ) -> WaveConfig:
        """Apply command-line overrides and substitute ``{wave}`` in the URIs."""
        wave_id = check_wave_id(wave) if wave else self.wave
        input_uri = input or self.input
        output_uri = output or self.output
        for name, uri in (("input", input_uri), ("output", output_uri)):
            if "{wave}" in uri and wave_id is None:
                raise ConfigError(f"{name} '{uri}' contains {{wave}}; pass --wave or set 'wave'")
        if wave_id is not None:
            input_uri = input_uri.replace("{wave}", wave_id)
            output_uri = output_uri.replace("{wave}", wave_id)
        resolved = self.model_copy(
            update={"wave": wave_id, "input": input_uri, "output": output_uri}
        )
        resolved._input_template = input or self._input_template or self.input
        resolved._check_tracked_wave()
        check_storage_options(resolved.storage_options, (resolved.input, resolved.output))
        return resolved

    @model_validator(mode="after")
    def _walks_on_known_demographics(self) -> WaveConfig:
        for column in self.model.priors.random_walk:
            if column not in self.demographics:
                hint = did_you_mean(column, self.demographics)
                raise ValueError(
                    f"model.priors.random_walk names '{column}', which is not in demographics "
                    f"{self.demographics}{hint}"
                )
        return self

    @model_validator(mode="after")
    def _headline_group_defined(self) -> WaveConfig:
        group = self.reporting.headline_group
        if group != "all" and group not in self.target_groups:
            hint = did_you_mean(group, list(self.target_groups))
            choices = ", ".join(["all", *sorted(self.target_groups)])
            raise ValueError(
                f"reporting.headline_group '{group}' is not a target group{hint}; "
                f"choose one of {choices}"
            )
        return self

    def staged_dump(self) -> dict[str, Any]:
        """The config as a staged plan stores it: JSON, no storage options, read back alike.

        The period rule depends on whether the config has a ``tracking`` section, which a full
        dump would always write: a wave id that is no period, valid without the section
        (tracking skips it), then read back as invalid in every fit. So the section is kept
        out when the config had none, and the read-back config judges the id as validation did.
        """
        unwritten = set() if "tracking" in self.model_fields_set else {"tracking"}
        return self.model_dump(mode="json", exclude={"storage_options", *unwritten})

    @model_validator(mode="after")
    def _wave_is_a_period(self) -> WaveConfig:
        self._check_tracked_wave()
        return self

    def _check_tracked_wave(self) -> None:
        """With a ``tracking`` section, the wave id must be a period of its kind.

        Without one, an id that is no period (the demo's ``demo``) is only skipped by the
        tracking step, so configs from before tracking keep working.
        """
        if self.wave is None or "tracking" not in self.model_fields_set:
            return
        parse_period(self.wave, self.tracking.period)


def check_wave_id(wave: str) -> str:
    """Return ``wave`` if it can name the wave's folder, else raise ``ConfigError`` saying why.

    The wave id becomes ``OUTPUT/WAVE/`` and is substituted for ``{wave}`` in the input and
    output URIs, so ``../w0`` or ``a/b`` would read or write another wave's files.

    >>> check_wave_id("2026-10")
    '2026-10'
    """
    problem = id_problem(wave)
    if problem is not None:
        raise ConfigError(
            f"wave id {shown(wave)} {problem}; the wave id (config 'wave', --wave) becomes the "
            f"wave's folder in the output and replaces {{wave}} in input/output, so use "
            f"{ID_RULE}, e.g. 2026-10"
        )
    return wave


def parse_config(raw: Mapping[str, Any], source: str = "<config>") -> WaveConfig:
    """Validate a config mapping, turning pydantic errors into one readable message."""
    return validate_config(WaveConfig, raw, source)


def load_config(uri: str | Path) -> WaveConfig:
    """Read and validate a YAML config file from a path or fsspec URL."""
    raw = read_config_file(uri)
    return parse_config(raw, source=str(uri))
