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

from misterp.mrp.cells import MarketCells, census_index
from misterp.mrp.config import ProfileMissing
from misterp.mrp.data import WaveData
from misterp.mrp.specs import ModelSpec

__all__ = [
    "MISSING_PROFILE_LEVEL",
    "audience_shares",
    "profile_weights",
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


def profile_weights(
    layout: MarketCells, specs: Sequence[ModelSpec], draws: Mapping[str, np.ndarray]
) -> np.ndarray | None:
    """P_d(the cell's profile levels | its census cell): ``(draws, cells)``; None without profiles.

    ``specs`` are the market's profile models and ``draws`` their ``(draws, census cells)``
    posteriors on the layout's census cells (:func:`misterp.mrp.cells.census_cells`). A
    two-level profile has one model (of its second level) and the first level gets the
    complement; more levels have one model each, normalised to sum to one per census cell and
    draw.

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
    weights: np.ndarray | None = None
    for name in layout.profiles:
        mine = [spec for spec in specs if spec.profile == name and spec.market == layout.market]
        if not mine:
            raise KeyError(f"profile '{name}' has no model in market {layout.market}")
        level = layout.frame[name].astype(str).to_numpy()
        if len(mine) == 1:
            p = draws[mine[0].key][:, to_census]
            share = np.where(level == mine[0].option, p, 1.0 - p)
        else:
            # (levels, draws, cells)
            stacked = np.stack([draws[spec.key][:, to_census] for spec in mine])
            total = stacked.sum(axis=0)
            share = np.zeros_like(total)
            for index, spec in enumerate(mine):
                share = np.where(level == spec.option, stacked[index] / total, share)
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
