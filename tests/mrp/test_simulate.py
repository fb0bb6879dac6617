"""Synthetic wave generator: its truth must be exact, or recovery tests mean nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from misterp.mrp.simulate import (
    DEFAULT_TARGET_GROUPS,
    SimulatedWave,
    WaveTruthSpec,
    compute_truth,
    simulate_wave,
)

SEED = 20240611
FRAMES = ("respondents", "answers", "poststrat", "questions", "truth", "cell_truth")


@pytest.fixture(scope="module")
def wave() -> SimulatedWave:
    return simulate_wave(SEED)


def _truth(wave: SimulatedWave, market: str, question_id: str, option: str, group: str) -> float:
    t = wave.truth
    row = t[
        (t["market"] == market)
        & (t["question_id"] == question_id)
        & (t["option"] == option)
        & (t["target_group"] == group)
    ]
    assert len(row) == 1
    return float(row["true_value"].iloc[0])


def _cells(wave: SimulatedWave, market: str, question_id: str, option: str) -> pd.DataFrame:
    """Cell probabilities of one item joined to the census, in poststrat cell order."""
    keys = ["market", *wave.demographics]
    ct = wave.cell_truth
    sel = ct[
        (ct["market"] == market) & (ct["question_id"] == question_id) & (ct["option"] == option)
    ]
    ps = wave.poststrat[wave.poststrat["market"] == market]
    return ps.merge(sel, on=keys, how="left", validate="one_to_one")


def _in_group(frame: pd.DataFrame, group: str) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for dim, levels in ({} if group == "all" else DEFAULT_TARGET_GROUPS[group]).items():
        mask &= frame[dim].isin(levels)
    return mask


def test_deterministic_for_a_seed(wave: SimulatedWave) -> None:
    again = simulate_wave(SEED)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(wave, name), getattr(again, name))
    other = simulate_wave(SEED + 1)
    assert not wave.answers["selected"].equals(other.answers["selected"])
    assert not np.allclose(wave.truth["true_value"], other.truth["true_value"])


def test_truth_does_not_depend_on_sample_size(wave: SimulatedWave) -> None:
    small = simulate_wave(SEED, WaveTruthSpec(n_respondents=200))
    pd.testing.assert_frame_equal(small.truth, wave.truth)
    pd.testing.assert_frame_equal(small.poststrat, wave.poststrat)
    assert len(small.respondents) == 2 * 200


def test_shapes_and_layout(wave: SimulatedWave) -> None:
    spec = wave.spec
    resp = wave.respondents
    assert resp["respondent_id"].is_unique
    assert resp.groupby("market").size().to_dict() == {"DE": 1500, "FR": 1500}
    assert resp["respondent_id"].str.fullmatch(r"(DE|FR)-\d{6}").all()
    assert list(resp.columns) == ["respondent_id", "market", *wave.demographics]
    assert wave.demographics == ("gender", "age", "education", "region")

    ps = wave.poststrat
    n_cells = 2 * 5 * 3 * 5
    assert ps.groupby("market").size().to_dict() == {"DE": n_cells, "FR": n_cells}
    assert not ps.duplicated(["market", *wave.demographics]).any()
    assert (ps["population"] > 0).all()
    assert ps["population"].dtype.kind == "i"
    assert (ps.groupby("market")["population"].sum() > 1_000_000).all()

    assert set(wave.answers["selected"].unique()) <= {0, 1}
    assert not wave.answers.duplicated(["respondent_id", "question_id", "option"]).any()
    q = wave.questions.set_index(["market", "question_id"])
    assert q.loc[("DE", "assoc_brand02"), "base"] == "aware_brand02=yes"
    assert q.loc[("DE", "assoc_brand02"), "kind"] == "multi"
    assert pd.isna(q.loc[("FR", "aware_brand01"), "base"])
    assert len(wave.questions) == 2 * 3 * len(spec.brands)

    n_items = len(spec.brands) * (2 + len(spec.association_options))
    assert len(wave.truth) == 2 * n_items * (1 + len(DEFAULT_TARGET_GROUPS))
    assert wave.truth["true_value"].between(0, 1).all()
    assert len(wave.cell_truth) == 2 * n_items * n_cells


def test_rare_brand_is_rare(wave: SimulatedWave) -> None:
    for market in wave.spec.markets:
        assert _truth(wave, market, "aware_brand03", "yes", "all") == pytest.approx(0.07, abs=1e-6)
    aware = wave.answers[(wave.answers["question_id"] == "aware_brand03")]
    assert 0.02 < aware["selected"].mean() < 0.15


def test_consideration_and_association_asked_only_to_the_aware(wave: SimulatedWave) -> None:
    ans = wave.answers
    options = set(wave.spec.association_options)
    for brand in wave.spec.brands:
        aware = ans[(ans["question_id"] == f"aware_{brand}")]
        assert len(aware) == len(wave.respondents)  # asked to everyone
        aware_ids = set(aware.loc[aware["selected"] == 1, "respondent_id"])
        consider = ans[ans["question_id"] == f"consider_{brand}"]
        assert set(consider["respondent_id"]) == aware_ids
        bases = wave.questions.set_index(["market", "question_id"])["base"]
        assert (bases.xs(f"consider_{brand}", level="question_id") == f"aware_{brand}=yes").all()
        assoc = ans[ans["question_id"] == f"assoc_{brand}"]
        assert set(assoc["respondent_id"]) == aware_ids
        per_resp = assoc.groupby("respondent_id")["option"].agg(set)
        assert (per_resp == options).all()


def test_panel_over_represents_the_young(wave: SimulatedWave) -> None:
    young = ["18-24", "25-34"]
    for market in wave.spec.markets:
        resp = wave.respondents[wave.respondents["market"] == market]
        ps = wave.poststrat[wave.poststrat["market"] == market]
        sample_share = resp["age"].isin(young).mean()
        census_share = ps.loc[ps["age"].isin(young), "population"].sum() / ps["population"].sum()
        assert sample_share > 1.5 * census_share
        high_sample = (resp["education"] == "high").mean()
        high_census = ps.loc[ps["education"] == "high", "population"].sum() / ps["population"].sum()
        assert high_sample > 1.5 * high_census


@pytest.mark.parametrize("group", ["all", "women_18_34"])
def test_truth_without_base_is_population_weighted_mean(wave: SimulatedWave, group: str) -> None:
    cells = _cells(wave, "FR", "aware_brand01", "yes")
    cells = cells[_in_group(cells, group)]
    expected = (cells["population"] * cells["p_true"]).sum() / cells["population"].sum()
    assert _truth(wave, "FR", "aware_brand01", "yes", group) == pytest.approx(expected, 1e-12)


@pytest.mark.parametrize("brand", ["brand01", "brand03"])
def test_truth_with_base_matches_large_population_monte_carlo(
    wave: SimulatedWave, brand: str
) -> None:
    """Simulate 2 million people from the census and take the share among the aware."""
    rng = np.random.default_rng(7)
    market = "DE"
    aware = _cells(wave, market, f"aware_{brand}", "yes")
    counts = rng.multinomial(2_000_000, aware["population"] / aware["population"].sum())
    n_aware = rng.binomial(counts, aware["p_true"].to_numpy())
    rejected_naive = False
    for option in wave.spec.association_options:
        assoc = _cells(wave, market, f"assoc_{brand}", option)
        n_yes = rng.binomial(n_aware, assoc["p_true"].to_numpy())
        for group in ["all", *DEFAULT_TARGET_GROUPS]:
            mask = _in_group(aware, group).to_numpy()
            share = n_yes[mask].sum() / n_aware[mask].sum()
            se = np.sqrt(share * (1 - share) / n_aware[mask].sum())
            truth = _truth(wave, market, f"assoc_{brand}", option, group)
            assert abs(share - truth) < 3 * se, (option, group, share, truth, se)
            pop = aware.loc[mask, "population"]
            naive = (pop * assoc.loc[mask, "p_true"]).sum() / pop.sum()
            rejected_naive |= abs(share - naive) > 5 * se
    # The check has power: ignoring the base (weighting by population only) would fail it.
    assert rejected_naive


def test_answers_follow_cell_probabilities() -> None:
    """Without the panel tilt, raw sample shares per target group estimate the truth."""
    spec = WaveTruthSpec(markets=("DE",), n_respondents=40_000, panel_tilt={})
    big = simulate_wave(SEED, spec)
    ans = big.answers.merge(big.respondents, on="respondent_id", validate="many_to_one")
    items = [("aware_brand02", "yes"), ("consider_brand01", "yes")]
    items += [("assoc_brand01", option) for option in spec.association_options]
    for qid, option in items:
        for group in ["all", *DEFAULT_TARGET_GROUPS]:
            rows = ans[(ans["question_id"] == qid) & (ans["option"] == option)]
            sel = rows.loc[_in_group(rows, group), "selected"]
            truth = _truth(big, "DE", qid, option, group)
            se = np.sqrt(truth * (1 - truth) / len(sel))
            assert abs(sel.mean() - truth) < 4 * se, (qid, option, group, sel.mean(), truth)


def test_compute_truth_accepts_empty_string_base(wave: SimulatedWave) -> None:
    questions = wave.questions.assign(base=wave.questions["base"].fillna(""))
    again = compute_truth(
        wave.cell_truth, wave.poststrat, questions, wave.target_groups, wave.demographics
    )
    pd.testing.assert_frame_equal(again, wave.truth)


def _read_csvs(root: str) -> dict[str, pd.DataFrame]:
    fs, path = fsspec.core.url_to_fs(root)
    out = {}
    for file in fs.ls(path, detail=False):
        with fs.open(file) as handle:
            out[Path(file).stem] = pd.read_csv(handle, keep_default_na=False, na_values=[""])
    return out


def _assert_round_trip(wave: SimulatedWave, read: dict[str, pd.DataFrame]) -> None:
    for name in ("respondents", "answers", "poststrat", "questions"):
        expected = getattr(wave, name)
        pd.testing.assert_frame_equal(read[name], expected, check_dtype=False)


def test_write_round_trip(wave: SimulatedWave, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "wave"
    wave.write(str(target))
    read = _read_csvs(str(target))
    assert set(read) == {"respondents", "answers", "poststrat", "questions"}
    _assert_round_trip(wave, read)

    wave.write(str(target), include_truth=True)
    read = _read_csvs(str(target))
    pd.testing.assert_frame_equal(read["truth"], wave.truth, check_dtype=False)


def test_write_to_fsspec_url(wave: SimulatedWave) -> None:
    url = f"memory://misterp-test-simulate-{SEED}/wave"
    wave.write(url + "/")
    try:
        _assert_round_trip(wave, _read_csvs(url))
    finally:
        fsspec.filesystem("memory").rm(f"/misterp-test-simulate-{SEED}", recursive=True)


def test_config_is_plain_and_matches(wave: SimulatedWave) -> None:
    yaml = pytest.importorskip("yaml")
    cfg = wave.config("data/wave", "results/wave")
    assert cfg == yaml.safe_load(yaml.safe_dump(cfg))
    assert cfg["input"] == "data/wave"
    assert cfg["output"] == "results/wave"
    assert cfg["demographics"] == ["gender", "age", "education", "region"]
    assert cfg["target_groups"] == DEFAULT_TARGET_GROUPS


def test_spec_rejects_unknown_levels() -> None:
    with pytest.raises(ValueError, match="target group"):
        WaveTruthSpec(target_groups={"bad": {"age": ["99+"]}})
    with pytest.raises(ValueError, match="rare_brand"):
        WaveTruthSpec(rare_brand="nope")


def test_smooth_age_effects_change_only_the_age_differences() -> None:
    spec = WaveTruthSpec(markets=("DE",), brands=("brand01",), rare_brand=None)
    plain = simulate_wave(4, spec)
    smooth = simulate_wave(4, dataclasses.replace(spec, smooth_effects=("age",)))

    pd.testing.assert_frame_equal(plain.respondents, smooth.respondents)  # the same panel

    def logit_gaps(wave: SimulatedWave, column: str) -> np.ndarray:
        cells = wave.cell_truth[wave.cell_truth["question_id"] == "aware_brand01"]
        logit = np.log(cells["p_true"] / (1 - cells["p_true"]))
        others = [c for c in ("gender", "age", "education", "region") if c != column]
        table = cells.assign(logit=logit).pivot_table("logit", others, column)
        return np.diff(table.to_numpy(), axis=1)

    # region effects (and every other draw) are unchanged; the age effects are not
    np.testing.assert_allclose(logit_gaps(smooth, "region"), logit_gaps(plain, "region"), atol=1e-6)
    assert not np.allclose(logit_gaps(smooth, "age"), logit_gaps(plain, "age"), atol=1e-3)
    with pytest.raises(ValueError, match="smooth effect 'gender' must be a group-effect"):
        WaveTruthSpec(smooth_effects=("gender",))
