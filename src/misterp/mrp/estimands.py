"""What a tracker fit publishes, drawn from its posterior: what its precision is judged on.

Issue 23's convergence policy asks for an effective sample size of 400 on each published
estimand rather than on every hyperparameter. For a question model these are its target
groups' shares, for a joint family each item's, for a profile model each group's share at the
level. The pipeline publishes them after raking and, for a conditional question, within its
base; the census-weighted share of the model's own cell probabilities judged here is the
same functional of the same draws up to those fixed reweightings, so it mixes alike, and it is
known when the fit is, before anything else of the wave has been fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from misterp.config import ConvergencePolicy
from misterp.diagnostics import EstimandDraws, check_convergence
from misterp.mrp.cells import ALL_GROUP, MarketCells
from misterp.mrp.joint import FitUnit
from misterp.mrp.model import CELL_PROBABILITY
from misterp.records import ConvergenceReport

__all__ = ["published_shares", "share_diagnostics"]


def published_shares(unit: FitUnit, layout: MarketCells) -> Callable[[Any], EstimandDraws]:
    """Each item's census-weighted share in each target group, per posterior draw.

    ``layout``: the market's cells one item's draws are laid out on (for a joint family, the
    market's layout, not the stacked one); its ``masks`` name the target groups.

    >>> import pandas as pd, xarray as xr
    >>> from misterp.mrp.specs import ModelSpec
    >>> cells = MarketCells("DE", pd.DataFrame({"g": ["f", "m"], "population": [3.0, 1.0]}),
    ...                     ("g",), masks={"all": np.array([True, True]),
    ...                                    "women": np.array([True, False])})
    >>> spec = ModelSpec("DE", "aware", "yes", "p(yes, n) ~ 1")
    >>> shares = published_shares(FitUnit(spec, (spec,), cells, None), cells)
    >>> p = np.array([[[0.2, 0.6], [0.4, 0.8]]])  # 1 chain, 2 draws, 2 cells
    >>> names, draws = shares({"posterior": xr.Dataset({"p": (("chain", "draw", "cell"), p)})})
    >>> names
    ('DE/aware/yes in all', 'DE/aware/yes in women')
    >>> draws.round(3).tolist()  # (estimand, chain, draw): 0.75 * 0.2 + 0.25 * 0.6 = 0.3
    [[[0.3, 0.5]], [[0.2, 0.4]]]
    """
    population = layout.frame["population"].to_numpy(dtype=float)
    masks = layout.masks or {ALL_GROUP: np.ones(len(population), dtype=bool)}
    groups, columns = [], []
    for group, mask in masks.items():
        weights = population * mask
        if weights.sum() > 0:  # a group no census cell holds has no share to publish
            groups.append(group)
            columns.append(weights / weights.sum())
    weights_by_group = np.stack(columns, axis=1)  # (cells, groups)
    names = tuple(f"{member.key} in {group}" for member in unit.members for group in groups)
    items, cells = len(unit.members), len(population)

    def estimands(posterior: Any) -> EstimandDraws:
        draws = np.asarray(posterior["posterior"][CELL_PROBABILITY], dtype=float)
        chains, per_chain = draws.shape[:2]
        by_item = draws.reshape(chains, per_chain, items, cells)
        shares = np.einsum("cdik,kg->igcd", by_item, weights_by_group)
        return names, shares.reshape(items * len(groups), chains, per_chain)

    return estimands


def share_diagnostics(
    unit: FitUnit, layout: MarketCells, policy: ConvergencePolicy
) -> Callable[[Any, float], ConvergenceReport]:
    """How a fit of ``unit`` is judged: its parameters and its published shares.

    The shares are what ``policy: estimands`` asks precision of; under ``all_parameters``
    they still join R-hat, and the parameters' tail ESS is computed only there.
    """
    shares = published_shares(unit, layout)

    def diagnose(posterior: Any, seconds: float) -> ConvergenceReport:
        return check_convergence(
            posterior,
            seconds,
            estimands=shares(posterior),
            parameter_tail=policy is ConvergencePolicy.ALL_PARAMETERS,
        )

    return diagnose
