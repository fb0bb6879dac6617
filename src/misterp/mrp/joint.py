"""Joint models of a question family: one binomial model over every item of a battery.

An association battery asks the same people about many options (and the same options about
many brands). Fitted one option at a time, each model learns the demographic profile of its
option alone, and an option or brand with a small base has little to learn it from. A joint
model stacks the items' cells into one long frame with an item column (``JOINT_ITEM``) and
fits the formula of :func:`misterp.mrp.specs.joint_formula`: the demographic effects the
items share, plus a partially pooled deviation per item. The output contract is unchanged:
the joint posterior of P(yes | item, cell) is split into one draw matrix per item, each
written as that option's fit record, so poststratification (with each item's own base),
publication and tracking never see the difference.

Everything here is pure: a fit unit is the specs it covers with their stacked cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from misterp.mrp.cells import CellCounts, MarketCells
from misterp.mrp.specs import JOINT_ITEM, ModelSpec

__all__ = ["FitUnit", "item_levels", "split_draws", "stacked_cells", "stacked_counts"]


@dataclass(frozen=True)
class FitUnit:
    """What one fit covers: one spec, or every item of a joint family in a market.

    ``lead`` names the fit (its key, its seed, its retry ladder); ``members`` are the specs
    whose records the fit writes, in item order; ``layout`` and ``counts`` are the cells the
    sampler sees (stacked item after item for a joint family).
    """

    lead: ModelSpec
    members: tuple[ModelSpec, ...]
    layout: MarketCells
    counts: CellCounts

    @property
    def joint(self) -> bool:
        """Whether the fit is a joint model over several items."""
        return len(self.members) > 1


def item_levels(n_items: int) -> list[str]:
    """Item labels in order.

    The position names the item, so one compiled model serves every family with as many
    items on the same layout (the batteries of all brands of a market).

    >>> item_levels(3)
    ['i000', 'i001', 'i002']
    """
    return [f"i{index:03d}" for index in range(n_items)]


def stacked_cells(layout: MarketCells, n_items: int) -> MarketCells:
    """The market's cells repeated once per item, with the item column; row = item * cells + cell.

    >>> frame = pd.DataFrame({"gender": pd.Categorical(["f", "m"]), "population": [3.0, 1.0]})
    >>> stacked = stacked_cells(MarketCells("DE", frame, ("gender",)), 2)
    >>> stacked.frame[["gender", "option"]].astype(str).values.tolist()
    [['f', 'i000'], ['m', 'i000'], ['f', 'i001'], ['m', 'i001']]
    >>> stacked.demographics
    ('gender', 'option')
    """
    levels = item_levels(n_items)
    frame = pd.concat(
        [layout.frame.assign(**{JOINT_ITEM: level}) for level in levels], ignore_index=True
    )
    frame[JOINT_ITEM] = pd.Categorical(frame[JOINT_ITEM], categories=levels)
    return MarketCells(
        market=layout.market,
        frame=frame,
        demographics=(*layout.demographics, JOINT_ITEM),
    )


def stacked_counts(counts: Sequence[CellCounts]) -> CellCounts:
    """The items' cell counts one after another, in the order of :func:`stacked_cells`.

    Its ``data_hash`` is the family's: new answers to any item change it, so a re-run refits
    the whole family, whose items' posteriors all depend on every item's data.
    """
    return CellCounts(
        yes=np.concatenate([c.yes for c in counts]), n=np.concatenate([c.n for c in counts])
    )


def split_draws(draws: np.ndarray, n_items: int) -> list[np.ndarray]:
    """One ``(draws, cells)`` matrix per item from the stacked ``(draws, items * cells)``.

    The rows stay paired: draw k of every item comes from the same posterior draw.

    >>> parts = split_draws(np.arange(12.0).reshape(2, 6), 3)
    >>> [part.tolist() for part in parts]
    [[[0.0, 1.0], [6.0, 7.0]], [[2.0, 3.0], [8.0, 9.0]], [[4.0, 5.0], [10.0, 11.0]]]
    """
    if draws.shape[-1] % n_items:
        raise ValueError(f"{draws.shape[-1]} stacked cells do not split into {n_items} items")
    return [np.ascontiguousarray(part) for part in np.split(draws, n_items, axis=-1)]
