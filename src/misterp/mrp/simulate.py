"""Synthetic brand-tracking waves with a known population truth.

The demo and the recovery tests need data whose correct answer is known exactly. The truth is
therefore computed from the generating cell probabilities and the census, never from the
sample, and the sample comes from a deliberately biased online panel so that an unweighted
share is visibly wrong while MRP should recover the truth.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_TARGET_GROUPS",
    "SimulatedWave",
    "WaveTruthSpec",
    "compute_truth",
    "simulate_wave",
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
    rare_brand, rare_awareness
        One brand whose population awareness is pinned low, so that rare outcomes (few aware
        respondents, small association bases) are exercised. ``None`` disables it.
    awareness_range
        Population awareness of the other brands is drawn uniformly from this range.
    consideration_ratio
        Population consideration is awareness times a uniform draw from this range.
    association_range
        Population share of each association option among the aware, drawn uniformly.
    marginals
        Census marginal shares per demographic (missing ones: uniform), perturbed per market.
    population_range
        Census total per market is drawn uniformly from this range.
    panel_tilt
        Relative selection propensity per demographic level (missing levels: 1).
    target_groups
        Target group name -> {demographic: levels}; ``"all"`` is always added to the truth.
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
    rare_brand: str | None = "brand03"
    rare_awareness: float = 0.07
    awareness_range: tuple[float, float] = (0.35, 0.85)
    consideration_ratio: tuple[float, float] = (0.3, 0.7)
    association_range: tuple[float, float] = (0.15, 0.65)
    marginals: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_MARGINALS)
    )
    population_range: tuple[int, int] = (3_000_000, 9_000_000)
    panel_tilt: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_PANEL_TILT.items()}
    )
    target_groups: Mapping[str, Mapping[str, list[str]]] = field(
        default_factory=lambda: {
            k: {d: list(v) for d, v in g.items()} for k, g in DEFAULT_TARGET_GROUPS.items()
        }
    )

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
        for dim, shares in self.marginals.items():
            if dim in self.levels and len(shares) != len(self.levels[dim]):
                raise ValueError(f"marginals[{dim!r}] needs {len(self.levels[dim])} shares")
        for name, group in self.target_groups.items():
            if name == "all":
                raise ValueError('"all" is implied and cannot be redefined')
            for dim, wanted in group.items():
                unknown = set(wanted) - set(self.levels.get(dim, ()))
                if dim not in self.levels or unknown:
                    raise ValueError(f"target group {name!r}: unknown {dim!r} levels {unknown}")

    @property
    def demographics(self) -> tuple[str, ...]:
        """Demographic column names, in order."""
        return tuple(self.levels)


@dataclass(frozen=True, eq=False)
class SimulatedWave:
    """A synthetic wave in the input-file layout, plus its exact truth.

    Attributes
    ----------
    seed, spec
        What generated it.
    respondents
        ``respondent_id`` (``"DE-000001"``), ``market``, one column per demographic.
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
        probability in each census cell (conditional on the base).
    demographics
        Demographic column names.
    target_groups
        Target group definitions (without the implied ``"all"``).
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
        return {
            "input": input_uri,
            "output": output_uri,
            "demographics": list(self.demographics),
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


def _census(rng: np.random.Generator, spec: WaveTruthSpec, grid: np.ndarray) -> np.ndarray:
    """Integer populations per cell: perturbed product of marginals, every cell positive."""
    log_joint = np.zeros(grid.shape[0])
    for j, (dim, lv) in enumerate(spec.levels.items()):
        base = np.asarray(spec.marginals.get(dim, np.ones(len(lv))), dtype=float)
        shares = base * rng.lognormal(0.0, 0.15, size=len(lv))
        log_joint += np.log(shares / shares.sum())[grid[:, j]]
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
            eta += effects[:, grid[:, j]]
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


def simulate_wave(seed: int, spec: WaveTruthSpec | None = None) -> SimulatedWave:
    """Generate a synthetic wave from a biased online panel, with its exact population truth.

    Each market draws its census and generating model from one random stream and its panel
    sample from another, so changing ``n_respondents`` leaves the truth unchanged.
    """
    spec = spec or WaveTruthSpec()
    demos = spec.demographics
    grid = _cell_grid(spec.levels)
    cell_frame = pd.DataFrame(
        {
            dim: np.asarray(lv, dtype=object)[grid[:, j]]
            for j, (dim, lv) in enumerate(spec.levels.items())
        }
    )
    # Items: one per (question, option); the aware item of each brand is the base of its assoc.
    items: list[tuple[str, str, str, str, str | None]] = []
    for brand in spec.brands:
        items.append((f"aware_{brand}", "yes", brand, "single", None))
        items.append((f"consider_{brand}", "yes", brand, "single", None))
        for option in spec.association_options:
            items.append((f"assoc_{brand}", option, brand, "multi", f"aware_{brand}=yes"))
    item_index = {(q, o): i for i, (q, o, *_rest) in enumerate(items)}
    base_index = np.array([-1 if b is None else item_index[_split_base(b)] for *_rest, b in items])
    n_items = len(items)

    respondents, answers, poststrat, cell_truth, questions = [], [], [], [], []
    market_seqs = np.random.SeedSequence(seed).spawn(len(spec.markets))
    for market, market_seq in zip(spec.markets, market_seqs, strict=True):
        world_seq, panel_seq = market_seq.spawn(2)
        world = np.random.default_rng(world_seq)
        panel = np.random.default_rng(panel_seq)

        population = _census(world, spec, grid)
        eta = _linear_predictor(world, spec, grid, n_items)
        target = np.empty(n_items)
        aware_target: dict[str, float] = {}
        for i, (qid, _option, brand, _kind, _base) in enumerate(items):
            if qid.startswith("aware_"):
                if brand == spec.rare_brand:
                    aware_target[brand] = spec.rare_awareness
                else:
                    aware_target[brand] = world.uniform(*spec.awareness_range)
                target[i] = aware_target[brand]
            elif qid.startswith("consider_"):
                target[i] = aware_target[brand] * world.uniform(*spec.consideration_ratio)
            else:
                target[i] = world.uniform(*spec.association_range)
        prob = np.empty_like(eta)
        unconditional = base_index < 0
        weights = np.broadcast_to(population.astype(float), eta.shape)
        intercept = _calibrate_intercepts(
            eta[unconditional], weights[unconditional], target[unconditional]
        )
        prob[unconditional] = _expit(intercept[:, None] + eta[unconditional])
        conditional = ~unconditional
        base_weights = population[None, :] * prob[base_index[conditional]]
        intercept = _calibrate_intercepts(eta[conditional], base_weights, target[conditional])
        prob[conditional] = _expit(intercept[:, None] + eta[conditional])

        # Biased panel: cells drawn with census share times a demographic propensity.
        select = population * _panel_propensity(spec, grid)
        cell_of = panel.choice(grid.shape[0], size=spec.n_respondents, p=select / select.sum())
        p_resp = prob[:, cell_of].T  # (respondents, items)
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
        respondents.append(resp)

        item_q = np.array([it[0] for it in items], dtype=object)
        item_o = np.array([it[1] for it in items], dtype=object)
        answers.append(
            pd.DataFrame(
                {
                    "respondent_id": ids[r_idx],
                    "question_id": item_q[i_idx],
                    "option": item_o[i_idx],
                    "selected": selected[r_idx, i_idx].astype(np.int8),
                }
            )
        )

        ps = cell_frame.copy()
        ps.insert(0, "market", market)
        ps["population"] = population
        poststrat.append(ps)

        ct = pd.concat([cell_frame] * n_items, ignore_index=True)
        ct.insert(0, "option", np.repeat(item_o, grid.shape[0]))
        ct.insert(0, "question_id", np.repeat(item_q, grid.shape[0]))
        ct.insert(0, "market", market)
        ct["p_true"] = prob.reshape(-1)
        cell_truth.append(ct)

        seen: set[str] = set()
        for qid, _option, brand, kind, base in items:
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

    poststrat_df = pd.concat(poststrat, ignore_index=True)
    cell_truth_df = pd.concat(cell_truth, ignore_index=True)
    questions_df = pd.DataFrame(
        questions, columns=["question_id", "market", "brand", "kind", "base"]
    )
    target_groups = {
        name: {dim: list(levels) for dim, levels in group.items()}
        for name, group in spec.target_groups.items()
    }
    return SimulatedWave(
        seed=seed,
        spec=spec,
        respondents=pd.concat(respondents, ignore_index=True),
        answers=pd.concat(answers, ignore_index=True),
        poststrat=poststrat_df,
        questions=questions_df,
        truth=compute_truth(cell_truth_df, poststrat_df, questions_df, target_groups, demos),
        cell_truth=cell_truth_df,
        demographics=demos,
        target_groups=target_groups,
    )
