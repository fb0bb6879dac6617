"""Cost of one leapfrog step: misterp's compiled binomial kernel against the ways it replaced.

Three nutpie models of the same question (same posterior), sampled with the same seed:

- ``bambi constants``: Bambi's model as is, counts baked in as constants (one compile per
  question: what a naive loop over questions pays);
- ``shared binomial``: the observed Binomial with the counts swapped for shared data, so one
  compile serves every question; PyTensor can no longer fold log C(n, yes), three ``gammaln``
  per cell at every step;
- ``misterp kernel``: ``misterp.mrp.model``'s template, the binomial kernel on the logit scale.

Run from the repository root: ``.venv/bin/python bench/likelihood_kernel.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytensor
from pymc.model.fgraph import ModelObservedRV, fgraph_from_model, model_from_fgraph

from misterp.mrp import model as fitting
from misterp.mrp.cells import aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig
from misterp.mrp.data import WaveData
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec

FORMULA = "p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region)"


def shared_binomial(model: Any) -> Any:
    """The observed Binomial kept, its counts made shared data (misterp before the kernel)."""
    model.build()
    fgraph, _ = fgraph_from_model(model.backend.model, inlined_views=True)
    observed = next(o for o in fgraph.outputs if isinstance(o.owner.op, ModelObservedRV))
    rv, data = observed.owner.inputs[0], observed.owner.inputs[1]
    trials = rv.owner.inputs[2]
    fgraph.replace(data, pytensor.shared(np.asarray(data.data), name="yes"), import_missing=True)
    fgraph.replace(trials, pytensor.shared(np.asarray(trials.data), name="n"), import_missing=True)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def main() -> None:
    import nutpie

    wave = simulate_wave(7, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layout = build_market_cells(data, {})["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", FORMULA)
    counts = aggregate_cells(data, {"DE": layout}, [spec])[spec.key]
    priors = PriorConfig()

    def bambi_constants() -> Any:
        model = fitting.build_model(spec, layout, counts, priors)
        model.build()
        return model.backend.model

    builders = {
        "bambi constants": bambi_constants,
        "shared binomial": lambda: shared_binomial(
            fitting.build_model(spec, layout, counts, priors)
        ),
        "misterp kernel": lambda: fitting.shared_data_model(
            fitting.build_model(spec, layout, counts, priors)
        ),
    }
    compiled: dict[str, Any] = {}
    compile_seconds: dict[str, float] = {}
    for name, build in builders.items():
        started = time.perf_counter()
        compiled[name] = nutpie.compile_pymc_model(build())
        compile_seconds[name] = time.perf_counter() - started

    print(f"{'model':16s} {'compile s':>9s} {'sample s':>9s} {'steps':>8s} {'us/step/core':>13s}")
    per_step: dict[str, float] = {}
    for name, model in compiled.items():
        best = float("inf")
        for _ in range(2):  # the better of two runs: the first may still warm caches
            started = time.perf_counter()
            trace = nutpie.sample(
                model,
                draws=1000,
                tune=1000,
                chains=4,
                cores=2,
                seed=1,
                target_accept=0.95,
                progress_bar=False,
            )
            best = min(best, time.perf_counter() - started)
        steps = int(trace.sample_stats["n_steps"].sum())
        per_step[name] = best * 2 / steps * 1e6
        print(
            f"{name:16s} {compile_seconds[name]:9.1f} {best:9.2f} {steps:8d} {per_step[name]:13.1f}"
        )
    kernel = per_step["misterp kernel"]
    print(
        f"ratio_vs_shared_binomial={per_step['shared binomial'] / kernel:.2f} "
        f"ratio_vs_bambi_constants={per_step['bambi constants'] / kernel:.2f}"
    )


if __name__ == "__main__":
    main()
