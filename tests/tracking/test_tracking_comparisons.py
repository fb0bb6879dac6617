"""Group vs rest and brand vs brand: exact draw-wise cases, then a published wave."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from misterp.mrp.config import FlagSettings, TrackingConfig, parse_config
from misterp.mrp.poststratify import poststratify, rest_masks
from misterp.mrp.specs import ModelSpec
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from misterp.tracking.comparisons import COMPARISON_COLUMNS, COMPARISONS_FILE, comparison_table
from support import PLUMBING, WAVE, no_mcmc_backends, small_wave_config

F = "p(yes, n) ~ 1"


def test_the_rest_is_poststratified_from_the_same_cell_draws_and_weights() -> None:
    # three cells of 1, 1 and 2 people; the group is the first cell
    cells = np.array([[0.8, 0.2, 0.4], [0.6, 0.4, 0.1]])
    masks = {"all": np.array([True, True, True]), "g": np.array([True, False, False])}
    base = np.array([[1.0, 0.5, 0.5], [1.0, 1.0, 0.0]])
    population = np.array([1.0, 1.0, 2.0])
    group = poststratify(cells, population, masks, base)["g"]
    rest = poststratify(cells, population, rest_masks(masks), base)["g"]
    # draw 0: rest weights 1 x .5 and 2 x .5 -> (.1 + .4) / 1.5; draw 1: only cell 2 -> .4
    np.testing.assert_allclose(group - rest, [0.8 - 0.5 / 1.5, 0.6 - 0.4])
    assert "all" not in rest_masks(masks)  # the whole population has no rest


def test_groups_vs_rest_and_brand_pairs_are_flagged_each_as_their_own_set() -> None:
    rng = np.random.default_rng(5)
    specs = [ModelSpec("DE", f"aware_b{i}", "yes", F, f"b{i}") for i in range(40)]
    # b0 far above every other brand; all other brands alike
    centres = 0.3 + rng.normal(0, 0.01, 40)  # alike brands, each estimated with sd 1 point
    draws = {
        s.key: {"all": (0.6 if i == 0 else centres[i]) + rng.normal(0, 0.01, 500)}
        for i, s in enumerate(specs)
    }
    # group 'young' is 10 points above its rest for b0 only
    rest = {
        s.key: {"young": (0.1 if i == 0 else 0.0) + rng.normal(0, 0.02, 500)}
        for i, s in enumerate(specs)
    }
    table = comparison_table("2026-11", specs, draws, rest, tracking=TrackingConfig())
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    versus_rest = table[table["kind"] == "group_vs_rest"].set_index("question_id")
    assert len(versus_rest) == 40
    assert versus_rest.loc["aware_b0", "flag"] == "above"
    assert (versus_rest.drop("aware_b0")["flag"] == "level").all()
    pairs = table[table["kind"] == "brand_vs_brand"]
    assert len(pairs) == 40 * 39 // 2  # every pair once
    first = pairs[pairs["brand"] == "b0"]
    assert (first["flag"] == "above").all()
    assert (first["p_above"] == 1.0).all()
    assert set(table["rule"]) == {"fdr q=0.1"}
    # the 741 pairs of alike brands: per estimate about 5% get an arrow (~37); under fdr the
    # false arrows stay a small share of all arrows (q = 0.10)
    alike = pairs[pairs["brand"] != "b0"]
    false_arrows = (alike["flag"] != "level").sum()
    assert false_arrows / (pairs["flag"] != "level").sum() <= 0.10
    per_estimate = comparison_table(
        "2026-11",
        specs,
        draws,
        rest,
        tracking=TrackingConfig(flags=FlagSettings(rule="per_estimate")),
    )
    alike_each = per_estimate[
        (per_estimate["kind"] == "brand_vs_brand") & (per_estimate["brand"] != "b0")
    ]
    assert (alike_each["flag"] != "level").sum() >= 4 * false_arrows


def test_a_published_wave_has_its_comparisons_beside_its_estimates(tmp_path: Path) -> None:
    raw = small_wave_config(
        tmp_path, spec={"markets": ("DE",), "brands": ("brand01", "brand02")}, **PLUMBING
    )
    config = parse_config(raw)
    outcome = run_wave_inline(config, backends=no_mcmc_backends())
    store = ResultStore(config.output)
    assert outcome.manifest.files["comparisons"] == COMPARISONS_FILE
    table = store.read_parquet(f"{WAVE}/{COMPARISONS_FILE}")
    groups = set(outcome.estimates["target_group"]) - {"all"}
    models = outcome.estimates.drop_duplicates(["question_id", "option"])
    versus_rest = table[table["kind"] == "group_vs_rest"]
    assert len(versus_rest) == len(models) * len(groups)
    assert set(versus_rest["target_group"]) == groups
    pairs = table[table["kind"] == "brand_vs_brand"]
    assert set(zip(pairs["brand"], pairs["versus"], strict=True)) == {("brand01", "brand02")}
    assert set(pairs["target_group"]) == groups | {"all"}
    assert table["flag"].isin(["above", "below", "level"]).all()
