"""Interaction group terms such as ``(1|age:gender)``: accepted, zero-sum and compiled."""

from __future__ import annotations

import numpy as np
import pytest

from misterp.mrp.cells import CellCounts, MarketCells, aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig
from misterp.mrp.data import WaveData
from misterp.mrp.model import BINOMIAL_KERNEL, build_model, pymc_model_of, shared_data_model
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec, check_formula
from support import values_at

FORMULA = "p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region) + (1|age:gender)"


def _one_market(formula: str = FORMULA) -> tuple[ModelSpec, MarketCells, CellCounts]:
    """One simulated market's awareness question under ``formula``: spec, layout, counts."""
    wave = simulate_wave(3, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layouts = build_market_cells(data, {})
    spec = ModelSpec("DE", "aware_brand01", "yes", formula)
    return spec, layouts["DE"], aggregate_cells(data, layouts, [spec])[spec.key]


def _sd_priors(priors: PriorConfig) -> dict[str, tuple[str, dict[str, float]]]:
    """Each group term's sd prior under ``priors``: its distribution's name and arguments."""
    model = build_model(*_one_market(), priors)
    terms = model.parameters[model.family.likelihood.parent].group_specific_terms
    return {n: (t.prior.args["sigma"].name, t.prior.args["sigma"].args) for n, t in terms.items()}


def test_interaction_group_term_is_zero_sum_and_compiles() -> None:
    wave = simulate_wave(
        3,
        WaveTruthSpec(
            markets=("DE",),
            brands=("brand01",),
            rare_brand=None,
            interaction_sd={("age", "gender"): 0.5},
        ),
    )
    check_formula(FORMULA, wave.demographics, "model.formula")  # the config's validation
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layouts = build_market_cells(data, {})
    spec = ModelSpec("DE", "aware_brand01", "yes", FORMULA)
    counts = aggregate_cells(data, layouts, [spec])[spec.key]
    priors = PriorConfig(group_effects="zero_sum")
    model = pymc_model_of(build_model(spec, layouts["DE"], counts, priors), priors)

    # 5 ages x 2 genders: one level per pair, the pure interaction by default: (5-1) x (2-1)
    # free values once they sum to zero along age and along gender
    sizes = {name: np.size(v) for name, v in model.initial_point().items()}
    assert sizes["1|age:gender_offset_zerosum__"] == (5 - 1) * (2 - 1)
    assert "1|age:gender_offset" not in sizes
    assert sizes["1|age:gender_sigma_log__"] == 1
    rng = np.random.default_rng(1)
    point = {k: rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    (effect,) = values_at(model, ["1|age:gender"])(point)
    assert effect.shape == (10,)
    assert abs(effect.sum()) < 1e-9
    assert np.abs(effect).max() > 0.1

    # the model nutpie compiles (shared counts, binomial kernel) has a finite logp and gradient
    shared = shared_data_model(build_model(spec, layouts["DE"], counts, priors), priors)
    assert BINOMIAL_KERNEL in {p.name for p in shared.potentials}
    assert "1|age:gender_offset_zerosum__" in {v.name for v in shared.value_vars}
    start = shared.initial_point()
    assert np.isfinite(shared.compile_logp()(start))
    assert np.isfinite(shared.compile_dlogp()(start)).all()


def test_interaction_sigma_tightens_only_the_interaction_terms_sd() -> None:
    def sd_priors(priors: PriorConfig) -> dict[str, tuple[str, float]]:
        """Each group term's sd prior: its distribution and its mean."""
        return {
            name: (sd, args["alpha"] / args["beta"] if sd == "Gamma" else args["sigma"])
            for name, (sd, args) in _sd_priors(priors).items()
        }

    old = PriorConfig(group_sd="half_normal", group_sigma=1.0)
    main = dict.fromkeys(["1|age", "1|education", "1|region"], ("HalfNormal", 1.0))
    default = sd_priors(old)
    assert default.pop("1|age:gender") == ("Gamma", pytest.approx(0.5))  # zero-avoiding, mean 0.5
    assert default == main
    assert sd_priors(old.model_copy(update={"interaction_sigma": None})) == main | {
        "1|age:gender": ("HalfNormal", 1.0)
    }
    tight = sd_priors(old.model_copy(update={"interaction_sigma": 0.3}))
    assert tight.pop("1|age:gender") == ("Gamma", pytest.approx(0.3))
    assert tight == main
    # misterp's defaults: every group sd zero-avoiding with mean 0.5
    gamma = dict.fromkeys(["1|age", "1|education", "1|region"], ("Gamma", pytest.approx(0.5)))
    assert sd_priors(PriorConfig()) == gamma | {"1|age:gender": ("Gamma", pytest.approx(0.5))}


def test_group_sd_gamma_makes_the_main_group_sds_zero_avoiding() -> None:
    for group_sigma in (0.5, 1.0):
        sds = _sd_priors(PriorConfig(group_sd="gamma", group_sigma=group_sigma))
        for term in ("1|age", "1|education", "1|region"):
            name, args = sds[term]
            assert name == "Gamma"  # zero density at sd 0: no funnel for a term with few levels
            assert args["alpha"] == 2.0
            assert args["alpha"] / args["beta"] == pytest.approx(group_sigma)  # mean group_sigma
        # the interaction keeps its own prior
        assert sds["1|age:gender"][0] == "Gamma"
        assert sds["1|age:gender"][1]["beta"] == pytest.approx(4.0)
    old = PriorConfig(group_sd="half_normal", group_sigma=1.0)
    assert _sd_priors(old)["1|age"] == ("HalfNormal", {"sigma": 1.0})


@pytest.mark.parametrize(
    ("formula", "zero_sum", "pure"),
    [
        (FORMULA, "margins", True),
        (FORMULA, "total", False),
        # without age as a main effect the interaction must keep the age effect itself
        ("p(yes, n) ~ 1 + gender + (1|education) + (1|age:gender)", "margins", False),
    ],
)
def test_interaction_zero_sum_margins_makes_the_interaction_pure(
    formula: str, zero_sum: str, pure: bool
) -> None:
    priors = PriorConfig(interaction_zero_sum=zero_sum)  # type: ignore[arg-type]
    model = pymc_model_of(build_model(*_one_market(formula), priors), priors)

    sizes = {name: np.size(v) for name, v in model.initial_point().items()}
    # 5 ages x 2 genders: (5 - 1) x (2 - 1) free values for the pure interaction, else 10 - 1
    assert sizes["1|age:gender_offset_zerosum__"] == (4 if pure else 9)
    rng = np.random.default_rng(7)
    point = {k: rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    (effect,) = values_at(model, ["1|age:gender"])(point)
    table = effect.reshape(5, 2)  # Bambi's order: age-major, gender last
    assert abs(effect.sum()) < 1e-9
    assert np.allclose(table.sum(axis=1), 0.0) == pure  # no age main effect inside
    assert np.allclose(table.sum(axis=0), 0.0) == pure  # no gender main effect inside
    assert np.abs(effect).max() > 0.1
