"""Synthetic brand-tracking waves with a known population truth.

The demo and the recovery tests need data whose correct answer is known exactly. The truth is
therefore computed from the generating cell probabilities and the census, never from the
sample, and the sample comes from a deliberately biased online panel so that an unweighted
share is visibly wrong while MRP should recover the truth. ``simulate_waves`` draws several
waves of one population with declared true changes, so that change detection can be scored.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pandas as pd

from misterp.mrp.ordered import random_walk_matrix

__all__ = [
    "DEFAULT_AUDIENCES",
    "DEFAULT_LEVELS",
    "DEFAULT_TARGET_GROUPS",
    "MarketWorld",
    "ProfileTruth",
    "SimulatedSeries",
    "SimulatedWave",
    "TrueChange",
    "WaveLayout",
    "WaveTruthSpec",
    "audience_truth",
    "compute_truth",
    "interaction_predictor",
    "market_world",
    "profile_world",
    "simulate_wave",
    "simulate_waves",
    "true_changes",
    "wave_layout",
]

#: Demographic levels, in column order; the first level of each is the reference level.
DEFAULT_LEVELS: dict[str, tuple[str, ...]] = {
    "gender": ("female", "male"),
    "age": ("18-24", "25-34", "35-44", "45-54", "55+"),
    "education": ("low", "medium", "high"),
    "region": ("north", "east", "south", "west", "central"),
}

#: Target groups reported beside the whole population (``"all"``, always implied).
DEFAULT_TARGET_GROUPS: dict[str, dict[str, list[str]]] = {
    "women_18_34": {"gender": ["female"], "age": ["18-24", "25-34"]},
    "high_education": {"education": ["high"]},
    "men_55_plus": {"gender": ["male"], "age": ["55+"]},
}

#: Census marginal shares before the per-market perturbation; dimensions not listed are uniform.
DEFAULT_MARGINALS: dict[str, tuple[float, ...]] = {
    "gender": (0.51, 0.49),
    "age": (0.11, 0.16, 0.16, 0.17, 0.40),
    "education": (0.28, 0.47, 0.25),
}

#: Relative panel-joining propensity per level: the young and the highly educated are online.
DEFAULT_PANEL_TILT: dict[str, dict[str, float]] = {
    "age": {"18-24": 3.0, "25-34": 2.0, "35-44": 1.0, "45-54": 0.7, "55+": 0.35},
    "education": {"low": 0.5, "medium": 1.0, "high": 2.5},
}

#: Standard deviation of the generating effects per demographic, on the logit scale.
DEFAULT_EFFECT_SD: dict[str, float] = {
    "gender": 0.4,
    "age": 0.7,
    "education": 0.5,
    "region": 0.3,
}

_TRUTH_COLUMNS = ["market", "question_id", "option", "target_group", "true_value"]
_AUDIENCE_COLUMNS = ["market", "target_group", "true_share"]

#: Audiences on the simulated profile (``ProfileTruth``): the profile alone, and crossed with
#: demographics.
DEFAULT_AUDIENCES: dict[str, dict[str, list[str]]] = {
    "category_users": {"category_user": ["yes"]},
    "category_users_18_34": {"category_user": ["yes"], "age": ["18-24", "25-34"]},
}

#: Logit-scale effect of P(category user | census cell) per demographic level's draw.
DEFAULT_PROFILE_SD: dict[str, float] = {"gender": 0.4, "age": 0.8, "education": 0.6, "region": 0.3}

#: Logit-scale effect of being a category user (the profile's last level) on each outcome,
#: by question prefix: users are more aware, more considering and tick more associations.
DEFAULT_PROFILE_EFFECT: dict[str, float] = {"aware": 1.2, "consider": 0.8, "assoc": 0.4}

#: Extra entropy of the profile's random streams: a wave with a profile draws everything
#: else from the streams a wave without one uses, so the profile changes no other draw.
_PROFILE_STREAM = 0x9F0F11E


@dataclass(frozen=True)
class ProfileTruth:
    """A respondent variable the census does not count (category users), for audiences.

    Each census cell ``c`` has ``P(level | c)``: a logit model on the demographics (one
    ``N(0, effect_sd[dim])`` draw per demographic level) whose intercept is solved so that
    ``share`` of the population is in the last level. Being in the last level adds
    ``outcome_effect[prefix]`` to the logit of every ``prefix_<brand>`` item; the items'
    intercepts are then solved again so that each item's population share is the one the wave
    would have without the profile. The panel selects on demographics only and a respondent's
    level is drawn from ``P(level | c)`` of their cell: selection is ignorable given the cell
    and the profile, the assumption synthetic poststratification needs.

    Attributes
    ----------
    name, levels
        Respondent column and its levels (the last one is "user").
    share
        Population share of the last level.
    effect_sd
        Logit-scale standard deviation of the demographic effects on P(last level | cell).
    outcome_effect
        Question prefix (``aware``, ``consider``, ``assoc``) -> logit-scale effect of the
        last level; prefixes not listed: 0.
    audiences
        Target groups on the profile (alone or with demographics), added to the wave's.
    """

    name: str = "category_user"
    levels: tuple[str, ...] = ("no", "yes")
    share: float = 0.35
    effect_sd: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PROFILE_SD))
    outcome_effect: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_PROFILE_EFFECT)
    )
    audiences: Mapping[str, Mapping[str, list[str]]] = field(
        default_factory=lambda: {
            k: {d: list(v) for d, v in g.items()} for k, g in DEFAULT_AUDIENCES.items()
        }
    )

    def __post_init__(self) -> None:
        if len(self.levels) != 2 or len(set(self.levels)) != 2:
            raise ValueError(f"profile {self.name!r} needs two distinct levels, got {self.levels}")
        if not 0.0 < self.share < 1.0:
            raise ValueError(f"profile share {self.share} must be in (0, 1)")
        unknown = set(self.outcome_effect) - {"aware", "consider", "assoc"}
        if unknown:
            raise ValueError(
                f"profile outcome_effect names {sorted(unknown)}; use aware, consider, assoc"
            )


@dataclass(frozen=True)
class WaveTruthSpec:
    """Parameters of a synthetic wave; defaults give the demo's two-market, three-brand wave.

    Attributes
    ----------
    markets, brands
        Market codes and brand names; each brand gets ``aware_``, ``consider_`` and ``assoc_``
        questions in every market.
    n_respondents
        Panel sample size per market (fixed, not random).
    levels
        Demographic name -> levels; key order is the column order.
    association_options
        Options of the multi-choice ``assoc_<brand>`` question, asked only to the aware.
    common_effects
        Demographics modelled as one slope on "not the first level" (a common effect); the
        others get one independent effect per level (group effects).
    effect_sd
        Logit-scale standard deviation of the generating effects, per demographic.
    smooth_effects
        Group-effect demographics whose levels, in ``levels`` order, follow a random walk
        (adjacent levels alike, as age bands are in real data) instead of independent
        effects: the same normal draws, cumulated, centred and scaled to about ``effect_sd``
        per level (``misterp.mrp.ordered.random_walk_matrix``), so every other draw is
        unchanged. Empty by default: independent levels, the worst case for a walk prior.
    interaction_sd
        Two-way interactions: ``{("age", "gender"): 0.5}`` adds to every item's logit one
        effect per level pair of the two demographics, drawn N(0, sd) independently per item
        and pair, which no main-effects model can represent (e.g. young women differ from
        what their age and their gender add up to). Empty by default; drawn after everything
        else in the market's world stream, so that turning it on changes no other draw and
        turning it off gives exactly the waves of a spec without it.
    association_shared
        Share (0-1) of the demographic main effects that all association items of a market
        (every option of every brand's ``assoc_`` question) have in common: each item's
        effects are ``sqrt(1 - r)`` times its own draw plus ``sqrt(r)`` times one profile
        shared by the market's associations, so the variance per item is unchanged. Real
        batteries have such a profile (some groups tick more boxes for every brand); a joint
        model of the battery (``model.joint_questions``) can borrow it. 0 by default: items
        independent; drawn after the interactions, so 0 changes no other draw.
    rare_brand, rare_awareness
        One brand whose population awareness is pinned low, so that rare outcomes (few aware
        respondents, small association bases) are exercised. ``None`` disables it.
    awareness_range
        Population awareness of the other brands is drawn uniformly from this range.
    consideration_ratio
        Consideration among the aware (consideration is asked only of the aware, as in a
        funnel), drawn uniformly from this range; the population's consideration is awareness
        times it.
    association_range
        Population share of each association option among the aware, drawn uniformly.
    marginals
        Census marginal shares per demographic (missing ones: uniform), perturbed per market.
    population_range
        Census total per market is drawn uniformly from this range.
    census_association
        Dependence between two demographics in the census joint: ``{("age", "education"):
        -1.0}`` adds ``s * u_a * u_b`` to the log of every cell's population, where ``u`` is
        the level's position in ``levels`` order scaled to -1 ... 1 (a linear-by-linear
        association: here the older, the less educated). Without it the joint is a product
        of margins times per-cell noise, so margins alone recover its structure. Empty by
        default; it draws nothing, so every other draw is unchanged.
    panel_tilt
        Relative selection propensity per demographic level (missing levels: 1).
    target_groups
        Target group name -> {demographic: levels}; ``"all"`` is always added to the truth.
    profile
        A profile variable beyond the census (``ProfileTruth``) and its audiences, or None
        (default). Its draws come from streams of their own, so a spec without it gives the
        waves it always gave.
    """

    markets: tuple[str, ...] = ("DE", "FR")
    brands: tuple[str, ...] = ("brand01", "brand02", "brand03")
    n_respondents: int = 1500
    levels: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_LEVELS))
    association_options: tuple[str, ...] = (
        "innovative",
        "trustworthy",
        "good_value",
        "sustainable",
    )
    common_effects: tuple[str, ...] = ("gender",)
    effect_sd: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EFFECT_SD))
    smooth_effects: tuple[str, ...] = ()
    interaction_sd: Mapping[tuple[str, str], float] = field(default_factory=dict)
    association_shared: float = 0.0
    rare_brand: str | None = "brand03"
    rare_awareness: float = 0.07
    awareness_range: tuple[float, float] = (0.35, 0.85)
    consideration_ratio: tuple[float, float] = (0.3, 0.7)
    association_range: tuple[float, float] = (0.15, 0.65)
    marginals: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_MARGINALS)
    )
    population_range: tuple[int, int] = (3_000_000, 9_000_000)
    census_association: Mapping[tuple[str, str], float] = field(default_factory=dict)
    panel_tilt: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_PANEL_TILT.items()}
    )
    target_groups: Mapping[str, Mapping[str, list[str]]] = field(
        default_factory=lambda: {
            k: {d: list(v) for d, v in g.items()} for k, g in DEFAULT_TARGET_GROUPS.items()
        }
    )
    profile: ProfileTruth | None = None

    def __post_init__(self) -> None:
        # Fail at construction rather than deep inside the generator with an index error.
        if self.n_respondents < 1:
            raise ValueError("n_respondents must be positive")
        if not self.markets or not self.brands or not self.levels:
            raise ValueError("markets, brands and levels must be non-empty")
        if self.rare_brand is not None and self.rare_brand not in self.brands:
            raise ValueError(f"rare_brand {self.rare_brand!r} is not one of {self.brands}")
        for dim in self.common_effects:
            if dim not in self.levels:
                raise ValueError(f"common effect {dim!r} is not a demographic")
        for dim in self.smooth_effects:
            if dim not in self.levels or dim in self.common_effects or len(self.levels[dim]) < 3:
                raise ValueError(
                    f"smooth effect {dim!r} must be a group-effect demographic with at least "
                    "three levels"
                )
        seen: set[frozenset[str]] = set()
        for pair, sd in self.interaction_sd.items():
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(self.levels):
                raise ValueError(
                    f"interaction_sd key {pair!r} must be two different demographics of "
                    f"{list(self.levels)}, e.g. ('age', 'gender')"
                )
            if frozenset(pair) in seen:
                raise ValueError(f"interaction_sd names {pair!r} twice (in either order)")
            seen.add(frozenset(pair))
            if not sd >= 0:
                raise ValueError(f"interaction_sd[{pair!r}] = {sd} must be >= 0")
        for pair, strength in self.census_association.items():
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(self.levels):
                raise ValueError(
                    f"census_association key {pair!r} must be two different demographics of "
                    f"{list(self.levels)}, e.g. ('age', 'education')"
                )
            if not np.isfinite(strength):
                raise ValueError(f"census_association[{pair!r}] = {strength} must be finite")
        if not 0.0 <= self.association_shared <= 1.0:
            raise ValueError(f"association_shared = {self.association_shared} must be in [0, 1]")
        for dim, shares in self.marginals.items():
            if dim in self.levels and len(shares) != len(self.levels[dim]):
                raise ValueError(f"marginals[{dim!r}] needs {len(self.levels[dim])} shares")
        columns = dict(self.levels)
        if self.profile is not None:
            if self.profile.name in self.levels:
                raise ValueError(f"profile {self.profile.name!r} is also a demographic")
            clash = set(self.profile.audiences) & set(self.target_groups)
            if clash:
                raise ValueError(f"profile audiences {sorted(clash)} are also target groups")
            columns[self.profile.name] = self.profile.levels
        for name, group in self.all_target_groups.items():
            if name == "all":
                raise ValueError('"all" is implied and cannot be redefined')
            for dim, wanted in group.items():
                unknown = set(wanted) - set(columns.get(dim, ()))
                if dim not in columns or unknown:
                    raise ValueError(f"target group {name!r}: unknown {dim!r} levels {unknown}")

    @property
    def demographics(self) -> tuple[str, ...]:
        """Demographic column names, in order."""
        return tuple(self.levels)

    @property
    def profiles(self) -> tuple[str, ...]:
        """Profile column names: the profile's, if any."""
        return () if self.profile is None else (self.profile.name,)

    @property
    def all_target_groups(self) -> dict[str, Mapping[str, list[str]]]:
        """``target_groups`` and the profile's audiences."""
        audiences = {} if self.profile is None else dict(self.profile.audiences)
        return {**self.target_groups, **audiences}


@dataclass(frozen=True, eq=False)
class SimulatedWave:
    """A synthetic wave in the input-file layout, plus its exact truth.

    Attributes
    ----------
    seed, spec
        What generated it.
    respondents
        ``respondent_id`` (``"DE-000001"``), ``market``, one column per demographic, then
        the profile's column if the spec has one.
    answers
        ``respondent_id``, ``question_id``, ``option``, ``selected`` (int8 0/1). Respondents not
        asked a question (the unaware, for ``assoc_<brand>``) have no rows for it.
    poststrat
        ``market``, the demographics, ``population`` (positive int): every cell of the joint.
    questions
        ``question_id``, ``market``, ``brand``, ``kind`` (single/multi), ``base`` (None or
        ``"aware_<brand>=yes"``).
    truth
        ``market``, ``question_id``, ``option``, ``target_group``, ``true_value``; the
        population share, conditional on the base where the question has one.
    cell_truth
        ``market``, ``question_id``, ``option``, the demographics, ``p_true``: the generating
        probability in each census cell (conditional on the base); with a profile, in each
        census cell x profile level (the profile's column after the demographics).
    demographics
        Demographic column names.
    target_groups
        Target group definitions (without the implied ``"all"``), the profile's audiences
        included.
    profiles
        Profile column names (respondent columns the census does not count); empty without.
    audience_truth
        ``market``, ``target_group``, ``true_share``: each group's share of the population
        (``"all"`` included), from N_c x P(level | c) for an audience on the profile.
    truth_population
        The population the truth weights: ``poststrat`` without a profile; with one,
        ``market``, the demographics, the profile and ``population`` = N_c x P(level | c).
    """

    seed: int
    spec: WaveTruthSpec
    respondents: pd.DataFrame
    answers: pd.DataFrame
    poststrat: pd.DataFrame
    questions: pd.DataFrame
    truth: pd.DataFrame
    cell_truth: pd.DataFrame
    demographics: tuple[str, ...]
    target_groups: dict[str, dict[str, list[str]]]
    profiles: tuple[str, ...]
    audience_truth: pd.DataFrame
    truth_population: pd.DataFrame

    def write(
        self,
        uri: str,
        *,
        include_truth: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the wave folder (CSV) to a local path or an fsspec URL.

        The truth is left out by default so that the folder looks exactly like a real wave.
        """
        fs, root = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        root = root.rstrip("/")
        if "file" in _protocols(fs):
            fs.makedirs(root, exist_ok=True)
        frames = {
            "respondents": self.respondents,
            "answers": self.answers,
            "poststrat": self.poststrat,
            "questions": self.questions,
        }
        if include_truth:
            frames["truth"] = self.truth
        for name, frame in frames.items():
            with fs.open(f"{root}/{name}.csv", "w") as handle:
                frame.to_csv(handle, index=False)

    def config(self, input_uri: str, output_uri: str) -> dict[str, Any]:
        """Minimal pipeline config (plain, YAML-serialisable types) for this wave."""
        profiles = {"profiles": list(self.profiles)} if self.profiles else {}
        return {
            "input": input_uri,
            "output": output_uri,
            "demographics": list(self.demographics),
            **profiles,
            "target_groups": {
                name: {dim: list(levels) for dim, levels in group.items()}
                for name, group in self.target_groups.items()
            },
        }


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_intercepts(eta: np.ndarray, weights: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Intercepts that make each row's weighted mean probability equal its target.

    Drawing intercepts directly would let the demographic effects push a "rare" brand far from
    rare; pinning the population-level share keeps the spec's rates meaningful. Bisection is
    vectorised over rows and the weighted mean is monotone in the intercept.
    """
    lo = np.full(eta.shape[0], -20.0)
    hi = np.full(eta.shape[0], 20.0)
    total = weights.sum(axis=1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        share = (weights * _expit(mid[:, None] + eta)).sum(axis=1) / total
        too_high = share > target
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return 0.5 * (lo + hi)


def _cell_grid(levels: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    """Level indices of every census cell, shape (cells, demographics), row-major."""
    sizes = [len(v) for v in levels.values()]
    return np.array(list(itertools.product(*(range(s) for s in sizes))), dtype=np.int64)


def _centred_rank(index: np.ndarray, n_levels: int) -> np.ndarray:
    """Level positions scaled to -1 (first level) ... 1 (last level)."""
    return 2.0 * index / max(n_levels - 1, 1) - 1.0


def _census(rng: np.random.Generator, spec: WaveTruthSpec, grid: np.ndarray) -> np.ndarray:
    """Integer populations per cell: perturbed product of marginals, every cell positive."""
    log_joint = np.zeros(grid.shape[0])
    for j, (dim, lv) in enumerate(spec.levels.items()):
        base = np.asarray(spec.marginals.get(dim, np.ones(len(lv))), dtype=float)
        shares = base * rng.lognormal(0.0, 0.15, size=len(lv))
        log_joint += np.log(shares / shares.sum())[grid[:, j]]
    column = {dim: j for j, dim in enumerate(spec.levels)}
    for (first, second), strength in spec.census_association.items():  # draws nothing
        a, b = column[first], column[second]
        log_joint += (
            strength
            * _centred_rank(grid[:, a], len(spec.levels[first]))
            * (_centred_rank(grid[:, b], len(spec.levels[second])))
        )
    joint = np.exp(log_joint) * rng.lognormal(0.0, 0.3, size=grid.shape[0])
    total = rng.uniform(*spec.population_range)
    return np.maximum(np.rint(joint / joint.sum() * total), 1).astype(np.int64)


def _linear_predictor(
    rng: np.random.Generator, spec: WaveTruthSpec, grid: np.ndarray, n_items: int
) -> np.ndarray:
    """Demographic part of the logit for ``n_items`` independent outcomes, shape (items, cells)."""
    eta = np.zeros((n_items, grid.shape[0]))
    for j, (dim, lv) in enumerate(spec.levels.items()):
        sd = spec.effect_sd.get(dim, 0.5)
        if dim in spec.common_effects:
            slope = rng.normal(0.0, sd, size=n_items)
            eta += slope[:, None] * (grid[None, :, j] > 0)
        else:
            effects = rng.normal(0.0, sd, size=(n_items, len(lv)))
            if dim in spec.smooth_effects:  # the walk of the first K - 1 draws, in level order
                effects = effects[:, :-1] @ random_walk_matrix(lv, lv).T
            eta += effects[:, grid[:, j]]
    return eta


def interaction_predictor(
    rng: np.random.Generator, spec: WaveTruthSpec, grid: np.ndarray, n_items: int
) -> np.ndarray:
    """Two-way interaction part of the logit, shape (items, cells): one N(0, sd) per level pair."""
    eta = np.zeros((n_items, grid.shape[0]))
    column = {dim: j for j, dim in enumerate(spec.levels)}
    for (first, second), sd in spec.interaction_sd.items():
        a, b = column[first], column[second]
        n_b = len(spec.levels[second])
        effects = rng.normal(0.0, sd, size=(n_items, len(spec.levels[first]) * n_b))
        eta += effects[:, grid[:, a] * n_b + grid[:, b]]
    return eta


def _panel_propensity(spec: WaveTruthSpec, grid: np.ndarray) -> np.ndarray:
    tilt = np.ones(grid.shape[0])
    for j, (dim, lv) in enumerate(spec.levels.items()):
        factors = spec.panel_tilt.get(dim, {})
        tilt *= np.array([factors.get(level, 1.0) for level in lv])[grid[:, j]]
    return tilt


def compute_truth(
    cell_truth: pd.DataFrame,
    poststrat: pd.DataFrame,
    questions: pd.DataFrame,
    target_groups: Mapping[str, Mapping[str, list[str]]],
    demographics: tuple[str, ...] | list[str],
) -> pd.DataFrame:
    """Population truth per market, question, option and target group (plus ``"all"``).

    A question with base ``"q=o"`` is answered only by people in the base, so its truth is
    ``sum N_c P_base(c) p(c) / sum N_c P_base(c)`` over the group's cells; without a base the
    base weight is 1. Exposed so that truth for other target groups can be computed later.
    """
    keys = ["market", *demographics]
    cells = cell_truth.merge(poststrat[[*keys, "population"]], on=keys, how="left")
    if cells["population"].isna().any():
        raise ValueError("cell_truth has cells missing from poststrat")
    bases = questions[["market", "question_id", "base"]].copy()
    bases["base"] = bases["base"].where(bases["base"].notna() & (bases["base"] != ""), None)
    cells = cells.merge(bases, on=["market", "question_id"], how="left")
    split = cells["base"].str.split("=", n=1, expand=True)
    cells["base_question"] = split.get(0)
    cells["base_option"] = split.get(1)
    base_p = cell_truth.rename(
        columns={
            "question_id": "base_question",
            "option": "base_option",
            "p_true": "p_base",
        }
    )
    cells = cells.merge(base_p, on=[*keys, "base_question", "base_option"], how="left")
    missing = cells["base"].notna() & cells["p_base"].isna()
    if missing.any():
        raise ValueError(f"unknown base(s): {sorted(cells.loc[missing, 'base'].unique())}")
    cells["weight"] = cells["population"] * cells["p_base"].fillna(1.0)
    cells["weighted_p"] = cells["weight"] * cells["p_true"]

    out = []
    groups: dict[str, Mapping[str, list[str]]] = {"all": {}, **target_groups}
    for name, group in groups.items():
        mask = np.ones(len(cells), dtype=bool)
        for dim, wanted in group.items():
            mask &= cells[dim].isin(list(wanted)).to_numpy()
        sums = (
            cells.loc[mask]
            .groupby(["market", "question_id", "option"], sort=False)[["weighted_p", "weight"]]
            .sum()
            .reset_index()
        )
        sums["target_group"] = name
        sums["true_value"] = sums["weighted_p"] / sums["weight"]
        out.append(sums[_TRUTH_COLUMNS])
    return pd.concat(out, ignore_index=True)


def _split_base(base: str) -> tuple[str, str]:
    question, _, option = base.partition("=")
    return question, option


_Item = tuple[str, str, str, str, str | None]


@dataclass(frozen=True)
class WaveLayout:
    """What every market and wave of one spec share: cells and items."""

    grid: np.ndarray
    cell_frame: pd.DataFrame
    items: list[_Item]
    base_index: np.ndarray

    @property
    def conditional(self) -> np.ndarray:
        """Per item: asked only of those who gave its base answer."""
        return self.base_index >= 0


def wave_layout(spec: WaveTruthSpec) -> WaveLayout:
    """The census cells and the items (question x option) a simulated wave asks about."""
    grid = _cell_grid(spec.levels)
    cell_frame = pd.DataFrame(
        {
            dim: np.asarray(lv, dtype=object)[grid[:, j]]
            for j, (dim, lv) in enumerate(spec.levels.items())
        }
    )
    # Items: one per (question, option). As in a real tracker's funnel, consideration and the
    # associations are asked only of those aware of the brand: aware is their base.
    items: list[_Item] = []
    for brand in spec.brands:
        aware = f"aware_{brand}=yes"
        items.append((f"aware_{brand}", "yes", brand, "single", None))
        items.append((f"consider_{brand}", "yes", brand, "single", aware))
        for option in spec.association_options:
            items.append((f"assoc_{brand}", option, brand, "multi", aware))
    item_index = {(q, o): i for i, (q, o, *_rest) in enumerate(items)}
    base_index = np.array([-1 if b is None else item_index[_split_base(b)] for *_rest, b in items])
    return WaveLayout(grid, cell_frame, items, base_index)


@dataclass(frozen=True)
class MarketWorld:
    """One market's census and generating model (logits, so that changes can shift them)."""

    population: np.ndarray
    logit: np.ndarray  # (items, cells)
    interaction: np.ndarray | None = None  # (items, cells): the part no main effect explains


def market_world(
    world: np.random.Generator, spec: WaveTruthSpec, layout: WaveLayout
) -> MarketWorld:
    """Draw one market's census and calibrated generating logits from its world stream."""
    items = layout.items
    population = _census(world, spec, layout.grid)
    eta = _linear_predictor(world, spec, layout.grid, len(items))
    target = np.empty(len(items))
    aware_target: dict[str, float] = {}
    for i, (qid, _option, brand, _kind, _base) in enumerate(items):
        if qid.startswith("aware_"):
            if brand == spec.rare_brand:
                aware_target[brand] = spec.rare_awareness
            else:
                aware_target[brand] = world.uniform(*spec.awareness_range)
            target[i] = aware_target[brand]
        elif qid.startswith("consider_"):
            # asked among the aware: the target is P(consider | aware), so the population's
            # consideration is awareness times this ratio, as before it was conditional
            target[i] = world.uniform(*spec.consideration_ratio)
        else:
            target[i] = world.uniform(*spec.association_range)
    interaction = None
    if spec.interaction_sd:
        # Last draws of the world stream: a spec without interactions keeps every number.
        interaction = interaction_predictor(world, spec, layout.grid, len(items))
    if spec.association_shared:  # after the interactions: r = 0 keeps every number
        profile = _linear_predictor(world, spec, layout.grid, 1)[0]
        battery = np.array([kind == "multi" for _q, _o, _b, kind, _base in items])
        r = spec.association_shared
        eta[battery] = np.sqrt(1.0 - r) * eta[battery] + np.sqrt(r) * profile
    if interaction is not None:
        eta = eta + interaction
    logit = np.empty_like(eta)
    unconditional = ~layout.conditional
    weights = np.broadcast_to(population.astype(float), eta.shape)
    intercept = _calibrate_intercepts(
        eta[unconditional], weights[unconditional], target[unconditional]
    )
    logit[unconditional] = intercept[:, None] + eta[unconditional]
    conditional = layout.conditional
    base_weights = population[None, :] * _expit(logit[layout.base_index[conditional]])
    intercept = _calibrate_intercepts(eta[conditional], base_weights, target[conditional])
    logit[conditional] = intercept[:, None] + eta[conditional]
    return MarketWorld(population, logit, interaction)


@dataclass(frozen=True)
class ProfileWorld:
    """One market's profile: P(level | census cell) and the world on census cells x levels.

    ``layout`` and ``world`` have one cell per census cell and profile level (census cell
    major, level minor) with population N_c x P(level | c), so that truth, changes and target
    groups work on them as on census cells.
    """

    p_level: np.ndarray  # (census cells, levels)
    layout: WaveLayout
    world: MarketWorld


def _population_shares(layout: WaveLayout, population: np.ndarray, logit: np.ndarray) -> np.ndarray:
    """Each item's population share (among its base, for a conditional item)."""
    prob = _expit(logit)
    weights = np.broadcast_to(population.astype(float), prob.shape).copy()
    conditional = layout.conditional
    weights[conditional] = weights[conditional] * prob[layout.base_index[conditional]]
    return np.asarray((weights * prob).sum(axis=1) / weights.sum(axis=1))


def profile_world(
    rng: np.random.Generator, spec: WaveTruthSpec, layout: WaveLayout, world: MarketWorld
) -> ProfileWorld:
    """Draw a market's P(level | cell) from its profile stream and expand its world by level.

    The last level's ``outcome_effect`` is added to the census cells' logits, and each item
    then gets the one intercept shift that keeps its population share (among its base, for a
    conditional item) what ``world`` has: the spec's rates stay meaningful with the profile.
    """
    profile = spec.profile
    if profile is None:
        raise ValueError("the spec has no profile")
    grid = layout.grid
    eta = np.zeros(grid.shape[0])
    for j, (dim, lv) in enumerate(spec.levels.items()):
        eta += rng.normal(0.0, profile.effect_sd.get(dim, 0.0), size=len(lv))[grid[:, j]]
    population = world.population.astype(float)
    intercept = _calibrate_intercepts(eta[None, :], population[None, :], np.array([profile.share]))
    p_last = _expit(intercept[0] + eta)
    p_level = np.column_stack([1.0 - p_last, p_last])

    n_levels = len(profile.levels)
    cell = np.repeat(np.arange(grid.shape[0]), n_levels)
    level = np.tile(np.arange(n_levels), grid.shape[0])
    frame = layout.cell_frame.iloc[cell].reset_index(drop=True)
    frame[profile.name] = np.asarray(profile.levels, dtype=object)[level]
    expanded = WaveLayout(
        np.column_stack([grid[cell], level]), frame, layout.items, layout.base_index
    )
    effect = np.array(
        [profile.outcome_effect.get(qid.partition("_")[0], 0.0) for qid, *_rest in layout.items]
    )
    eta_items = world.logit[:, cell] + effect[:, None] * (level == n_levels - 1)[None, :]
    weights = (population[:, None] * p_level).reshape(-1)
    target = _population_shares(layout, world.population, world.logit)
    logit = np.empty_like(eta_items)
    unconditional = ~layout.conditional
    all_weights = np.broadcast_to(weights, eta_items.shape)
    shift = _calibrate_intercepts(
        eta_items[unconditional], all_weights[unconditional], target[unconditional]
    )
    logit[unconditional] = shift[:, None] + eta_items[unconditional]
    conditional = layout.conditional
    base_weights = weights[None, :] * _expit(logit[layout.base_index[conditional]])
    shift = _calibrate_intercepts(eta_items[conditional], base_weights, target[conditional])
    logit[conditional] = shift[:, None] + eta_items[conditional]
    interaction = None if world.interaction is None else world.interaction[:, cell]
    return ProfileWorld(p_level, expanded, MarketWorld(weights, logit, interaction))


class _MarketFrames(NamedTuple):
    """One market's part of a wave: input frames, cell truth and the population it weights."""

    respondents: pd.DataFrame
    answers: pd.DataFrame
    poststrat: pd.DataFrame
    cell_truth: pd.DataFrame
    truth_population: pd.DataFrame  # poststrat, or census cells x profile levels


@dataclass(frozen=True)
class _PanelProfile:
    """A market's profile for one wave's panel: its level stream and expanded world."""

    rng: np.random.Generator
    world: ProfileWorld


def _market_frames(
    panel: np.random.Generator,
    spec: WaveTruthSpec,
    layout: WaveLayout,
    market: str,
    population: np.ndarray,
    prob: np.ndarray,
    profile: _PanelProfile | None = None,
) -> _MarketFrames:
    """One market's panel sample (respondents, answers), census and cell truth.

    With ``profile``, ``prob`` is on its census cells x levels, and each respondent's level is
    drawn from P(level | their cell) from the profile's own stream.
    """
    grid, cell_frame, items = layout.grid, layout.cell_frame, layout.items
    conditional, base_index = layout.conditional, layout.base_index
    # Biased panel: cells drawn with census share times a demographic propensity.
    select = population * _panel_propensity(spec, grid)
    cell_of = panel.choice(grid.shape[0], size=spec.n_respondents, p=select / select.sum())
    column, truth_layout = cell_of, layout
    if profile is not None:
        p_level = profile.world.p_level
        level_of = profile.rng.random(len(cell_of))[:, None] > p_level[cell_of].cumsum(axis=1)
        level_of = np.minimum(level_of.sum(axis=1), p_level.shape[1] - 1)
        column = cell_of * p_level.shape[1] + level_of
        truth_layout = profile.world.layout
    p_resp = prob[:, column].T  # (respondents, items)
    selected = panel.random(p_resp.shape) < p_resp
    asked = np.ones_like(selected)
    asked[:, conditional] = selected[:, base_index[conditional]]
    r_idx, i_idx = np.nonzero(asked)

    ids = np.array(
        [f"{market}-{k:06d}" for k in range(1, spec.n_respondents + 1)],
        dtype=object,
    )
    resp = cell_frame.iloc[cell_of].reset_index(drop=True)
    resp.insert(0, "market", market)
    resp.insert(0, "respondent_id", ids)
    if profile is not None and spec.profile is not None:
        resp[spec.profile.name] = np.asarray(spec.profile.levels, dtype=object)[level_of]

    item_q = np.array([it[0] for it in items], dtype=object)
    item_o = np.array([it[1] for it in items], dtype=object)
    answers = pd.DataFrame(
        {
            "respondent_id": ids[r_idx],
            "question_id": item_q[i_idx],
            "option": item_o[i_idx],
            "selected": selected[r_idx, i_idx].astype(np.int8),
        }
    )

    ps = cell_frame.copy()
    ps.insert(0, "market", market)
    ps["population"] = population

    truth_cells = truth_layout.cell_frame
    n_cells = truth_cells.shape[0]
    ct = pd.concat([truth_cells] * len(items), ignore_index=True)
    ct.insert(0, "option", np.repeat(item_o, n_cells))
    ct.insert(0, "question_id", np.repeat(item_q, n_cells))
    ct.insert(0, "market", market)
    ct["p_true"] = prob.reshape(-1)
    truth_population = ps
    if profile is not None:
        truth_population = truth_cells.copy()
        truth_population.insert(0, "market", market)
        truth_population["population"] = profile.world.world.population
    return _MarketFrames(resp, answers, ps, ct, truth_population)


def audience_truth(
    population: pd.DataFrame, target_groups: Mapping[str, Mapping[str, list[str]]]
) -> pd.DataFrame:
    """Each target group's exact share of its market's population (``"all"`` included).

    ``population`` has ``market``, the columns the groups use and ``population`` (census
    cells, or census cells x profile levels with N_c x P(level | c)).
    """
    out = []
    total = population.groupby("market", sort=False)["population"].sum()
    groups: dict[str, Mapping[str, list[str]]] = {"all": {}, **target_groups}
    for name, group in groups.items():
        mask = np.ones(len(population), dtype=bool)
        for dim, wanted in group.items():
            mask &= population[dim].isin(list(wanted)).to_numpy()
        inside = population.loc[mask].groupby("market", sort=False)["population"].sum()
        share = (inside.reindex(total.index, fill_value=0.0) / total).rename("true_share")
        out.append(share.reset_index().assign(target_group=name))
    return pd.concat(out, ignore_index=True)[_AUDIENCE_COLUMNS]


def _assemble(
    seed: int,
    spec: WaveTruthSpec,
    layout: WaveLayout,
    parts: list[_MarketFrames],
) -> SimulatedWave:
    questions = []
    for market in spec.markets:
        seen: set[str] = set()
        for qid, _option, brand, kind, base in layout.items:
            if qid not in seen:
                seen.add(qid)
                questions.append(
                    {
                        "question_id": qid,
                        "market": market,
                        "brand": brand,
                        "kind": kind,
                        "base": base,
                    }
                )
    poststrat_df = pd.concat([p.poststrat for p in parts], ignore_index=True)
    cell_truth_df = pd.concat([p.cell_truth for p in parts], ignore_index=True)
    population_df = pd.concat([p.truth_population for p in parts], ignore_index=True)
    questions_df = pd.DataFrame(
        questions, columns=["question_id", "market", "brand", "kind", "base"]
    )
    target_groups = {
        name: {dim: list(levels) for dim, levels in group.items()}
        for name, group in spec.all_target_groups.items()
    }
    demos = spec.demographics
    columns = (*demos, *spec.profiles)
    return SimulatedWave(
        seed=seed,
        spec=spec,
        respondents=pd.concat([p.respondents for p in parts], ignore_index=True),
        answers=pd.concat([p.answers for p in parts], ignore_index=True),
        poststrat=poststrat_df,
        questions=questions_df,
        truth=compute_truth(cell_truth_df, population_df, questions_df, target_groups, columns),
        cell_truth=cell_truth_df,
        demographics=demos,
        target_groups=target_groups,
        profiles=spec.profiles,
        audience_truth=audience_truth(population_df, target_groups),
        truth_population=population_df,
    )


def _profile_streams(
    seed: int, spec: WaveTruthSpec, n_waves: int
) -> list[tuple[np.random.SeedSequence, list[np.random.SeedSequence]]] | None:
    """Per market: the profile's world stream and one level stream per wave (None: no profile).

    Spawned from a seed sequence of their own, so that the streams every other draw comes
    from are those of a spec without a profile.
    """
    if spec.profile is None:
        return None
    streams = []
    for market_seq in np.random.SeedSequence([seed, _PROFILE_STREAM]).spawn(len(spec.markets)):
        world_seq, *panel_seqs = market_seq.spawn(1 + n_waves)
        streams.append((world_seq, panel_seqs))
    return streams


def simulate_wave(seed: int, spec: WaveTruthSpec | None = None) -> SimulatedWave:
    """Generate a synthetic wave from a biased online panel, with its exact population truth.

    Each market draws its census and generating model from one random stream and its panel
    sample from another, so changing ``n_respondents`` leaves the truth unchanged.
    """
    spec = spec or WaveTruthSpec()
    layout = wave_layout(spec)
    parts = []
    market_seqs = np.random.SeedSequence(seed).spawn(len(spec.markets))
    profile_seqs = _profile_streams(seed, spec, 1)
    for m, (market, market_seq) in enumerate(zip(spec.markets, market_seqs, strict=True)):
        world_seq, panel_seq = market_seq.spawn(2)
        world = market_world(np.random.default_rng(world_seq), spec, layout)
        profile, truth_world = None, world
        if profile_seqs is not None:
            profile_seq, (level_seq,) = profile_seqs[m]
            expanded = profile_world(np.random.default_rng(profile_seq), spec, layout, world)
            profile = _PanelProfile(np.random.default_rng(level_seq), expanded)
            truth_world = expanded.world
        parts.append(
            _market_frames(
                np.random.default_rng(panel_seq),
                spec,
                layout,
                market,
                world.population,
                _expit(truth_world.logit),
                profile,
            )
        )
    return _assemble(seed, spec, layout, parts)


# -- several waves with known true changes ----------------------------------------------------

_CHANGE_COLUMNS = [
    "market",
    "question_id",
    "option",
    "target_group",
    "reference_wave",
    "wave",
    "reference_value",
    "value",
    "true_change",
    "declared",
]


@dataclass(frozen=True)
class TrueChange:
    """A declared change of the population truth between two consecutive waves.

    From ``from_wave`` on, the generating logits of ``question_id``/``option`` are shifted in
    every census cell of ``target_group`` by one constant, solved so that the group's true
    share is ``delta`` higher than it would be without this change (``delta=0.05``: +5 points).

    Attributes
    ----------
    question_id, option
        The estimate that changes, e.g. ``"aware_brand02"``, ``"yes"``.
    target_group
        ``"all"`` or a name in ``WaveTruthSpec.all_target_groups`` (an audience on the
        profile too): the cells that move.
    delta
        Change of the group's true share, in proportions (``-0.03``: 3 points down).
    from_wave
        First wave with the change; it persists in later waves.
    market
        One market, or ``None`` for every market.
    """

    question_id: str
    option: str
    target_group: str
    delta: float
    from_wave: str
    market: str | None = None


@dataclass(frozen=True, eq=False)
class SimulatedSeries:
    """Consecutive synthetic waves of one population, and their true changes.

    Attributes
    ----------
    waves
        Wave label -> wave, in order. Every wave has the same census (``poststrat``).
    changes
        The declared changes that generated the series.
    true_changes
        One row per market x question x option x target group x consecutive pair of waves:
        ``reference_wave``, ``wave``, ``reference_value``, ``value``, ``true_change``
        (``value - reference_value``, exact) and ``declared`` (the estimate a ``TrueChange``
        names, taking effect at ``wave``). Undeclared rows can still move: a change inside a
        target group moves ``"all"`` and overlapping groups, and an awareness change moves the
        base, hence the truth, of the brand's association questions.
    """

    waves: dict[str, SimulatedWave]
    changes: tuple[TrueChange, ...]
    true_changes: pd.DataFrame


def true_changes(truths: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Exact changes of the truth between consecutive waves (ordered as ``truths``).

    Parameters
    ----------
    truths
        Wave label -> truth frame (``SimulatedWave.truth`` layout), in wave order.

    Returns
    -------
    pandas.DataFrame
        The ``SimulatedSeries.true_changes`` columns, with ``declared`` all False.
    """
    keys = ["market", "question_id", "option", "target_group"]
    labels = list(truths)
    out = []
    for reference, wave in itertools.pairwise(labels):
        pair = truths[reference].merge(
            truths[wave], on=keys, suffixes=("_ref", ""), validate="one_to_one"
        )
        frame = pair[keys].copy()
        frame["reference_wave"] = reference
        frame["wave"] = wave
        frame["reference_value"] = pair["true_value_ref"]
        frame["value"] = pair["true_value"]
        frame["true_change"] = pair["true_value"] - pair["true_value_ref"]
        frame["declared"] = False
        out.append(frame[_CHANGE_COLUMNS])
    if not out:
        return pd.DataFrame(columns=_CHANGE_COLUMNS)
    return pd.concat(out, ignore_index=True)


def _check_changes(
    spec: WaveTruthSpec, labels: list[str], changes: tuple[TrueChange, ...], layout: WaveLayout
) -> None:
    """Raise one error listing every unusable change, with the valid choices."""
    items = {(q, o) for q, o, *_rest in layout.items}
    groups = ["all", *spec.all_target_groups]
    problems = []
    for change in changes:
        where = f"{change.question_id}/{change.option}/{change.target_group}"
        if (change.question_id, change.option) not in items:
            problems.append(f"{where}: no such question/option in the spec")
        if change.target_group not in groups:
            problems.append(f"{where}: target group not one of {sorted(groups)}")
        if change.market is not None and change.market not in spec.markets:
            problems.append(f"{where}: market {change.market!r} not one of {spec.markets}")
        if change.from_wave not in labels[1:]:
            problems.append(
                f"{where}: from_wave {change.from_wave!r} must be a wave after the first "
                f"({labels[1:]}); the first wave is the reference"
            )
        if not 0 < abs(change.delta) < 1:
            problems.append(f"{where}: delta {change.delta} must be a non-zero proportion")
    if problems:
        raise ValueError("unusable true changes:\n  " + "\n  ".join(problems))


def _group_mask(layout: WaveLayout, group: Mapping[str, list[str]]) -> np.ndarray:
    mask = np.ones(layout.grid.shape[0], dtype=bool)
    for dim, wanted in group.items():
        mask &= layout.cell_frame[dim].isin(list(wanted)).to_numpy()
    return mask


def _shifted_logits(
    spec: WaveTruthSpec,
    layout: WaveLayout,
    world: MarketWorld,
    active: list[TrueChange],
) -> np.ndarray:
    """The market's logits with ``active`` changes applied, each solved for its ``delta``.

    Changes to unconditional questions go first, so that a change to an association question
    is solved on the awareness base of the same wave.
    """
    logit = world.logit.copy()
    item_index = {(q, o): i for i, (q, o, *_rest) in enumerate(layout.items)}
    groups: dict[str, Mapping[str, list[str]]] = {"all": {}, **spec.all_target_groups}
    ordered = sorted(
        active, key=lambda c: bool(layout.conditional[item_index[c.question_id, c.option]])
    )
    for change in ordered:
        i = item_index[change.question_id, change.option]
        mask = _group_mask(layout, groups[change.target_group])
        weights = world.population[mask].astype(float)
        if layout.conditional[i]:
            weights = weights * _expit(logit[layout.base_index[i], mask])
        before = float((weights * _expit(logit[i, mask])).sum() / weights.sum())
        target = before + change.delta
        if not 0 < target < 1:
            raise ValueError(
                f"{change.question_id}/{change.option}/{change.target_group}: true share "
                f"{before:.3f} cannot move by {change.delta:+.3f}; choose a smaller delta"
            )
        shift = _calibrate_intercepts(logit[i, mask][None, :], weights[None, :], np.array([target]))
        logit[i, mask] += shift[0]
    return logit


def simulate_waves(
    seed: int,
    spec: WaveTruthSpec | None = None,
    waves: Sequence[str] = ("w1", "w2"),
    changes: Sequence[TrueChange] = (),
) -> SimulatedSeries:
    """Simulate consecutive waves of one population, with declared true changes between them.

    Every wave has the same census and the same generating model as ``simulate_wave(seed,
    spec)``, except for the declared ``changes``, and a fresh panel sample (same biased panel
    design, its own random stream). The first wave is exactly ``simulate_wave(seed, spec)``.
    A change shifts the logits of one question/option in every cell of one target group by a
    constant, solved so that the group's true share moves by ``delta``: the shape of the
    demographic effects within the group is kept, and no cell leaves (0, 1).

    Parameters
    ----------
    seed
        Seed of the population (census and model) and of every wave's panel.
    spec
        Population and panel design; ``WaveTruthSpec()`` by default.
    waves
        Wave labels, in order (e.g. ``["2026-09", "2026-10"]``).
    changes
        True changes; each takes effect at its ``from_wave`` and persists.

    Returns
    -------
    SimulatedSeries
        The waves with their truth, and the exact true changes between consecutive waves.

    Raises
    ------
    ValueError
        Duplicate or missing wave labels, or changes naming unknown questions, groups, markets
        or waves, or moving a share out of (0, 1).
    """
    spec = spec or WaveTruthSpec()
    labels = list(waves)
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"waves must be distinct labels, at least one; got {labels}")
    change_list = tuple(changes)
    layout = wave_layout(spec)
    _check_changes(spec, labels, change_list, layout)
    order = {label: k for k, label in enumerate(labels)}

    parts: list[list[_MarketFrames]] = [[] for _ in labels]
    market_seqs = np.random.SeedSequence(seed).spawn(len(spec.markets))
    profile_seqs = _profile_streams(seed, spec, len(labels))
    for m, (market, market_seq) in enumerate(zip(spec.markets, market_seqs, strict=True)):
        # The first two children are simulate_wave's streams; later waves' panels follow.
        world_seq, first_panel = market_seq.spawn(2)
        panel_seqs = [first_panel, *market_seq.spawn(len(labels) - 1)]
        world = market_world(np.random.default_rng(world_seq), spec, layout)
        expanded: ProfileWorld | None = None
        level_seqs: list[np.random.SeedSequence] = []
        truth_layout, truth_world = layout, world
        if profile_seqs is not None:
            profile_seq, level_seqs = profile_seqs[m]
            expanded = profile_world(np.random.default_rng(profile_seq), spec, layout, world)
            truth_layout, truth_world = expanded.layout, expanded.world
        for k, panel_seq in enumerate(panel_seqs):
            active = [
                c for c in change_list if order[c.from_wave] <= k and c.market in (None, market)
            ]
            logit = _shifted_logits(spec, truth_layout, truth_world, active)
            profile = (
                None
                if expanded is None
                else _PanelProfile(np.random.default_rng(level_seqs[k]), expanded)
            )
            parts[k].append(
                _market_frames(
                    np.random.default_rng(panel_seq),
                    spec,
                    layout,
                    market,
                    world.population,
                    _expit(logit),
                    profile,
                )
            )
    simulated = {
        label: _assemble(seed, spec, layout, p) for label, p in zip(labels, parts, strict=True)
    }
    table = true_changes({label: w.truth for label, w in simulated.items()})
    for change in change_list:
        table.loc[
            (table["wave"] == change.from_wave)
            & (table["question_id"] == change.question_id)
            & (table["option"] == change.option)
            & (table["target_group"] == change.target_group)
            & ((change.market is None) | (table["market"] == change.market)),
            "declared",
        ] = True
    return SimulatedSeries(simulated, change_list, table)
