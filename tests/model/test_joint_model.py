"""The joint model of a battery: shared effects, per-item deviations summing to zero both ways."""

from __future__ import annotations

import numpy as np

from misterp.config import PriorConfig
from misterp.mrp.cells import aggregate_cells, build_market_cells
from misterp.mrp.data import WaveData
from misterp.mrp.joint import stacked_cells, stacked_counts
from misterp.mrp.model import BINOMIAL_KERNEL, _shared_data_model, build_model, pymc_model_of
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec, joint_formula

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
    compute = model.compile_fn(
        [model["1|age:option"], model["1|age:gender:option"], model["p"]],
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    by_age, by_age_gender, p = compute(point)
    table = by_age.reshape(5, 3)  # Bambi's order: age levels, then items within each
    np.testing.assert_allclose(table.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(table.sum(axis=1), 0.0, atol=1e-12)
    assert np.abs(table).max() > 0.01
    np.testing.assert_allclose(by_age_gender.reshape(10, 3).sum(axis=0), 0.0, atol=1e-12)
    assert p.shape == (layout.n_cells,)

    shared = _shared_data_model(build_model(specs[0], layout, stacked, priors), priors)
    assert BINOMIAL_KERNEL in {pot.name for pot in shared.potentials}
    start = shared.initial_point()
    assert np.isfinite(shared.compile_logp()(start))
    assert np.isfinite(shared.compile_dlogp()(start)).all()
