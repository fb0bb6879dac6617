"""Random-walk priors across ordered levels (``priors.random_walk``): exact, no sampling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from misterp.config import ConfigError
from misterp.mrp.cells import CellCounts, MarketCells, aggregate_cells, build_market_cells
from misterp.mrp.config import PriorConfig, parse_config
from misterp.mrp.data import WaveData
from misterp.mrp.model import build_model, pymc_model_of, shared_data_model
from misterp.mrp.ordered import random_walk_matrix
from misterp.mrp.prepare import check_random_walk_levels
from misterp.mrp.simulate import DEFAULT_LEVELS, WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec
from support import values_at

FORMULA = "p(yes, n) ~ 1 + gender + (1|age) + (1|region)"
AGES = DEFAULT_LEVELS["age"]
#: The simulator's census order of the regions, which is not their sorted order.
REGIONS = DEFAULT_LEVELS["region"]


def _small_model() -> tuple[ModelSpec, MarketCells, CellCounts]:
    wave = simulate_wave(3, WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None))
    data = WaveData(
        wave.respondents, wave.answers, wave.poststrat, wave.questions, wave.demographics
    )
    layout = build_market_cells(data, {})["DE"]
    spec = ModelSpec("DE", "aware_brand01", "yes", FORMULA)
    return spec, layout, aggregate_cells(data, {"DE": layout}, [spec])[spec.key]


def _random_point(model: Any, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}


def _unit_step(levels: tuple[str, ...]) -> float:
    """How far one N(0, 1) step moves a level from its neighbour, per unit of the group sd."""
    matrix = random_walk_matrix(levels, levels)
    return float(matrix[1, 0] - matrix[0, 0])


def _flat_gradient(model: Any, point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rvs = model.free_RVs
    flat = model.compile_dlogp(vars=rvs)(point)
    names = [model.rvs_to_values[rv].name for rv in rvs]
    sizes = [np.size(point[name]) for name in names]
    return dict(zip(names, np.split(flat, np.cumsum(sizes)[:-1]), strict=True))


def test_the_walk_matrix_makes_unit_steps_between_declared_neighbours() -> None:
    matrix = random_walk_matrix(REGIONS, sorted(REGIONS))
    rows = matrix[[sorted(REGIONS).index(level) for level in REGIONS]]  # back to walk order
    scale = rows[1, 0] - rows[0, 0]
    np.testing.assert_allclose(np.diff(rows, axis=0), scale * np.eye(4), atol=1e-12)
    np.testing.assert_allclose(matrix.sum(axis=0), 0.0, atol=1e-12)  # levels sum to zero
    # scaled so the levels' prior variances have geometric mean 1, like an exchangeable term's
    assert np.exp(np.mean(np.log(np.sum(matrix**2, axis=1)))) == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match="are not the model's levels"):
        random_walk_matrix(["north", "east"], sorted(REGIONS))


def test_walked_levels_follow_the_declared_order_with_one_free_value_fewer() -> None:
    spec, layout, counts = _small_model()
    priors = PriorConfig(random_walk={"region": REGIONS})
    model = pymc_model_of(build_model(spec, layout, counts, priors), priors)

    sizes = {name: np.size(v) for name, v in model.initial_point().items()}
    assert sizes["1|region_steps"] == len(REGIONS) - 1
    assert not any(name.startswith("1|region_offset") for name in sizes)
    assert sizes["1|age_offset_zerosum__"] == len(AGES) - 1  # the other term stays zero-sum
    point = _random_point(model, 1)
    effect, sigma = values_at(model, ["1|region", "1|region_sigma"])(point)
    stored = [str(level) for level in model.coords["region__factor_dim"]]
    assert stored == sorted(REGIONS) != list(REGIONS)  # Bambi's order is not the walk's
    walked = effect[[stored.index(level) for level in REGIONS]]
    scale = _unit_step(REGIONS)
    # adjacent levels in the declared order differ by one step of sd scale x sigma
    np.testing.assert_allclose(np.diff(walked), scale * sigma * point["1|region_steps"], rtol=1e-12)
    assert abs(effect.sum()) < 1e-12  # the Intercept stays the grand mean


def test_the_walk_is_the_exchangeable_model_with_offsets_replaced_by_the_walk() -> None:
    # Reference: the unrewritten (independent-levels) kernel model at offset = M z, its N(0, 1)
    # offset prior swapped for the steps' one. logp and gradient must agree to rounding.
    spec, layout, counts = _small_model()
    walk = PriorConfig(group_effects="normal", random_walk={"age": AGES})
    plain = PriorConfig(group_effects="normal")
    model = shared_data_model(build_model(spec, layout, counts, walk), walk)
    reference = shared_data_model(build_model(spec, layout, counts, plain), plain)
    levels = [str(level) for level in reference.coords["age__factor_dim"]]
    matrix = random_walk_matrix(AGES, levels)
    logp, logp_reference = model.compile_logp(), reference.compile_logp()

    for seed in range(5):
        point = _random_point(model, seed)
        steps = point.pop("1|age_steps")
        offset = matrix @ steps
        at = {**point, "1|age_offset": offset}
        swap = norm.logpdf(steps).sum() - norm.logpdf(offset).sum()
        np.testing.assert_allclose(
            logp({**point, "1|age_steps": steps}), logp_reference(at) + swap, rtol=1e-12
        )
        actual = _flat_gradient(model, {**point, "1|age_steps": steps})
        expected = _flat_gradient(reference, at)
        expected["1|age_steps"] = matrix.T @ (expected.pop("1|age_offset") + offset) - steps
        assert actual.keys() == expected.keys()
        for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("unseen", "variance_in_steps"),
    [("35-44", 0.5), ("55+", 1.0)],
    ids=["between-two-levels", "at-the-end"],
)
def test_a_level_without_respondents_is_interpolated_by_the_walk(
    unseen: str, variance_in_steps: float
) -> None:
    # With no respondents in one age band, the data fix every other band's predictor; moving
    # the unseen band alone (two adjacent steps traded, Intercept compensating the centring)
    # changes only the steps' prior. Its conditional is then exactly Gaussian: between two
    # bands, mean = the neighbours' midpoint, var = step sd^2 / 2; at an end, mean = its one
    # neighbour, var = step sd^2. A flat Intercept prior removes the only other term.
    spec, layout, counts = _small_model()
    empty = (layout.frame["age"] == unseen).to_numpy()
    counts = CellCounts(yes=np.where(empty, 0, counts.yes), n=np.where(empty, 0, counts.n))
    priors = PriorConfig(intercept_sigma=1e8, random_walk={"age": AGES})
    model = shared_data_model(build_model(spec, layout, counts, priors), priors)
    logp = model.compile_logp()
    effects = values_at(model, ["1|age", "1|age_sigma"])
    stored = [str(level) for level in model.coords["age__factor_dim"]]
    walk_order = [stored.index(level) for level in AGES]
    k = AGES.index(unseen)
    direction = np.zeros(len(AGES) - 1)
    direction[k - 1] = 1.0  # the step into the unseen band
    if k < len(AGES) - 1:
        direction[k] = -1.0  # and the step out of it
    start = _random_point(model, 7)

    def moved(t: float) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
        point = {**start, "1|age_steps": start["1|age_steps"] + t * direction}
        effect, sigma = effects(point)
        shift = np.delete(effect - effects(start)[0], stored.index(unseen))
        np.testing.assert_allclose(shift, shift[0], atol=1e-12)  # the others move together
        point["Intercept"] = start["Intercept"] - shift[0]  # ... and the Intercept undoes it
        eta = point["Intercept"] + effect[walk_order]
        return point, eta, float(sigma)

    f = {t: logp(moved(t)[0]) for t in (-1.0, 0.0, 1.0)}
    curvature = f[1.0] - 2 * f[0.0] + f[-1.0]  # exact: logp is quadratic along the path
    t_best = -(f[1.0] - f[-1.0]) / (2 * curvature)
    _, eta, sigma = moved(t_best)
    _, eta_one, _ = moved(t_best + 1.0)
    step_sd = _unit_step(AGES) * sigma
    per_t = eta_one[k] - eta[k]  # the unseen band's predictor per unit along the path

    assert per_t == pytest.approx(step_sd, rel=1e-9)
    neighbours = eta[[k - 1, k + 1]] if k < len(AGES) - 1 else eta[[k - 1]]
    assert eta[k] == pytest.approx(neighbours.mean(), abs=1e-6)
    assert per_t**2 / -curvature == pytest.approx(variance_in_steps * step_sd**2, rel=1e-6)


def test_a_declared_order_that_misses_a_census_level_is_rejected_with_the_fix() -> None:
    _, layout, _ = _small_model()
    config = parse_config(
        {
            "input": "i",
            "output": "o",
            "demographics": list(DEFAULT_LEVELS),
            "model": {"priors": {"random_walk": {"age": ["18-24", "25-34", "35-44", "45+"]}}},
        }
    )
    with pytest.raises(
        ConfigError,
        match=r"random_walk\.age: market DE .* missing 45-54, 55\+; not in the data 45\+; list "
        "every level of the census once, in order",
    ):
        check_random_walk_levels(config, {"DE": layout})
