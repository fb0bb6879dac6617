"""The same seed gives the same draws, also on the first run after a fresh install.

A media-mix fit reported other estimates on its first run than on every later run with the same
data, settings and seed (ROAS 328.78 against 326.05). nutpie samples a model PyTensor compiles
with numba, by default with fast-math; a function compiled afresh and one loaded from PyTensor's
numba cache (``BASE_COMPILEDIR/numba``) then sum in another order, and the chains part ways.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.fitting import fit_with_policy
from misterp.records import ConvergenceReport

ROOT = Path(__file__).resolve().parents[2]
#: Tiny settings: the claim is bit-identical draws, not a good posterior.
TINY = SamplerConfig(draws=100, tune=100, chains=2, cores=1, stored_draws=100)


def test_every_fit_compiles_its_model_without_fast_math() -> None:
    """Each family's sampler runs inside the shared retry loop, which turns fast-math off."""
    import pytensor

    seen: list[bool] = []

    def sample(settings: SamplerConfig) -> None:
        seen.append(bool(pytensor.config.numba__fastmath))

    fit_with_policy(
        sample,
        lambda posterior, settings: np.zeros((1, 1)),
        key="k",
        sampler=TINY,
        thresholds=ConvergenceThresholds(),
        policy=RetryPolicy(),
        diagnose=_passes,
    )

    assert seen == [False]


def _passes(posterior: Any, seconds: float) -> ConvergenceReport:
    """Diagnostics that pass: one attempt, whatever was sampled."""
    return ConvergenceReport(
        r_hat_max=1.0, ess_bulk_min=1e4, ess_tail_min=1e4, divergences=0, bfmi_min=1.0,
        chains=2, draws=100, seconds=seconds, estimands=1, estimand_ess_bulk_min=1e4,
        estimand_ess_tail_min=1e4,
    )  # fmt: skip


def _posterior_digest(fitted: Any, settings: SamplerConfig) -> np.ndarray:
    """The extract of these fits: a digest of every posterior variable's draws, as bytes."""
    idata = getattr(fitted, "idata", fitted)  # an MMM fit's FittedMMM, or an MRP posterior
    posterior = idata["posterior"]
    digest = hashlib.sha256()
    for name in sorted(posterior.data_vars):
        digest.update(np.ascontiguousarray(np.asarray(posterior[name], dtype=float)).tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8)


def fit_both_families() -> None:
    """Fit a tiny media-mix market and a tiny tracker question; print each posterior's digest.

    Run in a fresh interpreter (``python -c``) with ``PYTENSOR_FLAGS=base_compiledir=...``.
    """
    from misterp.mmm.config import MMMConfig, MMMConvergence
    from misterp.mmm.model import market_sampler, prepare_market
    from misterp.mmm.simulate import simulate_mmm
    from misterp.mmm.validation import read_mmm_input
    from misterp.mrp.cells import aggregate_cells, build_market_cells
    from misterp.mrp.config import PriorConfig
    from misterp.mrp.data import WaveData
    from misterp.mrp.model import cell_sampler
    from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
    from misterp.mrp.specs import ModelSpec

    folder = Path(tempfile.mkdtemp())
    simulate_mmm(3, markets=("DE",), n_channels=2, n_weeks=80).write(folder / "input")
    config = MMMConfig(
        input=str(folder / "input"),
        output=str(folder / "out"),
        sampler=TINY,
        convergence=MMMConvergence(ess_bulk_min=0, ess_tail_min=0),  # TINY's 200 draws
        holdout_weeks=0,
    )
    market = prepare_market(read_mmm_input(config), "DE", config)

    wave = simulate_wave(3, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layout = build_market_cells(data, {})["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", "p(yes, n) ~ 1 + gender + (1|age) + (1|region)")
    counts = aggregate_cells(data, {"DE": layout}, [spec])[spec.key]

    samplers = {
        "mmm": market_sampler(market, config),
        "mrp": cell_sampler(spec, layout, counts, PriorConfig()),
    }
    for family, sample in samplers.items():
        result = fit_with_policy(
            sample,
            _posterior_digest,
            key=family,
            sampler=TINY,
            thresholds=ConvergenceThresholds(),
            policy=RetryPolicy(max_attempts=1),
            diagnose=_passes,
        )
        assert result.draws is not None, result.error
        print(family, result.draws.tobytes().hex(), flush=True)


def _fit_in_fresh_interpreter(base_compiledir: Path) -> dict[str, str]:
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={base_compiledir}"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.core.test_reproducible_fits import fit_both_families; fit_both_families()",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith(("mmm ", "mrp "))]
    return {family: digest for family, digest in lines}  # noqa: C416 (checks two fields)


@pytest.mark.slow
def test_the_first_fit_after_a_fresh_install_has_the_draws_of_every_later_one(
    tmp_path: Path,
) -> None:
    """Cold numba cache (a fresh PyTensor compile dir) and warm, per family: the same draws."""
    cache = tmp_path / "pytensor"
    first = _fit_in_fresh_interpreter(cache)  # compiles every part of both models afresh
    assert (cache / "numba").is_dir()  # ... and caches them
    later = _fit_in_fresh_interpreter(cache)  # loads them from the cache

    assert set(first) == {"mmm", "mrp"}
    assert later == first
