"""Structured priors for ordered levels: a random walk across adjacent age bands (and the like).

Exchangeable group intercepts treat ``18-24`` and ``55+`` as no more alike than ``25-34`` and
``35-44``; a random walk lets neighbouring levels borrow strength, which pays most where a band
has few respondents (Gao, Kennedy, Simpson and Gelman 2021, "Improving multilevel regression
and poststratification with structured priors", Bayesian Analysis 16(3)). The walk is built as a
graph rewrite of Bambi's non-centred ``1|x_offset``, like the zero-sum one in
:mod:`misterp.mrp.model`, so the compiled binomial kernel and nutpie's data swap are unchanged.

The levels' order is what the user declares (``model.priors.random_walk``), checked against the
census levels when a wave is prepared; the cell layout sorts levels as strings and Bambi
follows it, so the order is never taken from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["random_walk_group_intercepts", "random_walk_matrix"]


def random_walk_matrix(order: Sequence[str], levels: Sequence[str]) -> np.ndarray:
    """The linear map from ``K - 1`` N(0, 1) steps to the centred, scaled walk over ``levels``.

    Level ``order[k]`` sits at ``c * (w_k - mean(w))`` with ``w_0 = 0`` and
    ``w_k = z_1 + ... + z_k``: adjacent levels differ by ``c`` times one step, and the levels sum
    to zero, so a model's Intercept stays the grand mean (no ridge, as with zero-sum effects).
    ``c`` makes the geometric mean of the levels' prior variances 1 (the scaling of Sørbye and
    Rue 2014 for intrinsic priors), so that the group sd ``sigma`` that multiplies the walk keeps
    the meaning, and the ``HalfNormal(group_sigma)`` prior, of an exchangeable term's sd; the sd
    of one step is then ``c * sigma``. Rows follow ``levels`` (the model's level order).

    Examples
    --------
    Three levels declared low < mid < high, stored sorted as strings by the model:

    >>> m = random_walk_matrix(["low", "mid", "high"], ["high", "low", "mid"])
    >>> m.shape
    (3, 2)
    >>> z = np.array([1.0, 1.0])  # two equal steps up: low, mid, high evenly spaced
    >>> effect = dict(zip(["high", "low", "mid"], m @ z))
    >>> bool(np.isclose(effect["mid"], 0.0)), bool(np.isclose(effect["high"], -effect["low"]))
    (True, True)
    """
    if sorted(order) != sorted(levels) or len(set(order)) != len(order):
        raise ValueError(
            f"random-walk levels {list(order)} are not the model's levels {sorted(levels)}"
        )
    k = len(order)
    walk = np.tril(np.ones((k, k - 1)), -1)  # w = walk @ z, w_0 = 0
    centred = walk - walk.mean(axis=0)
    variance = np.sum(centred**2, axis=1)
    scale = np.exp(-0.5 * np.mean(np.log(variance)))
    position = {level: i for i, level in enumerate(order)}
    return scale * centred[[position[level] for level in levels]]


def random_walk_group_intercepts(pymc_model: Any, random_walk: Mapping[str, Sequence[str]]) -> Any:
    """Replace ``1|x_offset`` of each ``x`` in ``random_walk`` by the centred, scaled walk.

    The N(0, 1) offset of every level becomes ``random_walk_matrix(order, levels) @ z`` with
    ``K - 1`` free N(0, 1) steps ``z`` (named ``1|x_steps``), and ``1|x = sigma * offset`` as
    before. Interaction terms (``1|x:y``) and terms not listed are left alone. A level without
    respondents is then predicted by the walk: between two levels, around their mean with sd
    ``step sd / sqrt(2)``; at an end, around its neighbour with the step sd.

    Raises
    ------
    ValueError
        If the model has no Intercept (the walk is centred, so the Intercept must carry the
        mean) or a term's levels are not the declared ones.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.model.fgraph import ModelFreeRV, fgraph_from_model, model_free_rv, model_from_fgraph

    offsets = {f"1|{factor}_offset": factor for factor in random_walk}
    names = {rv.name for rv in pymc_model.free_RVs}
    if not offsets.keys() & names:
        return pymc_model
    if "Intercept" not in names:
        raise ValueError(
            "a random-walk prior needs an Intercept in the formula: the walk sums to zero and "
            "the Intercept carries the mean; add '1 +' to the formula"
        )
    fgraph, _ = fgraph_from_model(pymc_model, inlined_views=True)
    for node in list(fgraph.apply_nodes):
        op = node.op
        if not (isinstance(op, ModelFreeRV) and op.name in offsets):
            continue
        factor = offsets[op.name]
        (dim,) = op.dims
        levels = [str(level) for level in pymc_model.coords[dim]]
        matrix = random_walk_matrix(random_walk[factor], levels)
        steps = pm.Normal.dist(0.0, 1.0, shape=(len(levels) - 1,))
        name = f"1|{factor}_steps"
        free = model_free_rv(steps, steps.type(name=name), None, name)
        offset = pt.dot(pt.constant(matrix), free)
        fgraph.replace(node.outputs[0], offset, import_missing=True)
        # the offset is no model variable any more (Bambi drops ``*_offset`` draws anyway)
        fgraph.remove_output(fgraph.outputs.index(offset))
        fgraph.add_output(free, import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)
