"""Fitting on real samplers: unseen census levels and recovery of known values (slow)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from misterp.config import SamplerConfig
from misterp.mrp.cells import CellCounts, MarketCells, aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig, WaveConfig, parse_config
from misterp.mrp.data import WaveData
from misterp.mrp.model import (
    BINOMIAL_KERNEL,
    build_model,
    pymc_model_of,
    sample_nutpie,
    sample_pymc,
    shared_data_model,
)
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec
from misterp.pipeline.wave import run_wave_inline
from support import values_at


@pytest.mark.slow
def test_a_region_without_respondents_is_predicted_from_the_group_distribution() -> None:
    wave = simulate_wave(5, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    keep = wave.respondents["region"] != "central"
    respondents = wave.respondents[keep]
    answers = wave.answers[wave.answers["respondent_id"].isin(respondents["respondent_id"])]
    data = WaveData(respondents, answers, wave.poststrat, wave.questions, wave.demographics)
    layouts = build_market_cells(data, {})
    layout = layouts["DE"]
    spec = ModelSpec(
        "DE",
        "aware_brand01",
        "yes",
        "p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region)",
    )
    counts = aggregate_cells(data, layouts, [spec])[spec.key]
    assert counts.n[layout.frame["region"] == "central"].sum() == 0

    sampler = SamplerConfig(draws=1000, tune=1000, cores=2, check_every=None)
    idata = sample_nutpie(spec, layout, counts, PriorConfig(), sampler)

    effect = idata["posterior"]["1|region"].sel(region__factor_dim="central").to_numpy().ravel()
    sigma = idata["posterior"]["1|region_sigma"].to_numpy().ravel()
    # Unseen level: effect | sigma ~ N(0, sigma), so E[effect] = 0 and Var[effect] = E[sigma^2].
    # Tolerances: 4,000 draws with ESS in the hundreds give Monte Carlo error ~0.05 on these.
    assert abs(effect.mean()) < 0.1
    assert effect.std() == pytest.approx(np.sqrt(np.mean(sigma**2)), rel=0.2)
    # and it is wider than any observed region's (not a borrowed group, as in Bambi's
    # sample_new_groups); measured ratio 1.8 on this seed
    observed = idata["posterior"]["1|region"].drop_sel(region__factor_dim="central")
    widest = float(observed.std(dim=("chain", "draw")).max())
    assert effect.std() > 1.3 * widest


@pytest.mark.slow
def test_mrp_recovers_known_population_and_target_group_values(tmp_path: object) -> None:
    tables = []
    for seed in (2024, 2025):
        wave = simulate_wave(
            seed,
            WaveTruthSpec(markets=("DE",), brands=("brand01", "brand02"), rare_brand="brand02"),
        )
        wave.write(f"{tmp_path}/input{seed}")
        config: WaveConfig = parse_config(
            wave.config(f"{tmp_path}/input{seed}", f"{tmp_path}/out{seed}")
            | {"wave": "2026-11", "sampler": {"cores": 2}}
        )

        outcome = run_wave_inline(config)

        table = outcome.estimates.merge(
            wave.truth, on=["market", "question_id", "option", "target_group"]
        )
        assert len(table) == len(outcome.estimates) == 12 * 4
        assert outcome.counts.converged == 12
        covered = (table["q05"] <= table["true_value"]) & (table["true_value"] <= table["q95"])
        # 48 correlated 90% intervals: nominal 0.9; below 0.75 would be a real miscalibration.
        assert covered.mean() >= 0.75
        tables.append(table)
    groups = pd.concat(tables)
    groups = groups[groups["target_group"] != "all"]
    mrp_error = (groups["mean"] - groups["true_value"]).abs().mean()
    raw_error = (groups["raw_mean"] - groups["true_value"]).abs().mean()
    # The panel is tilted on age and education, so raw shares inside these groups stay biased.
    # One seed's ratio swings widely (measured 0.32 to 0.86 over five seeds once consideration
    # became asked of the aware only), so two seeds are pooled; the bound is the one this test
    # always had.
    assert mrp_error < 0.85 * raw_error


def _small_model(formula: str) -> tuple[ModelSpec, MarketCells, CellCounts]:
    """One awareness model of a small simulated German wave: its spec, cell layout and counts."""
    wave = simulate_wave(3, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layout = build_market_cells(data, {})["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", formula)
    return spec, layout, aggregate_cells(data, {"DE": layout}, [spec])[spec.key]


#: Walk orders as the simulator's census has them; the regions' is deliberately not sorted.
WALKS = {
    "age": ("18-24", "25-34", "35-44", "45-54", "55+"),
    "region": ("north", "east", "south", "west", "central"),
}


@pytest.mark.parametrize(
    "priors",
    [
        PriorConfig(group_effects="normal"),
        PriorConfig(group_effects="zero_sum"),
        PriorConfig(random_walk=WALKS),
        PriorConfig(group_effects="normal", random_walk={"age": WALKS["age"]}),
    ],
    ids=["normal", "zero_sum", "random_walk", "random_walk_age_normal_rest"],
)
def test_the_compiled_binomial_kernel_has_the_posterior_of_bambis_binomial_model(
    priors: PriorConfig,
) -> None:
    spec, layout, counts = _small_model("p(yes, n) ~ 1 + gender + (1|age) + (1|region)")
    binomial = pymc_model_of(build_model(spec, layout, counts, priors), priors)
    kernel = shared_data_model(build_model(spec, layout, counts, priors), priors)
    assert [p.name for p in kernel.potentials] == [BINOMIAL_KERNEL]
    assert kernel.observed_RVs == []

    def gradient_of(model: Any) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """The model's gradient by value variable, compiled once (a compile takes seconds)."""
        rvs = model.free_RVs
        dlogp = model.compile_dlogp(vars=rvs)
        names = [model.rvs_to_values[rv].name for rv in rvs]

        def gradient(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            sizes = [np.size(point[name]) for name in names]
            return dict(zip(names, np.split(dlogp(point), np.cumsum(sizes)[:-1]), strict=True))

        return gradient

    logp_binomial, logp_kernel = binomial.compile_logp(), kernel.compile_logp()
    gradient_binomial, gradient_kernel = gradient_of(binomial), gradient_of(kernel)
    rng = np.random.default_rng(0)
    start = binomial.initial_point()
    gaps = []
    for _ in range(5):
        point = {k: v + rng.normal(scale=0.7, size=np.shape(v)) for k, v in start.items()}
        gaps.append(logp_binomial(point) - logp_kernel(point))
        expected, actual = gradient_binomial(point), gradient_kernel(point)
        assert expected.keys() == actual.keys()
        for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-9, atol=1e-9)
    # The kernel drops only log C(n, yes): a constant, the same at every point.
    log_choose = float(
        np.sum(gammaln(counts.n + 1) - gammaln(counts.yes + 1) - gammaln(counts.n - counts.yes + 1))
    )
    np.testing.assert_allclose(gaps, log_choose, rtol=1e-9)


def test_zero_sum_group_intercepts_sum_to_zero_and_keep_every_level() -> None:
    spec, layout, counts = _small_model("p(yes, n) ~ 1 + gender + (1|age) + (1|region)")
    priors = PriorConfig(group_effects="zero_sum")
    model = pymc_model_of(build_model(spec, layout, counts, priors), priors)
    independent = PriorConfig(group_effects="normal")
    normal = pymc_model_of(build_model(spec, layout, counts, independent), independent)

    # one free value fewer per group term (the sum-to-zero direction is gone), the rest alike
    sizes = {name: np.size(v) for name, v in model.initial_point().items()}
    before = {name: np.size(v) for name, v in normal.initial_point().items()}
    levels = (before.pop("1|age_offset"), before.pop("1|region_offset"))
    assert sizes.pop("1|age_offset_zerosum__") == levels[0] - 1
    assert sizes.pop("1|region_offset_zerosum__") == levels[1] - 1
    assert sizes == before
    # at a random point the group effects (sd x offset) sum to zero over every level
    # (keys in sorted order: the point's order can follow string hashing; every sd is 1, so
    # the effects are the offsets themselves and cannot all be tiny)
    rng = np.random.default_rng(1)
    start = model.initial_point()
    point = {k: rng.normal(size=np.shape(start[k])) for k in sorted(start)}
    point |= {k: np.zeros_like(v) for k, v in point.items() if k.endswith("_sigma_log__")}
    effects = values_at(model, ["1|age", "1|region"])(point)
    for effect, n in zip(effects, levels, strict=True):
        assert effect.shape == (n,)
        assert abs(effect.sum()) < 1e-9
        assert np.abs(effect).max() > 0.1


def test_the_pymc_backend_samples_the_same_zero_sum_model_as_nutpie() -> None:
    spec, layout, counts = _small_model("p(yes, n) ~ 1 + gender + (1|age)")

    idata = sample_pymc(
        spec, layout, counts, PriorConfig(), SamplerConfig(draws=30, tune=30, chains=2)
    )

    posterior = idata["posterior"]
    assert posterior["p"].shape[-1] == len(layout.frame)  # a probability per cell
    effects = posterior["1|age"].to_numpy()
    np.testing.assert_allclose(effects.sum(axis=-1), 0.0, atol=1e-9)  # zero-sum levels
