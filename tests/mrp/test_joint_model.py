"""The joint model of a battery: shared effects, per-item deviations summing to zero both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from misterp.mrp.cells import aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig, parse_config
from misterp.mrp.data import WaveData
from misterp.mrp.joint import stacked_cells, stacked_counts
from misterp.mrp.model import BINOMIAL_KERNEL, build_model, pymc_model_of, shared_data_model
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec, joint_formula
from misterp.pipeline.wave import run_wave_inline
from support import values_at

FORMULA = joint_formula("p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)")
OPTIONS = ("innovative", "trustworthy", "good_value")


def test_item_deviations_sum_to_zero_over_items_and_over_levels() -> None:
    wave = simulate_wave(
        3,
        WaveTruthSpec(
            markets=("DE",), brands=("brand01",), rare_brand=None, association_options=OPTIONS
        ),
    )
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layouts = build_market_cells(data, {})
    specs = [ModelSpec("DE", "assoc_brand01", option, FORMULA) for option in sorted(OPTIONS)]
    counts = aggregate_cells(data, layouts, specs)
    layout = stacked_cells(layouts["DE"], len(specs))
    stacked = stacked_counts([counts[spec.key] for spec in specs])
    priors = PriorConfig()
    model = pymc_model_of(build_model(specs[0], layout, stacked, priors), priors)

    sizes = {name: np.size(v) for name, v in model.initial_point().items()}
    assert sizes["1|age:option_offset_zerosum__"] == (5 - 1) * (3 - 1)  # both sums fixed
    assert sizes["1|option_offset_zerosum__"] == 3 - 1
    rng = np.random.default_rng(1)
    point = {k: rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    by_age, by_age_gender, p = values_at(model, ["1|age:option", "1|age:gender:option", "p"])(point)
    table = by_age.reshape(5, 3)  # Bambi's order: age levels, then items within each
    np.testing.assert_allclose(table.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(table.sum(axis=1), 0.0, atol=1e-12)
    assert np.abs(table).max() > 0.01
    np.testing.assert_allclose(by_age_gender.reshape(10, 3).sum(axis=0), 0.0, atol=1e-12)
    assert p.shape == (layout.n_cells,)

    shared = shared_data_model(build_model(specs[0], layout, stacked, priors), priors)
    assert BINOMIAL_KERNEL in {pot.name for pot in shared.potentials}
    start = shared.initial_point()
    assert np.isfinite(shared.compile_logp()(start))
    assert np.isfinite(shared.compile_dlogp()(start)).all()


@pytest.mark.slow
def test_a_joint_family_recovers_known_values_like_independent_models(tmp_path: Path) -> None:
    """The bounds are the ones the independent models' recovery test has always had."""
    wave = simulate_wave(
        2024,
        WaveTruthSpec(
            markets=("DE",),
            brands=("brand01", "brand02"),
            rare_brand="brand02",
            rare_awareness=0.15,
            association_options=OPTIONS,
            association_shared=0.6,
            interaction_sd={("age", "gender"): 0.5},
        ),
    )
    wave.write(f"{tmp_path}/input")
    families = {"associations": ["assoc_brand01", "assoc_brand02"]}
    config = parse_config(
        wave.config(f"{tmp_path}/input", f"{tmp_path}/out")
        | {"wave": "2026-11", "model": {"joint_families": families}, "sampler": {"cores": 2}}
    )

    outcome = run_wave_inline(config)

    table = outcome.estimates.merge(
        wave.truth, on=["market", "question_id", "option", "target_group"]
    )
    assert outcome.counts.converged == len(outcome.manifest.models) == 2 * (2 + len(OPTIONS))
    assert {m.spec["joint"] for m in outcome.manifest.models if "assoc" in m.key} == {
        "associations"
    }
    assoc = table[table["question_id"].str.startswith("assoc_")]
    covered = (assoc["q05"] <= assoc["true_value"]) & (assoc["true_value"] <= assoc["q95"])
    assert covered.mean() >= 0.75
    groups = assoc[assoc["target_group"] != "all"]
    mrp_error = (groups["mean"] - groups["true_value"]).abs().mean()
    raw_error = (groups["raw_mean"] - groups["true_value"]).abs().mean()
    assert mrp_error < 0.85 * raw_error
