"""Where one fit's time goes outside the sampler, before and after issue 14's cuts, in one run.

Each variant fits the same models of a simulated wave (``bench/wave_throughput.py``'s shape and
seed) through the production path, ``misterp.mrp.wave.fit_and_record``, in a process of its
own (``gc.freeze`` is process state), alternating before/after for ``--rounds`` rounds so that
both see the same load. Per fit it times: the sampler (nutpie's ``wait``), turning the trace
into an ArviZ ``DataTree``, diagnostics, extracting and thinning the cell draws, writing the
record, and ``release_memory``. "before" is the code as it was (warm-up draws kept and
converted, ArviZ per variable, cast before thinning, a full ``gc.collect`` per fit), kept here
as frozen copies; "after" is the code as it is.

Run from the repository root: ``.venv/bin/python bench/fit_overhead.py --models 10``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PHASES = ("sampler", "to_arviz", "diagnostics", "extract", "write", "release", "fit_total")
VARIANTS = ("before", "after")


# -- the code as it was before issue 14 (frozen copies) -------------------------------------


def before_check_convergence(idata: Any, seconds: float = math.nan) -> Any:
    """``misterp.diagnostics.check_convergence`` before: ArviZ per variable of the Dataset."""
    import arviz as az

    from misterp.diagnostics import monitored_variables
    from misterp.records import ConvergenceReport

    def as_dataset(x: Any) -> Any:
        return x.to_dataset() if hasattr(x, "to_dataset") else x

    def min_or_nan(dataset: Any) -> float:
        flat = np.concatenate([np.asarray(v).ravel() for v in dataset.data_vars.values()])
        return float(np.nanmin(flat)) if np.isfinite(flat).any() else math.nan

    posterior = as_dataset(idata["posterior"])
    params = posterior[monitored_variables(posterior)]
    r_hat = np.concatenate([np.asarray(v).ravel() for v in as_dataset(az.rhat(params)).values()])
    stats = as_dataset(idata["sample_stats"])
    energy = np.asarray(stats["energy"], dtype=float)
    bfmi = np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1)
    return ConvergenceReport(
        r_hat_max=float(np.max(r_hat)) if np.isfinite(r_hat).all() else math.nan,
        ess_bulk_min=min_or_nan(as_dataset(az.ess(params, method="bulk"))),
        ess_tail_min=min_or_nan(as_dataset(az.ess(params, method="tail"))),
        divergences=int(np.asarray(stats["diverging"]).sum()),
        bfmi_min=float(np.min(bfmi)),
        chains=int(posterior.sizes["chain"]),
        draws=int(posterior.sizes["draw"]),
        seconds=seconds,
    )


def before_extract_cell_draws(posterior: Any, settings: Any) -> np.ndarray:
    """``extract_cell_draws`` before: the whole trace cast to float32, then thinned."""
    values = np.asarray(posterior["posterior"]["p"], dtype=np.float32)
    flat = values.reshape(-1, values.shape[-1])
    index = np.linspace(0, flat.shape[0] - 1, settings.stored_draws).round().astype(int)
    return flat[index]


def before_release_memory() -> None:
    """``release_memory`` before: a full collection of the heap, then ``malloc_trim``."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


# -- one variant in this process ---------------------------------------------------------------


def _timed(name: str, function: Callable[..., Any], clock: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock[name] += time.perf_counter() - started

    return timed


def run_variant(variant: str, models: int, seed: int) -> dict[str, Any]:
    """Fit ``models`` models (after one untimed compile per market); mean seconds per phase."""
    import importlib

    import nutpie

    import misterp.fitting
    import misterp.mrp.wave
    from misterp.mrp.config import parse_config
    from misterp.mrp.prepare import prepare_wave
    from misterp.mrp.simulate import simulate_wave
    from misterp.storage import ResultStore

    sys.path.insert(0, str(Path(__file__).parent))
    from wave_throughput import WAVE_ID, truth_spec, wave_shape

    work = tempfile.mkdtemp(prefix="misterp-overhead-")
    simulated = simulate_wave(seed, truth_spec(wave_shape(max(models + 2, 4)), 3000))
    simulated.write(f"{work}/input/{WAVE_ID}")
    raw = simulated.config(f"{work}/input/{WAVE_ID}", f"{work}/results") | {"wave": WAVE_ID}
    prepared = prepare_wave(parse_config(raw))
    store = ResultStore(f"{work}/results")

    clock = dict.fromkeys(PHASES, 0.0)
    # the module, not the function ``nutpie.sample`` that shadows it as an attribute
    sampler_class = importlib.import_module("nutpie.sample")._BackgroundSampler
    sampler_class.wait = _timed("sampler", sampler_class.wait, clock)  # includes _extract
    sampler_class._extract = _timed("to_arviz", sampler_class._extract, clock)
    if variant == "before":
        keep_warmup = nutpie.sample

        def sample_keeping_warmup(*args: Any, **kwargs: Any) -> Any:
            return keep_warmup(*args, **(kwargs | {"save_warmup": True}))

        nutpie.sample = sample_keeping_warmup
        diagnose, extract, release = (
            before_check_convergence,
            before_extract_cell_draws,
            before_release_memory,
        )
    else:
        diagnose, extract, release = (
            misterp.fitting.check_convergence,
            misterp.mrp.wave.extract_cell_draws,
            misterp.fitting.release_memory,
        )
    misterp.fitting.check_convergence = _timed("diagnostics", diagnose, clock)
    misterp.mrp.wave.extract_cell_draws = _timed("extract", extract, clock)
    misterp.fitting.release_memory = _timed("release", release, clock)
    misterp.mrp.wave.write_fit = _timed("write", misterp.mrp.wave.write_fit, clock)

    specs = prepared.specs
    for market in sorted({s.market for s in specs}):  # compile, untimed
        misterp.mrp.wave.fit_and_record(
            prepared, next(s for s in specs if s.market == market), store, cores=1
        )
    clock.update(dict.fromkeys(PHASES, 0.0))
    attempts = 0
    chosen = specs[2 : 2 + models]
    for spec in chosen:
        started = time.perf_counter()
        record = misterp.mrp.wave.fit_and_record(prepared, spec, store, cores=1)
        clock["fit_total"] += time.perf_counter() - started
        attempts += len(record.attempts)
    clock["sampler"] -= clock["to_arviz"]
    return {
        "variant": variant,
        "fits": len(chosen),
        "attempts": attempts,
        **{phase: clock[phase] / len(chosen) for phase in PHASES},
    }


# -- the comparison ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run before/after alternately in child processes and print seconds per fit and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10, help="timed fits per variant run")
    parser.add_argument("--rounds", type=int, default=2, help="before/after pairs")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args.child, args.models, args.seed)), flush=True)
        return 0
    runs: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for variant in VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]:
            command = [sys.executable, __file__, "--child", variant]
            command += ["--models", str(args.models), "--seed", str(args.seed)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {variant}: {runs[-1]['fit_total']:.2f} s/fit", flush=True)
    print(f"\nseconds per fit (mean of {args.rounds} runs x {args.models} fits; cores=1 per fit)")
    print(f"{'phase':<12s} {'before':>8s} {'after':>8s} {'after/before':>13s}")
    for phase in (*PHASES, "not_sampler"):
        means = []
        for variant in VARIANTS:
            rows = [r for r in runs if r["variant"] == variant]
            if phase == "not_sampler":
                values = [r["fit_total"] - r["sampler"] for r in rows]
            else:
                values = [r[phase] for r in rows]
            means.append(float(np.mean(values)))
        ratio = means[1] / means[0] if means[0] > 0 else math.nan
        print(f"{phase:<12s} {means[0]:8.3f} {means[1]:8.3f} {ratio:13.2f}")
    attempts = {v: sum(r["attempts"] for r in runs if r["variant"] == v) for v in VARIANTS}
    print(f"attempts: {attempts} (the same settings and seeds, so the same counts expected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
