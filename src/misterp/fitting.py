"""Fit one binomial multilevel model per spec with Bambi, nutpie or PyMC.

Bambi turns the formula into a PyMC model. For nutpie, the model of a (formula, priors, cell
layout) is compiled once per process with the cell counts as shared data, and every further
question of the same market only swaps ``yes`` and ``n``: compiling costs seconds, sampling a
few hundred cells a fraction of that.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bambi as bmb
import numpy as np

from misterp.cells import CellCounts, MarketCells
from misterp.config import (
    ConvergenceThresholds,
    PriorConfig,
    RetryPolicy,
    SamplerConfig,
)
from misterp.diagnostics import ConvergenceReport, check_convergence, next_attempt
from misterp.specs import ModelSpec

__all__ = [
    "CONVERGED",
    "FAILED",
    "NOT_CONVERGED",
    "FitAttempt",
    "FitResult",
    "bambi_model",
    "build_model",
    "fit_with_policy",
]

logger = logging.getLogger(__name__)

CONVERGED = "converged"
NOT_CONVERGED = "not_converged"
FAILED = "failed"

#: Name of the per-cell success probability that Bambi adds for the binomial family.
CELL_PROBABILITY = "p"
# Measured: the centred form diverges more on tracker-sized cells than the non-centred one.
NONCENTERED = True
#: Name of the potential that carries the binomial likelihood in the compiled nutpie model.
BINOMIAL_KERNEL = "binomial_kernel"


@dataclass(frozen=True)
class FitAttempt:
    """One sampling attempt: the settings used and what came of them."""

    sampler: dict[str, Any]
    report: ConvergenceReport | None
    status: str
    error: str | None = None
    #: Why the attempt missed the thresholds, as a person would say it (empty when it passed).
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping for the manifest."""
        return {
            "sampler": self.sampler,
            "report": self.report.to_dict() if self.report else None,
            "status": self.status,
            "error": self.error,
            "failures": list(self.failures),
        }


@dataclass
class FitResult:
    """The outcome of fitting one spec, successful or not.

    A failed fit is returned, not raised, so the wave can report it next to the successes.
    ``cell_draws`` holds the posterior of P(yes | cell), thinned to ``stored_draws`` rows,
    one column per cell of the market layout.
    """

    spec: ModelSpec
    status: str
    attempts: list[FitAttempt]
    data_hash: str
    cell_draws: np.ndarray | None = None
    seconds: float = 0.0
    n_respondents: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> ConvergenceReport | None:
        """Diagnostics of the last attempt."""
        return self.attempts[-1].report if self.attempts else None

    @property
    def error(self) -> str | None:
        """The error of the last attempt, if it raised."""
        return self.attempts[-1].error if self.attempts else None


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
            "Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=priors.group_sigma)
        ),
    )
    return model


def spec_seed(spec: ModelSpec, base_seed: int) -> int:
    """A reproducible seed per model, different across models of a wave."""
    offset = int(hashlib.sha256(spec.key.encode()).hexdigest()[:8], 16)
    return (base_seed + offset) % (2**32)


# --- nutpie: compile once per (formula, priors, layout), swap the data ---------------------

_TEMPLATES: dict[tuple[str, str, str], Any] = {}


def _shared_data_model(model: bmb.Model) -> Any:
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

    model.build()
    fgraph, _ = fgraph_from_model(model.backend.model, inlined_views=True)
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


def _compiled_template(
    spec: ModelSpec, layout: MarketCells, counts: CellCounts, priors: PriorConfig
) -> Any:
    import nutpie

    key = (spec.formula, priors.model_dump_json(), layout.layout_hash)
    if key not in _TEMPLATES:
        started = time.perf_counter()
        pymc_model = _shared_data_model(build_model(spec, layout, counts, priors))
        _TEMPLATES[key] = nutpie.compile_pymc_model(pymc_model)
        logger.info(
            "compiled %s for market %s in %.1f s",
            spec.formula,
            layout.market,
            time.perf_counter() - started,
        )
    return _TEMPLATES[key]


#: Set by a pool of fit processes: CPUs each fit's chains may use, so N processes do not each
#: start one thread per CPU of the machine (in a pod, ``os.cpu_count()`` is the node's).
CORES_PER_FIT_ENV = "MISTERP_CORES_PER_FIT"


def sampler_cores(sampler: SamplerConfig) -> int:
    """Chains sampled at once: the config's ``cores``, else the pool's share, else all CPUs."""
    if sampler.cores:
        return sampler.cores
    share = int(os.environ.get(CORES_PER_FIT_ENV, "0") or 0)
    return min(sampler.chains, share or os.cpu_count() or 1)


def _sample_nutpie(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    priors: PriorConfig,
    sampler: SamplerConfig,
) -> Any:
    import nutpie

    compiled = _compiled_template(spec, layout, counts, priors).with_data(
        yes=counts.yes.astype(np.int64), n=counts.n.astype(np.int64)
    )
    return nutpie.sample(
        compiled,
        draws=sampler.draws,
        tune=sampler.tune,
        chains=sampler.chains,
        cores=sampler_cores(sampler),
        seed=spec_seed(spec, sampler.random_seed),
        target_accept=sampler.target_accept,
        progress_bar=False,
    )


def _sample_pymc(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    priors: PriorConfig,
    sampler: SamplerConfig,
) -> Any:
    model = build_model(spec, layout, counts, priors)
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


_SAMPLERS: dict[str, Callable[..., Any]] = {"nutpie": _sample_nutpie, "pymc": _sample_pymc}


def thin_draws(cell_probability: Any, n_keep: int) -> np.ndarray:
    """Evenly spaced draws across chains, as float32 ``(n_keep, n_cells)``.

    Every model keeps the same number of draws, so the draws of a base question and of a
    question conditional on it can be paired one to one.
    """
    values = np.asarray(cell_probability, dtype=np.float32)  # (chain, draw, cell)
    flat = values.reshape(-1, values.shape[-1])
    index = np.linspace(0, flat.shape[0] - 1, n_keep).round().astype(int)
    return flat[index]


def release_memory() -> None:
    """Hand freed heap back to the operating system after a fit.

    A fit allocates and frees a few hundred MB of traces; glibc keeps the freed pages, so a
    long-lived worker's RSS crept up ~1.8 MB per fit (measured over 48 fits: 572 -> 657 MB;
    flat at ~485 MB with this), i.e. with the number of models in the wave. A no-op where the C
    library has no ``malloc_trim`` (macOS, musl).
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def fit_with_policy(
    spec: ModelSpec,
    layout: MarketCells,
    counts: CellCounts,
    *,
    priors: PriorConfig,
    sampler: SamplerConfig,
    thresholds: ConvergenceThresholds,
    policy: RetryPolicy,
) -> FitResult:
    """Fit ``spec``, escalating sampler settings until diagnostics pass or the policy gives up.

    Every attempt is recorded. The draws of the last attempt are kept even when it did not
    converge, so the estimate can be written *flagged*; an attempt that raised keeps none.
    """
    started = time.perf_counter()
    attempts: list[FitAttempt] = []
    draws: np.ndarray | None = None
    settings: SamplerConfig | None = sampler
    number = 0
    while settings is not None:
        number += 1
        attempt_started = time.perf_counter()
        try:
            idata = _SAMPLERS[settings.backend](spec, layout, counts, priors, settings)
            report = check_convergence(idata, seconds=time.perf_counter() - attempt_started)
        except Exception as exc:
            logger.exception("fit %s raised on attempt %d", spec.key, number)
            attempts.append(
                FitAttempt(
                    sampler=settings.model_dump(),
                    report=None,
                    status=FAILED,
                    error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
                )
            )
            draws = None
            # An exception is not a convergence problem; stronger settings would not help.
            break
        draws = thin_draws(idata["posterior"][CELL_PROBABILITY], settings.stored_draws)
        del idata  # the full trace; only the thinned cell draws are kept
        status = CONVERGED if report.passes(thresholds) else NOT_CONVERGED
        attempts.append(
            FitAttempt(
                sampler=settings.model_dump(),
                report=report,
                status=status,
                failures=tuple(report.failures(thresholds)),
            )
        )
        if status == NOT_CONVERGED:
            logger.warning(
                "fit %s attempt %d missed: %s",
                spec.key,
                number,
                "; ".join(report.failures(thresholds)),
            )
        settings = next_attempt(report, settings, policy, thresholds, number)
    final = attempts[-1].status
    release_memory()
    return FitResult(
        spec=spec,
        status=final,
        attempts=attempts,
        data_hash=counts.data_hash,
        cell_draws=draws if final != FAILED else None,
        seconds=time.perf_counter() - started,
        n_respondents=int(counts.n.sum()),
    )
