"""The MRP model: one binomial multilevel model per spec with Bambi, sampled by nutpie or PyMC.

Bambi turns the formula into a PyMC model. For nutpie, the model of a (formula, priors, cell
layout) is compiled once per process with the cell counts as shared data, and every further
question of the same market only swaps ``yes`` and ``n``: compiling costs seconds, sampling a
few hundred cells a fraction of that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import bambi as bmb
import numpy as np

from misterp.config import SamplerConfig
from misterp.fitting import Sample
from misterp.mrp.cells import CellCounts, MarketCells
from misterp.mrp.config import PriorConfig
from misterp.mrp.ordered import random_walk_group_intercepts
from misterp.mrp.specs import JOINT_ITEM, ModelSpec
from misterp.nutpie_run import NutpieRun

__all__ = [
    "BACKENDS",
    "Backend",
    "bambi_model",
    "build_model",
    "cell_sampler",
    "compiled_template",
    "extract_cell_draws",
    "pymc_model_of",
    "sample_nutpie",
    "sample_pymc",
    "shared_data_model",
]

logger = logging.getLogger(__name__)

#: Name of the per-cell success probability that Bambi adds for the binomial family.
CELL_PROBABILITY = "p"
# Measured: the centred form diverges more on tracker-sized cells than the non-centred one.
NONCENTERED = True
#: Name of the potential that carries the binomial likelihood in the compiled nutpie model.
BINOMIAL_KERNEL = "binomial_kernel"


def build_model(
    spec: ModelSpec, layout: MarketCells, counts: CellCounts, priors: PriorConfig
) -> bmb.Model:
    """The Bambi model of one spec on its market's cell layout, with misterp's priors."""
    frame = layout.frame.drop(columns=["population"]).assign(yes=counts.yes, n=counts.n)
    return bambi_model(spec.formula, frame, "binomial", priors)


def bambi_model(formula: str, frame: Any, family: str, priors: PriorConfig) -> bmb.Model:
    """Any Bambi model with misterp's priors and parametrisation.

    Shared with the benchmark's naive respondent-level fit, so both always fit the same model.
    """
    model = bmb.Model(
        formula,
        frame,
        family=family,
        priors={"Intercept": bmb.Prior("Normal", mu=0, sigma=priors.intercept_sigma)},
        auto_scale=False,
        noncentered=NONCENTERED,
    )
    model.set_priors(
        common=bmb.Prior("Normal", mu=0, sigma=priors.common_sigma),
        group_specific=bmb.Prior(
            "Normal",
            mu=0,
            sigma=bmb.Prior("HalfNormal", sigma=priors.group_sigma)
            if priors.group_sd == "half_normal"
            else _zero_avoiding_sd(priors.group_sigma),
        ),
    )
    if priors.interaction_sigma is not None:
        terms = model.parameters[model.family.likelihood.parent].group_specific_terms
        interactions = [name for name in terms if ":" in name.partition("|")[2]]
        if interactions:
            # Gamma(2, 2/s): mean s and zero density at 0, so an interaction the data do not
            # support cannot pull its sd into the funnel at 0 (HalfNormal(s) can: 15 % of the
            # fits needed a retry on a wave without a true interaction, 8 % with this).
            tighter = bmb.Prior("Normal", mu=0, sigma=_zero_avoiding_sd(priors.interaction_sigma))
            model.set_priors(priors=dict.fromkeys(interactions, tighter))
    return model


def _zero_avoiding_sd(mean: float) -> bmb.Prior:
    """Gamma(2, 2/mean): mean ``mean`` and zero density at 0, so no funnel at sd 0."""
    return bmb.Prior("Gamma", alpha=2.0, beta=2.0 / mean)


def pymc_model_of(model: bmb.Model, priors: PriorConfig) -> Any:
    """The PyMC model of a Bambi model, with misterp's parametrisation of group effects.

    ``priors.group_effects == "zero_sum"`` replaces each non-centred group-intercept offset
    (Bambi's ``1|x_offset``, N(0, 1) per level) by a ``ZeroSumNormal(1)`` of the same levels:
    the group effects ``sd * offset`` then sum to zero and the Intercept is the grand mean.
    Without that, adding a constant to the Intercept and subtracting it from every level
    leaves the likelihood unchanged, a ridge that the sampler pays for in leapfrog steps.
    A level with no respondents (all census levels are in the model) is then predicted around
    the mean of the others with sd about ``sd``, the sum-to-zero form of the N(0, sd) policy.
    With ``priors.interaction_zero_sum == "margins"`` a two-way interaction whose factors are
    both main effects sums to zero along each factor (:func:`_pure_interaction_grid`), so it
    holds only what the main effects cannot say. The terms of ``priors.random_walk`` get a
    centred random walk across their ordered levels instead
    (:func:`misterp.mrp.ordered.random_walk_group_intercepts`), whichever ``group_effects``.
    """
    model.build()
    pymc_model = model.backend.model
    if priors.random_walk:  # first: the walk replaces its terms' offsets, zero-sum the rest
        pymc_model = random_walk_group_intercepts(pymc_model, priors.random_walk)
    if priors.group_effects == "zero_sum":
        main_effects = None
        if priors.interaction_zero_sum == "margins":
            terms = model.parameters[model.family.likelihood.parent]
            main_effects = frozenset(
                name.removeprefix("1|")
                for name in (*terms.common_terms, *terms.group_specific_terms)
                if ":" not in name
            )
        pymc_model = _zero_sum_group_intercepts(pymc_model, main_effects)
    return pymc_model


def _zero_sum_group_intercepts(pymc_model: Any, main_effects: frozenset[str] | None) -> Any:
    import pymc as pm
    from pymc.distributions.transforms import ZeroSumTransform
    from pymc.model.fgraph import ModelFreeRV, fgraph_from_model, model_free_rv, model_from_fgraph

    shapes = {name: np.shape(value) for name, value in pymc_model.initial_point().items()}
    if "Intercept" not in shapes:  # no grand mean to absorb the level means: keep them free
        return pymc_model
    fgraph, _ = fgraph_from_model(pymc_model, inlined_views=True)
    for node in list(fgraph.apply_nodes):
        op = node.op
        if not (
            isinstance(op, ModelFreeRV) and op.name.startswith("1|") and op.name.endswith("_offset")
        ):
            continue
        shape, dims, axes = shapes[op.name], op.dims, 1
        n_items = _items_of(op.name, pymc_model.coords)
        if n_items is not None:
            # An item deviation (1|x:option): levels are x-major, item last (Bambi's order),
            # so the flat offsets are a (levels of x, items) table. Zero sums over the items
            # (the shared effect x is their mean) and over the levels (the item's own
            # intercept is its mean) leave neither ridge to the sampler.
            shape, dims, axes = (shape[0] // n_items, n_items), (), 2
        elif main_effects is not None and (
            grid := _pure_interaction_grid(op.name, pymc_model.coords, main_effects)
        ):
            # A two-way interaction (1|a:b) whose factors are also main effects: its levels
            # (a-major, Bambi's order) are an (a, b) table. Zero sums along b remove what
            # depends on a alone (the main effect of a already says that) and along a what
            # depends on b alone, so the interaction is the pure interaction: without them
            # a large interaction sd and a small main-effect sd describe the same cells, a
            # ridge where the divergences of the age x gender model sat.
            shape, dims, axes = grid, (), 2
        rv = pm.ZeroSumNormal.dist(sigma=1.0, shape=shape, n_zerosum_axes=axes)
        transform = ZeroSumTransform(list(range(-axes, 0)))
        value = transform.forward(rv).type(name=f"{op.name}_zerosum__")
        replacement = model_free_rv(rv, value, transform, op.name, *dims)
        if axes == 2:
            replacement = replacement.reshape(shapes[op.name])
        fgraph.replace(node.outputs[0], replacement, import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def _pure_interaction_grid(
    name: str, coords: Mapping[str, Any], main_effects: frozenset[str]
) -> tuple[int, int] | None:
    """The (levels of a, levels of b) table of a ``1|a:b_offset``, or None to keep it flat.

    None unless both factors are main effects of the model and the term's levels are the
    complete a-major grid of both factors' levels (Bambi's order when every pair is a cell).
    """
    term = name.removeprefix("1|").removesuffix("_offset")
    factors = term.split(":")
    if len(factors) != 2 or not set(factors) <= main_effects:
        return None
    labels = [str(label).split(":") for label in coords.get(f"{term}__factor_dim", ())]
    if not labels or any(len(parts) != 2 for parts in labels):
        return None
    firsts = list(dict.fromkeys(parts[0] for parts in labels))
    seconds = list(dict.fromkeys(parts[1] for parts in labels))
    if labels != [[a, b] for a in firsts for b in seconds]:
        return None
    return len(firsts), len(seconds)


def _items_of(name: str, coords: Mapping[str, Any]) -> int | None:
    """How many items a joint model's deviation term ``1|x:option_offset`` has, else None."""
    term = name.removeprefix("1|").removesuffix("_offset")
    if not term.endswith(f":{JOINT_ITEM}"):
        return None
    items = coords.get(f"{JOINT_ITEM}__factor_dim")
    return len(items) if items is not None else None


def spec_seed(spec: ModelSpec, base_seed: int) -> int:
    """A reproducible seed per model, different across models of a wave."""
    offset = int(hashlib.sha256(spec.key.encode()).hexdigest()[:8], 16)
    return (base_seed + offset) % (2**32)


# --- nutpie: compile once per (formula, priors, layout), swap the data ---------------------

_TEMPLATES: dict[tuple[str, str, str], Any] = {}


def shared_data_model(model: bmb.Model, priors: PriorConfig | None = None) -> Any:
    """The PyMC model of ``model`` with a binomial kernel on shared data ``yes`` and ``n``.

    Bambi embeds the response as constants; shared variables named ``yes`` and ``n`` let
    nutpie's ``with_data`` reuse one compiled model across questions. The observed Binomial is
    replaced by its kernel ``yes log p + (n - yes) log(1 - p)`` as a potential: the dropped
    term, log C(n, yes), does not depend on the parameters, so the posterior is the same, but
    with shared counts PyTensor can no longer fold it into a constant and would evaluate three
    ``gammaln`` per cell at every leapfrog step (measured: 2.2x the cost of a step).
    """
    import pytensor
    import pytensor.tensor as pt
    from pymc.model.fgraph import (
        ModelObservedRV,
        fgraph_from_model,
        model_from_fgraph,
        model_potential,
    )
    from pytensor.graph.basic import Constant

    fgraph, _ = fgraph_from_model(pymc_model_of(model, priors or PriorConfig()), inlined_views=True)
    observed = [out for out in fgraph.outputs if isinstance(out.owner.op, ModelObservedRV)]
    if len(observed) != 1:
        raise NotImplementedError("expected exactly one observed variable")
    rv, data = observed[0].owner.inputs[0], observed[0].owner.inputs[1]
    trials, probability = rv.owner.inputs[2], rv.owner.inputs[3]
    if not isinstance(data, Constant) or not isinstance(trials, Constant):
        raise NotImplementedError("binomial response or trials are not constants")
    yes = pytensor.shared(np.asarray(data.data), name="yes")
    n = pytensor.shared(np.asarray(trials.data), name="n")
    eta = _logit_of(probability)
    if eta is not None:  # on the logit scale: one softplus per cell instead of two logs
        kernel = pt.sum(yes * eta - n * pt.softplus(eta))
    else:
        kernel = pt.sum(yes * pt.log(probability) + (n - yes) * pt.log1p(-probability))
    fgraph.add_output(model_potential(kernel, BINOMIAL_KERNEL), import_missing=True)
    fgraph.remove_output(fgraph.outputs.index(observed[0]))
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def _logit_of(probability: Any) -> Any:
    """The linear predictor under Bambi's clipped ``sigmoid(eta)``, or None if there is none.

    Bambi clips ``p`` to (eps, 1 - eps), which keeps PyTensor from rewriting ``log(p)`` into a
    softplus; the kernel on ``eta`` equals the clipped one wherever |eta| < 36.
    """
    from pytensor.scalar.math import Sigmoid
    from pytensor.tensor.elemwise import Elemwise

    pending, seen = [probability], set()
    while pending:
        variable = pending.pop()
        node = variable.owner
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, Sigmoid):
            return node.inputs[0]
        pending.extend(node.inputs)
    return None


def compiled_template(
    spec: ModelSpec, layout: MarketCells, counts: CellCounts, priors: PriorConfig
) -> Any:
    """The nutpie-compiled model of ``spec``'s formula on this market's cells, compiled once.

    Keyed by formula, priors and cell layout: every question of a market with the same formula
    reuses it with its own counts (``with_data``), so a wave compiles a handful of models.
    """
    import nutpie

    key = (spec.formula, priors.model_dump_json(), layout.layout_hash)
    if key not in _TEMPLATES:
        started = time.perf_counter()
        pymc_model = shared_data_model(build_model(spec, layout, counts, priors), priors)
        _TEMPLATES[key] = nutpie.compile_pymc_model(pymc_model)
        logger.info(
            "compiled %s for market %s in %.1f s",
            spec.formula,
            layout.market,
            time.perf_counter() - started,
        )
    return _TEMPLATES[key]


def sampler_cores(sampler: SamplerConfig) -> int:
    """Chains sampled at once: the config's ``cores``, else one per CPU up to the chains.

    The dispatcher sets ``cores`` to the fit's share of the CPUs, so N fit processes do not
    each start one thread per CPU of the machine (in a pod, ``os.cpu_count()`` is the node's).
    """
    return sampler.cores or min(sampler.chains, os.cpu_count() or 1)


def sample_nutpie(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    priors: PriorConfig,
    sampler: SamplerConfig,
) -> Any:
    """Sample with nutpie on the model compiled once per formula, priors and layout.

    With ``sampler.check_every`` (the default) this returns the running sampler
    (:class:`~misterp.nutpie_run.NutpieRun`) for the retry loop to judge while it draws;
    without, the finished posterior. The warm-up draws are not kept (``save_warmup=False``):
    nothing reads them, and turning them into ArviZ groups doubled the trace's conversion time
    and memory. The draws after warm-up are the same either way.
    """
    import nutpie

    compiled = compiled_template(spec, layout, counts, priors).with_data(
        yes=counts.yes.astype(np.int64), n=counts.n.astype(np.int64)
    )
    options: dict[str, Any] = {
        "cores": sampler_cores(sampler),
        "seed": spec_seed(spec, sampler.random_seed),
        "target_accept": sampler.target_accept,
    }
    if sampler.check_every is not None:
        # every chain in a thread of its own: a look waits for the slowest chain, and with
        # fewer threads than chains nutpie runs some chains ahead of the others (measured on
        # 10 fits, 2 cores: 1 thread 0.92x the fixed run's time, 4 threads 0.69x); the
        # process's CPU share stays what the dispatcher gave it, the threads share it
        options["cores"] = max(options["cores"], sampler.chains)
        return NutpieRun(
            compiled,
            tune=sampler.tune,
            draws=sampler.draws,
            chains=sampler.chains,
            keep=lambda name: not name.endswith("_offset"),  # nothing judges or keeps them
            **options,
        )
    return nutpie.sample(
        compiled,
        draws=sampler.draws,
        tune=sampler.tune,
        chains=sampler.chains,
        progress_bar=False,
        save_warmup=False,
        **options,
    )


def sample_pymc(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    priors: PriorConfig,
    sampler: SamplerConfig,
) -> Any:
    """Sample with the NUTS of PyMC on a freshly built model (slower; for comparison).

    Bambi samples the PyMC model of :func:`pymc_model_of`, so the parametrisation is the one
    nutpie's fits use and Bambi's post-processing (the un-centred Intercept, ``p``) applies.
    """
    model = build_model(spec, layout, counts, priors)
    model.backend.model = pymc_model_of(model, priors)
    return model.fit(
        draws=sampler.draws,
        tune=sampler.tune,
        chains=sampler.chains,
        cores=sampler_cores(sampler),
        target_accept=sampler.target_accept,
        random_seed=spec_seed(spec, sampler.random_seed),
        include_response_params=True,
        progressbar=False,
    )


#: Samples one spec with given settings; ``SamplerConfig.backend`` chooses one by name.
#: The functions in the core take ``backends=`` to inject another; ``BACKENDS`` is the default.
Backend = Callable[[ModelSpec, MarketCells, CellCounts, PriorConfig, SamplerConfig], Any]
BACKENDS: dict[str, Backend] = {"nutpie": sample_nutpie, "pymc": sample_pymc}


def cell_sampler(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    priors: PriorConfig,
    backends: Mapping[str, Backend] = BACKENDS,
) -> Sample:
    """The ``sample`` function of the retry loop for one spec: settings in, posterior out."""

    def sample(settings: SamplerConfig) -> Any:
        return backends[settings.backend](spec, layout, counts, priors, settings)

    return sample


def extract_cell_draws(posterior: Any, settings: SamplerConfig) -> np.ndarray:
    """What an MRP fit keeps: P(yes | cell), thinned to ``stored_draws`` rows."""
    return thin_draws(posterior["posterior"][CELL_PROBABILITY], settings.stored_draws)


def thin_draws(cell_probability: Any, n_keep: int) -> np.ndarray:
    """Evenly spaced draws across chains, as float32 ``(n_keep, n_cells)``.

    Every model keeps the same number of draws, so the draws of a base question and of a
    question conditional on it can be paired one to one. The kept rows are picked before the
    cast to float32, so only they are converted (the same numbers as casting all first).
    """
    values = np.asarray(cell_probability)  # (chain, draw, cell); a view of the trace
    flat = values.reshape(-1, values.shape[-1])
    index = np.linspace(0, flat.shape[0] - 1, n_keep).round().astype(int)
    return flat[index].astype(np.float32, copy=False)
