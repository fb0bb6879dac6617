"""What a fit keeps of a nutpie posterior: the draws after warm-up, thinned, unchanged."""

from __future__ import annotations

import numpy as np
import nutpie
import xarray as xr

from misterp.config import SamplerConfig
from misterp.diagnostics import check_convergence
from misterp.mrp.cells import aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig
from misterp.mrp.data import WaveData
from misterp.mrp.model import (
    compiled_template,
    extract_cell_draws,
    sample_nutpie,
    spec_seed,
    thin_draws,
)
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec


def test_thin_draws_keeps_the_rows_a_cast_of_the_whole_trace_would() -> None:
    values = np.random.default_rng(20250601).uniform(size=(4, 250, 7))
    cell_probability = xr.DataArray(values, dims=("chain", "draw", "__obs__"))
    cast_first = values.astype(np.float32).reshape(-1, 7)
    index = np.linspace(0, cast_first.shape[0] - 1, 100).round().astype(int)

    kept = thin_draws(cell_probability, 100)

    assert kept.dtype == np.float32
    np.testing.assert_array_equal(kept, cast_first[index])


def test_a_nutpie_fit_without_warmup_has_the_draws_and_diagnostics_of_one_with_it() -> None:
    wave = simulate_wave(3, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layout = build_market_cells(data, {})["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", "p(yes, n) ~ 1 + gender + (1|age)")
    counts = aggregate_cells(data, {"DE": layout}, [spec])[spec.key]
    priors = PriorConfig()
    sampler = SamplerConfig(draws=100, tune=100, chains=2, cores=1, stored_draws=50)

    ours = sample_nutpie(spec, layout, counts, priors, sampler)
    with_warmup = nutpie.sample(  # the call before the warm-up was dropped
        compiled_template(spec, layout, counts, priors).with_data(
            yes=counts.yes.astype(np.int64), n=counts.n.astype(np.int64)
        ),
        draws=sampler.draws,
        tune=sampler.tune,
        chains=sampler.chains,
        cores=1,
        seed=spec_seed(spec, sampler.random_seed),
        target_accept=sampler.target_accept,
        progress_bar=False,
    )

    assert set(ours.children) == {"posterior", "sample_stats"}
    assert "warmup_posterior" in with_warmup.children
    np.testing.assert_array_equal(
        extract_cell_draws(ours, sampler), extract_cell_draws(with_warmup, sampler)
    )
    assert check_convergence(ours, seconds=1.0) == check_convergence(with_warmup, seconds=1.0)
