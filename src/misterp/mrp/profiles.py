"""Audiences beyond the census: synthetic poststratification on profile variables (MrsP).

A profile variable (``category_user``, ``income_band``) is asked in the survey but not counted
by the census, so the census cannot say how many category users live in a cell. Each market
gets one model per profile, P(level | census cell), fitted like a question's model; draw ``d``
of it expands the census table into cells x profile levels with counts N_c x P_d(level | c)
(Leemann & Wasserfallen 2017). Draw ``d`` of every estimate uses draw ``d`` of the profile
model, so the profile model's uncertainty is carried into every estimate and audience size.

Several profiles are combined as independent given the census cell: P(a, b | c) =
P(a | c) P(b | c). The assumption that makes the estimates right: the panel's selection is
ignorable given the census cell and the profile (a panel that over-recruits category users
within a cell makes the profile model, and every audience, biased).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from misterp.mrp.cells import MarketCells, census_cells, census_index
from misterp.mrp.config import ProfileMissing
from misterp.mrp.data import WaveData
from misterp.mrp.specs import ModelSpec

__all__ = [
    "MISSING_PROFILE_LEVEL",
    "audience_shares",
    "level_probabilities",
    "profile_weights",
    "rake_to_margins",
    "with_missing_profiles",
]

#: The level a blank profile answer becomes under ``profile_settings.missing: own_level``.
MISSING_PROFILE_LEVEL = "missing"


def with_missing_profiles(wave: WaveData, missing: ProfileMissing) -> WaveData:
    """The wave with blank profile answers resolved as ``missing`` says.

    ``own_level``: a blank becomes the level ``missing``; ``at_random``: it stays None, and the
    respondent has no cell in a layout that uses the profile (:func:`build_market_cells`).
    """
    if not wave.profiles or missing is ProfileMissing.AT_RANDOM:
        return wave
    respondents = wave.respondents.copy()
    for name in wave.profiles:
        respondents[name] = respondents[name].fillna(MISSING_PROFILE_LEVEL)
    return replace(wave, respondents=respondents)


def rake_to_margins(
    probability: np.ndarray,
    population: np.ndarray,
    targets: np.ndarray,
    iterations: int = 200,
) -> np.ndarray:
    """P(level | census cell) per draw, raked so the population's level shares are ``targets``.

    Iterative proportional fitting of the census x level table (rows: the census counts, kept;
    columns: the known shares) in every draw: it keeps each draw's odds ratios between cells,
    so who is a category user stays the model's, and only how many is the official figure's.
    A level whose target is NaN (e.g. ``missing``) keeps its modelled share; the others share
    the rest in the targets' proportions.

    Parameters
    ----------
    probability
        ``(draws, census cells, levels)``; sums to one over levels.
    population
        ``(census cells,)``.
    targets
        ``(levels,)``: known population shares, NaN where unknown.

    Examples
    --------
    Two cells of 100 and 300 people, P(user) 0.8 and 0.2 (35% users), known share 50%:

    >>> p = np.array([[[0.2, 0.8], [0.8, 0.2]]])
    >>> out = rake_to_margins(p, np.array([100.0, 300.0]), np.array([0.5, 0.5]))
    >>> round(float((out[0, :, 1] * [100, 300]).sum() / 400), 9)
    0.5
    >>> odds = out[0, :, 1] / out[0, :, 0]
    >>> round(float(odds[0] / odds[1]), 6)  # the cells' odds ratio, 4 / 0.25, is kept
    16.0
    """
    p = np.array(probability, dtype=float)
    counts_of = np.asarray(population, dtype=float)[None, :, None]
    listed = ~np.isnan(targets)
    wanted = np.where(listed, targets, 0.0) / targets[listed].sum()
    for _ in range(iterations):
        columns = (counts_of * p).sum(axis=1)  # (draws, levels)
        free = columns.sum(axis=1) - columns[:, ~listed].sum(axis=1)  # people in listed levels
        goal = wanted[None, :] * free[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(listed & (columns > 0), goal / columns, 1.0)
        if np.max(np.abs(factor - 1.0)) < 1e-12:
            break
        p = p * factor[:, None, :]
        p = p / p.sum(axis=2, keepdims=True)
    return p


def level_probabilities(
    specs: Sequence[ModelSpec], draws: Mapping[str, np.ndarray], levels: Sequence[str]
) -> np.ndarray:
    """P(level | census cell): ``(draws, census cells, levels)`` from one profile's models.

    Two levels have one model (of the second level); more levels one each, normalised.

    >>> spec = ModelSpec("X", "profile.user", "yes", "f", profile="user")
    >>> level_probabilities([spec], {spec.key: np.array([[0.25, 0.5]])}, ["no", "yes"]).tolist()
    [[[0.75, 0.25], [0.5, 0.5]]]
    """
    by_level = {spec.option: draws[spec.key] for spec in specs}
    if len(specs) == 1:
        (level,) = by_level
        p = by_level[level]
        return np.stack([p if other == level else 1.0 - p for other in levels], axis=-1)
    stacked = np.stack([by_level[level] for level in levels], axis=-1)
    return stacked / stacked.sum(axis=-1, keepdims=True)


def profile_weights(
    layout: MarketCells,
    specs: Sequence[ModelSpec],
    draws: Mapping[str, np.ndarray],
    margins: Mapping[str, Mapping[str, float]] | None = None,
) -> np.ndarray | None:
    """P_d(the cell's profile levels | its census cell): ``(draws, cells)``; None without profiles.

    ``specs`` are the market's profile models and ``draws`` their ``(draws, census cells)``
    posteriors on the layout's census cells (:func:`misterp.mrp.cells.census_cells`); see
    :func:`level_probabilities`. A profile in ``margins`` (profile -> level -> known share) is
    raked to it draw by draw (:func:`rake_to_margins`).

    Examples
    --------
    Two census cells crossed with a profile ``user`` (no, yes); two draws of P(yes | cell):

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"g": ["f", "f", "m", "m"], "user": ["no", "yes", "no", "yes"],
    ...                       "population": [3.0, 3.0, 1.0, 1.0]})
    >>> layout = MarketCells("X", frame, ("g", "user"), profiles=("user",))
    >>> spec = ModelSpec("X", "profile.user", "yes", "f", profile="user")
    >>> draws = {spec.key: np.array([[0.25, 0.5], [0.75, 1.0]])}
    >>> profile_weights(layout, [spec], draws).tolist()
    [[0.75, 0.25, 0.5, 0.5], [0.25, 0.75, 0.0, 1.0]]
    """
    if not layout.profiles:
        return None
    to_census = census_index(layout)
    population = census_cells(layout).population
    weights: np.ndarray | None = None
    for name in layout.profiles:
        mine = [spec for spec in specs if spec.profile == name and spec.market == layout.market]
        if not mine:
            raise KeyError(f"profile '{name}' has no model in market {layout.market}")
        levels = (
            [str(level) for level in layout.frame[name].cat.categories]
            if hasattr(layout.frame[name], "cat")
            else sorted(layout.frame[name].astype(str).unique())
        )
        probability = level_probabilities(mine, draws, levels)
        known = (margins or {}).get(name)
        if known:
            targets = np.array([known.get(level, np.nan) for level in levels], dtype=float)
            probability = rake_to_margins(probability, population, targets)
        # each cell's own level, from its census cell's row
        level_of = pd.Categorical(layout.frame[name].astype(str), categories=levels).codes
        share = probability[:, to_census, level_of]
        weights = share if weights is None else weights * share
    return weights


def audience_shares(
    layout: MarketCells, weights: np.ndarray | None, n_draws: int
) -> dict[str, np.ndarray]:
    """Each target group's share of the population, ``(draws,)`` per group (audience size).

    Without profiles the shares are the census's (the same in every draw).

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user": ["no", "yes"], "population": 10.0})
    >>> masks = {"all": np.array([True, True]), "users": np.array([False, True])}
    >>> layout = MarketCells("X", frame, ("user",), masks, profiles=("user",))
    >>> audience_shares(layout, np.array([[0.8, 0.2], [0.6, 0.4]]), 2)["users"].tolist()
    [0.2, 0.4]
    """
    population = layout.population
    counts = np.broadcast_to(population, (n_draws, layout.n_cells))
    if weights is not None:
        counts = counts * weights
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {group: counts[:, mask].sum(axis=1) / total for group, mask in layout.masks.items()}
