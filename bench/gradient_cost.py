"""Where a leapfrog step's time goes, by number of cells (issue 23, item 4: the gradient).

A fit's time is its leapfrog steps; a step is one evaluation of the log density and its
gradient plus nutpie's own work. This bench takes the default question model of a simulated
German market (``p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region) +
(1|age:gender)``, the census's 150 cells) and grows the cells the way an audience does: the
census cells crossed with a respondent profile of 1, 2, 4 and 8 levels (150, 300, 600 and
1,200 cells; the profile enters the formula as a group effect, as a profile of more than two
levels does). For each size it measures, in CPU time (so other work on the machine matters
less):

- ``step us``: nutpie's microseconds per leapfrog step, warm-up included (4 chains x (500
  tune + 1,000 draws), one core, the better of two runs);
- ``logp+grad us``: one evaluation of the compiled log density and gradient (PyTensor's numba
  backend, as nutpie compiles it), less the cost of calling a compiled function from Python
  (``call us``, measured on a function of the same inputs that does almost nothing);
- ``priors us``: the same for the model without its likelihood (priors, transforms, the
  zero-sum and non-centred parametrisation): the part that does not grow with the cells;
- ``cells us``: the difference, the binomial kernel over the cells, and per cell in ns.

Run from the repository root: ``.venv/bin/python bench/gradient_cost.py`` (about 2 minutes).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from misterp.fitting import reproducible_compilation
from misterp.mrp import model as fitting
from misterp.mrp.cells import aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig
from misterp.mrp.data import WaveData
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec

FORMULA = "p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region) + (1|age:gender)"


def model_with_profile(levels: int, respondents: int) -> tuple[Any, int]:
    """The shared-data model of the default formula on census cells x ``levels`` profile levels."""
    wave = simulate_wave(
        7,
        WaveTruthSpec(
            markets=("DE",), brands=("brand01",), rare_brand=None, n_respondents=respondents
        ),
    )
    people = wave.respondents.copy()
    profiles: tuple[str, ...] = ()
    formula = FORMULA
    if levels > 1:
        rng = np.random.default_rng(levels)
        people["profile"] = [f"p{level}" for level in rng.integers(0, levels, len(people))]
        profiles = ("profile",)
        formula = f"{FORMULA} + (1|profile)"
    data = WaveData(
        people, wave.answers, wave.poststrat, wave.questions, wave.demographics, profiles
    )
    layout = build_market_cells(data, {}, profiles)["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", formula)
    counts = aggregate_cells(data, {"DE": layout}, [spec])[spec.key]
    priors = PriorConfig()
    return fitting.shared_data_model(fitting.build_model(spec, layout, counts, priors), priors), (
        layout.n_cells
    )


def call_us(model: Any, part: str, calls: int) -> float:
    """CPU microseconds per call of the compiled log density and gradient.

    ``part``: ``all`` (the model's), ``priors`` (without the likelihood) or ``call`` (a
    function of the same inputs that only adds their first elements: the cost of calling a
    compiled PyTensor function from Python, subtracted from the others).
    """
    values = model.value_vars
    if part == "call":
        outputs = [sum(value.flatten()[0] for value in values)]
    else:
        logp = model.logp() if part == "all" else model.logp(vars=model.free_RVs)
        outputs = [logp, *pt.grad(logp, values)]
    function = pytensor.function(values, outputs, mode="NUMBA", trust_input=True)
    start = model.initial_point()
    arguments = [np.asarray(start[value.name]) for value in values]
    function(*arguments)
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            function(*arguments)
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def step_us(model: Any) -> float:
    """CPU microseconds per leapfrog step of nutpie on one core, the better of two runs."""
    import nutpie

    compiled = nutpie.compile_pymc_model(model)
    best = float("inf")
    for _ in range(2):
        started = time.process_time()
        trace = nutpie.sample(
            compiled,
            draws=1000,
            tune=500,
            chains=4,
            cores=1,
            seed=1,
            progress_bar=False,
            save_warmup=True,
        )
        seconds = time.process_time() - started
        steps = int(trace.sample_stats["n_steps"].sum())
        steps += int(trace.warmup_sample_stats["n_steps"].sum())
        best = min(best, seconds / steps)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--respondents", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=5000)
    options = parser.parse_args()
    reproducible_compilation()
    print(
        f"{'levels':>6} {'cells':>6} {'step us':>8} {'call us':>8} {'logp+grad us':>13}"
        f" {'priors us':>10} {'cells us':>9} {'ns/cell':>8}"
    )
    for levels in options.levels:
        model, n_cells = model_with_profile(levels, options.respondents)
        overhead = call_us(model, "call", options.calls)
        full = call_us(model, "all", options.calls) - overhead
        priors = call_us(model, "priors", options.calls) - overhead
        step = step_us(model)
        cells = full - priors
        print(
            f"{levels:6d} {n_cells:6d} {step:8.1f} {overhead:8.1f} {full:13.1f} {priors:10.1f}"
            f" {cells:9.1f} {cells / n_cells * 1000:8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
