"""Two-way interactions in the simulated truth: exact, opt-in, and invisible when off."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from misterp.mrp.simulate import (
    SimulatedWave,
    WaveTruthSpec,
    interaction_predictor,
    market_world,
    simulate_wave,
    simulate_waves,
    wave_layout,
)

SEED = 20240611
SMALL = {"markets": ("DE",), "brands": ("brand01", "brand03"), "n_respondents": 300}
PAIR = ("age", "gender")
#: Fingerprints of simulate_wave(SEED, WaveTruthSpec(**SMALL)) and simulate_wave(SEED), taken
#: before interactions existed: the option must leave every earlier wave as it was.
BEFORE = {
    "small": "86ccc1324a489259198bf999574754b10390d0ce82e2bcd0f349f2af14e9019c",
    "default": "0cc3496aefc869009c3703a41749e9717dbfe54346e869cad4dd2efb61cc3c4e",
}


def _fingerprint(wave: SimulatedWave) -> str:
    """Hash of the answers, census, sample cells and truth (floats to 9 decimals)."""
    digest = hashlib.sha256()
    digest.update(wave.answers["selected"].to_numpy(np.int8).tobytes())
    digest.update(wave.poststrat["population"].to_numpy(np.int64).tobytes())
    cells = wave.respondents[list(wave.demographics)].astype(str).agg(",".join, axis=1)
    digest.update("|".join(cells).encode())
    for column, frame in (("p_true", wave.cell_truth), ("true_value", wave.truth)):
        digest.update(" ".join(f"{v:.9f}" for v in frame[column]).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def waves() -> tuple[SimulatedWave, SimulatedWave]:
    off = simulate_wave(SEED, WaveTruthSpec(**SMALL))
    on = simulate_wave(SEED, WaveTruthSpec(**SMALL, interaction_sd={PAIR: 0.5}))
    return off, on


def test_without_interactions_every_number_is_as_before() -> None:
    assert _fingerprint(simulate_wave(SEED, WaveTruthSpec(**SMALL))) == BEFORE["small"]
    empty = WaveTruthSpec(**SMALL, interaction_sd={})
    assert _fingerprint(simulate_wave(SEED, empty)) == BEFORE["small"]
    assert _fingerprint(simulate_wave(SEED)) == BEFORE["default"]


def test_interactions_change_only_the_generating_probabilities(
    waves: tuple[SimulatedWave, SimulatedWave],
) -> None:
    off, on = waves
    # census and panel sample are the same people; their answers and the truth move
    pd.testing.assert_frame_equal(on.poststrat, off.poststrat)
    pd.testing.assert_frame_equal(on.respondents, off.respondents)
    pd.testing.assert_frame_equal(on.questions, off.questions)
    assert not on.answers["selected"].equals(off.answers["selected"])
    assert not np.allclose(on.truth["true_value"], off.truth["true_value"])


def test_cell_logits_differ_by_one_term_per_level_pair(
    waves: tuple[SimulatedWave, SimulatedWave],
) -> None:
    off, on = waves
    keys = ["market", "question_id", "option", *off.demographics]
    both = off.cell_truth.merge(on.cell_truth, on=keys, suffixes=("_off", ""), validate="1:1")
    both["diff"] = logit(both["p_true"]) - logit(both["p_true_off"])
    item = ["question_id", "option"]
    # a per-item constant (the intercept recalibrated to the same population share) plus one
    # value per age x gender pair, the same in every education x region cell of the pair
    per_pair = both.groupby([*item, *PAIR])["diff"]
    assert float((per_pair.max() - per_pair.min()).max()) < 1e-8  # logit(expit(x)) rounding
    terms = per_pair.mean().groupby(item).transform(lambda d: d - d.mean())
    assert terms.groupby(item).size().eq(5 * 2).all()
    # every pair gets its own effect; their sd is ~0.5 (60 draws: within 0.35-0.65)
    assert (terms.groupby(item).nunique() == 10).all()
    assert 0.35 < float(terms.std()) < 0.65


def test_world_logits_are_the_main_effects_plus_the_interaction_term() -> None:
    off_spec = WaveTruthSpec(**SMALL)
    on_spec = WaveTruthSpec(**SMALL, interaction_sd={PAIR: 0.5})
    layout = wave_layout(off_spec)
    off = market_world(np.random.default_rng(SEED), off_spec, layout)
    on = market_world(np.random.default_rng(SEED), on_spec, layout)
    assert off.interaction is None
    assert on.interaction is not None
    np.testing.assert_array_equal(on.population, off.population)
    # what is left after the interaction term is the intercept's recalibration: one constant
    rest = on.logit - off.logit - on.interaction
    assert float(np.ptp(rest, axis=1).max()) < 1e-12


def test_interaction_term_is_one_normal_draw_per_level_pair() -> None:
    spec = WaveTruthSpec(**SMALL, interaction_sd={PAIR: 0.5, ("region", "education"): 0.2})
    grid = wave_layout(spec).grid
    term = interaction_predictor(np.random.default_rng(7), spec, grid, 3)
    rng = np.random.default_rng(7)
    age_gender = rng.normal(0.0, 0.5, size=(3, 5 * 2))
    region_education = rng.normal(0.0, 0.2, size=(3, 5 * 3))
    column = {dim: j for j, dim in enumerate(spec.levels)}
    expected = (
        age_gender[:, grid[:, column["age"]] * 2 + grid[:, column["gender"]]]
        + region_education[:, grid[:, column["region"]] * 3 + grid[:, column["education"]]]
    )
    np.testing.assert_array_equal(term, expected)


def test_series_with_interactions_starts_with_the_single_wave() -> None:
    spec = WaveTruthSpec(**SMALL, interaction_sd={PAIR: 0.5})
    series = simulate_waves(SEED, spec, ("w1", "w2"))
    assert _fingerprint(series.waves["w1"]) == _fingerprint(simulate_wave(SEED, spec))
    pd.testing.assert_frame_equal(series.waves["w2"].truth, series.waves["w1"].truth)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({("age", "age"): 0.5}, "two different demographics"),
        ({("age", "income"): 0.5}, "two different demographics"),
        ({("age", "gender"): 0.5, ("gender", "age"): 0.3}, "twice"),
        ({("age", "gender"): -0.1}, ">= 0"),
    ],
)
def test_unusable_interactions_are_refused(
    pairs: dict[tuple[str, str], float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WaveTruthSpec(**SMALL, interaction_sd=pairs)
