"""The flag rules: exact cases, the rule in changes.parquet, its config, and at wave scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from misterp.config import ConfigError
from misterp.mrp.config import CertaintySettings, FlagRule, FlagSettings, parse_config
from misterp.storage import ResultStore
from misterp.tracking.changes import CHANGE_COLUMNS, compare_draws, wave_changes
from misterp.tracking.flags import (
    certainty_grades,
    fdr_select,
    fit_change_prior,
    flag_comparisons,
    flag_directions,
)
from tracking_support import publish_fake_wave


def test_fdr_select_flags_the_largest_set_whose_mean_error_is_within_q() -> None:
    errors = np.array([0.30, 0.01, 0.02, 0.15, 0.12, np.nan])
    # sorted: .01 .02 .12 .15 .30 -> running means .01 .015 .05 .075 .12
    assert fdr_select(errors, 0.075).tolist() == [False, True, True, True, True, False]
    assert fdr_select(errors, 0.07).tolist() == [False, True, True, False, True, False]
    # each flag's own error is capped at 2q: at q 0.05, 0.12 and 0.15 are out
    assert fdr_select(errors, 0.05).tolist() == [False, True, True, False, False, False]
    assert not fdr_select(np.array([0.2, 0.3]), 0.1).any()


def test_the_per_estimate_rule_is_the_two_sided_rule_it_was() -> None:
    p_up = np.array([0.975, 0.974, 0.02, 0.5])
    flags = flag_directions(p_up, 1 - p_up, FlagSettings(rule=FlagRule.PER_ESTIMATE))
    assert flags.direction.tolist() == [1, 0, -1, 0]


def _wave_of_changes(
    rng: np.random.Generator, n: int, changed: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Changes of ``n`` estimates measured with sd 2-6 points; ``changed`` move by 10 points."""
    sd = rng.choice([0.02, 0.035, 0.06], n)
    truth = np.where(rng.random(n) < changed, rng.choice([-0.10, 0.10], n), 0.0)
    return truth, truth + rng.normal(0.0, sd), sd


def test_with_no_change_the_fdr_rule_flags_nothing_where_per_estimate_flags_5_percent() -> None:
    rng = np.random.default_rng(24)
    _, mean, sd = _wave_of_changes(rng, 2000, 0.0)
    p_up = 1 - norm.cdf(0, mean, sd)
    fdr = flag_comparisons(mean, sd, p_up, 1 - p_up, FlagSettings(q=0.10))
    per_estimate = flag_comparisons(
        mean, sd, p_up, 1 - p_up, FlagSettings(rule=FlagRule.PER_ESTIMATE)
    )
    assert (fdr.direction != 0).sum() <= 2
    # two-sided 95%: about 5% of 2,000 (100), well above anything the fdr rule lets through
    assert 60 <= (per_estimate.direction != 0).sum() <= 140
    # the flat-prior probabilities themselves, fed to the fdr selection, would flag ~40%
    naive = flag_directions(p_up, 1 - p_up, FlagSettings(q=0.10))
    assert (naive.direction != 0).mean() > 0.3


def test_with_10_percent_changed_the_fdr_rule_flags_them_within_q() -> None:
    rng = np.random.default_rng(7)
    truth, mean, sd = _wave_of_changes(rng, 4000, 0.10)
    prior = fit_change_prior(mean, sd)
    assert prior.null_share < 0.9  # it learnt that something changed
    flags = flag_comparisons(mean, sd, mean, mean, FlagSettings(q=0.10)).direction
    wrong = (flags != 0) & (np.sign(truth) != flags)
    # Changes of exactly +-10 points are a truth the learnt prior's zero-centred normals fit
    # poorly, and the realised false-discovery proportion may overshoot q here; on the
    # bench's 3/5/10-point design it is 0.05 at q 0.10: mostly right at least.
    assert 0 < wrong.sum() / (flags != 0).sum() <= 2 * 0.10
    # most 10-point changes measured with sd 2 points are found
    assert (flags[(truth != 0) & (sd == 0.02)] != 0).mean() > 0.8


def test_min_change_flags_only_changes_probably_beyond_it() -> None:
    rng = np.random.default_rng(3)
    # 300 estimates moved 3 points, measured with sd 0.5 points: certainly up, not by 5
    mean = 0.03 + rng.normal(0, 0.005, 300)
    mean = np.concatenate([mean, rng.normal(0, 0.005, 3000)])
    sd = np.full(mean.size, 0.005)
    any_change = flag_comparisons(mean, sd, mean, mean, FlagSettings())
    beyond_5 = flag_comparisons(mean, sd, mean, mean, FlagSettings(min_change=0.05))
    assert (any_change.direction[:300] == 1).mean() > 0.95
    assert not beyond_5.direction.any()
    assert (beyond_5.error[:300] > 0.5).all()


@pytest.mark.parametrize(
    ("flags", "key", "words"),
    [
        ({"q": 0}, "tracking.flags.q", "q is 0, but"),
        ({"q": 1}, "tracking.flags.q", "strictly between 0 and 1"),
        ({"min_change": -0.02}, "tracking.flags.min_change", "min_change is -0.02, but"),
        ({"rule": "bonferroni"}, "tracking.flags.rule", "'fdr' or 'per_estimate'"),
    ],
)
def test_a_bad_flag_setting_is_a_config_error_naming_key_value_and_fix(
    flags: dict[str, object], key: str, words: str
) -> None:
    raw = {"input": "in", "output": "out", "demographics": ["age"], "tracking": {"flags": flags}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert f"{key}: " in str(caught.value)
    assert words in str(caught.value)


def test_certainty_thresholds_must_be_in_order() -> None:
    raw = {
        "input": "in",
        "output": "out",
        "demographics": ["age"],
        "reporting": {"certainty": {"solid": 0.12, "indicative": 0.10}},
    }
    with pytest.raises(ConfigError, match=r"certainty.solid \(0.12\) is above"):
        parse_config(raw)
    grades = certainty_grades(np.array([0.05, 0.050001, 0.1, 0.11]), CertaintySettings())
    assert grades.tolist() == ["solid", "indicative", "indicative", "too_uncertain"]


def _publish_pair(store: ResultStore, tracking: dict[str, object]) -> None:
    """Two waves of 60 models, one group each: model 0 up by 20 points, the rest unchanged."""
    rng = np.random.default_rng(11)
    keys = [f"DE/aware_b{i:02d}/yes" for i in range(60)]
    for wave, shift in (("2026-10", 0.0), ("2026-11", 0.20)):
        draws = {
            key: {"all": 0.4 + (shift if i == 0 else 0.0) + rng.normal(0, 0.02, 400)}
            for i, key in enumerate(keys)
        }
        publish_fake_wave(store, wave, draws, target_groups={}, tracking=tracking)


@pytest.mark.parametrize(
    ("tracking", "rule"),
    [
        ({}, "fdr q=0.1"),
        ({"flags": {"q": 0.05, "min_change": 0.02}}, "fdr q=0.05 min_change=0.02"),
        ({"flags": {"rule": "per_estimate"}}, "per_estimate p=0.95"),
    ],
)
def test_changes_parquet_names_the_rule_in_force_and_flags_under_it(
    tmp_path: Path, tracking: dict[str, object], rule: str
) -> None:
    store = ResultStore(str(tmp_path))
    _publish_pair(store, tracking)
    changes = wave_changes(store, "2026-11")
    assert list(changes.columns) == list(CHANGE_COLUMNS)
    assert set(changes["rule"]) == {rule}
    flagged = changes.set_index("question_id")["flag"]
    assert flagged["aware_b00"] == "up"
    assert changes["p_error"].between(0, 1).all()
    if rule.startswith("fdr"):
        # 59 unchanged estimates: the wave-wise rule gives none of them an arrow
        assert (flagged.drop("aware_b00") == "steady").all()


def test_compare_draws_reads_the_probability_beyond_min_change() -> None:
    # differences 0.01 .. 0.04: all up, half of them beyond 2.5 points
    current = np.array([0.51, 0.52, 0.53, 0.54])
    s = compare_draws(current, np.full(4, 0.5), min_change=0.025)
    assert (s.p_up, s.p_up_beyond, s.p_down_beyond) == (1.0, 0.5, 0.0)


@pytest.mark.slow
def test_at_wave_scale_fdr_keeps_false_flags_rare_and_the_fdp_within_q() -> None:
    """Issue 24's accuracy figures (a) and (b), small: bench/flag_rules.py has the full run.

    Changes of 1,000 estimates (200 models x 5 groups, 100-1,000 respondents) from conjugate
    posteriors of simulated samples with known truth, compared and flagged as
    ``changes.parquet`` is.
    """
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from flag_rules import RULES, false_flags, flags_of, simulate_wave

    rules = {rule.name: rule for rule in RULES}
    fdr, per_estimate = rules["fdr 0.10"], rules["per_estimate 95%"]
    null_any, null_false, per_estimate_false, fdps = 0, 0, 0, []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        quiet = simulate_wave(rng, 200, 0.0, 400)
        wrong = false_flags(quiet, flags_of(quiet, fdr), fdr)
        null_any += wrong.any()
        null_false += wrong.sum()
        per_estimate_false += false_flags(quiet, flags_of(quiet, per_estimate), per_estimate).sum()
        mixed = simulate_wave(rng, 200, 0.05, 400)
        direction = flags_of(mixed, fdr)
        flags = (direction != 0).sum()
        fdps.append(false_flags(mixed, direction, fdr).sum() / flags if flags else 0.0)
    # (a) no change: at most one false flag in four waves, against ~50 a wave per estimate
    assert null_any <= 1
    assert null_false <= 2
    assert per_estimate_false / 4 > 30
    # (b) 5% changed: the realised false-discovery proportion, averaged, within q
    assert fdr.settings is not None
    mean, se = float(np.mean(fdps)), float(np.std(fdps, ddof=1) / np.sqrt(len(fdps)))
    print(f"fdr 0.10: realised FDP {fdps} mean {mean:.3f} (se {se:.3f})")
    # consistent with q (the full bench: 0.051, sd 0.037 over 20 seeds at 5,000 comparisons)
    assert mean - 2 * se <= fdr.settings.q
    assert mean <= 1.5 * fdr.settings.q
