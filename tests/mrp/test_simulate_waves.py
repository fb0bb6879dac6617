"""Consecutive synthetic waves: their true changes must be exactly the declared ones."""

from __future__ import annotations

import pandas as pd
import pytest

from misterp.mrp.simulate import (
    SimulatedSeries,
    TrueChange,
    WaveTruthSpec,
    simulate_wave,
    simulate_waves,
)

SEED = 20261130
SPEC = WaveTruthSpec(
    markets=("DE", "FR"),
    brands=("brand01", "brand02"),
    rare_brand=None,
    association_options=("innovative", "trustworthy"),
    n_respondents=300,
)
WAVES = ("w1", "w2", "w3")
AWARE_UP = TrueChange("aware_brand02", "yes", "women_18_34", 0.05, "w3")
CONSIDER_DOWN = TrueChange("consider_brand01", "yes", "all", -0.03, "w2", market="FR")
ASSOC_UP = TrueChange("assoc_brand01", "innovative", "men_55_plus", 0.10, "w2")
#: The solver bisects to ~1e-16; the brief's tolerance is half a point.
TOLERANCE = 0.005
KEYS = ["market", "question_id", "option", "target_group"]


@pytest.fixture(scope="module")
def series() -> SimulatedSeries:
    return simulate_waves(SEED, SPEC, WAVES, [AWARE_UP, CONSIDER_DOWN, ASSOC_UP])


def _truth(series: SimulatedSeries, wave: str, change: TrueChange, market: str) -> float:
    t = series.waves[wave].truth
    row = t[
        (t["market"] == market)
        & (t["question_id"] == change.question_id)
        & (t["option"] == change.option)
        & (t["target_group"] == change.target_group)
    ]
    assert len(row) == 1
    return float(row["true_value"].iloc[0])


def test_waves_share_the_census(series: SimulatedSeries) -> None:
    first = series.waves["w1"].poststrat
    for wave in WAVES[1:]:
        pd.testing.assert_frame_equal(series.waves[wave].poststrat, first)


def test_first_wave_is_simulate_wave(series: SimulatedSeries) -> None:
    single = simulate_wave(SEED, SPEC)
    first = series.waves["w1"]
    for name in ("respondents", "answers", "poststrat", "questions", "truth", "cell_truth"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(single, name), obj=name)


@pytest.mark.parametrize(
    ("change", "market"),
    [(AWARE_UP, "DE"), (AWARE_UP, "FR"), (CONSIDER_DOWN, "FR"), (ASSOC_UP, "DE")],
    ids=["aware-DE", "aware-FR", "consider-FR-only", "assoc-within-base"],
)
def test_declared_change_moves_the_group_share_by_delta(
    series: SimulatedSeries, change: TrueChange, market: str
) -> None:
    before = WAVES[WAVES.index(change.from_wave) - 1]
    moved = _truth(series, change.from_wave, change, market) - _truth(
        series, before, change, market
    )
    assert moved == pytest.approx(change.delta, abs=TOLERANCE)


def test_change_persists_in_later_waves(series: SimulatedSeries) -> None:
    assert _truth(series, "w3", ASSOC_UP, "DE") == _truth(series, "w2", ASSOC_UP, "DE")


def test_change_in_one_market_leaves_the_other_unchanged(series: SimulatedSeries) -> None:
    assert _truth(series, "w2", CONSIDER_DOWN, "DE") == _truth(series, "w1", CONSIDER_DOWN, "DE")


def test_undeclared_estimates_are_exactly_unchanged(series: SimulatedSeries) -> None:
    # Only the changed questions, and the consideration and association questions asked
    # within a changed awareness base, may move; everything else must be bitwise equal.
    touched = {
        "aware_brand02",
        "assoc_brand02",
        "consider_brand02",
        "consider_brand01",
        "assoc_brand01",
    }
    table = series.true_changes
    untouched = table[~table["question_id"].isin(touched)]
    assert len(untouched) > 0
    assert (untouched["true_change"] == 0.0).all()
    ct = {w: s.cell_truth for w, s in series.waves.items()}
    same = ~ct["w1"]["question_id"].isin(touched)
    for wave in WAVES[1:]:
        pd.testing.assert_series_equal(ct[wave].loc[same, "p_true"], ct["w1"].loc[same, "p_true"])


def test_other_option_of_a_changed_question_is_unchanged(series: SimulatedSeries) -> None:
    table = series.true_changes
    other = table[(table["question_id"] == "assoc_brand01") & (table["option"] == "trustworthy")]
    assert (other["true_change"] == 0.0).all()


def test_true_changes_table_marks_declared_rows(series: SimulatedSeries) -> None:
    table = series.true_changes
    declared = table[table["declared"]].set_index(KEYS)["wave"].sort_index()
    expected = pd.Series(
        ["w3", "w3", "w2", "w2", "w2"],
        index=pd.MultiIndex.from_tuples(
            [
                ("DE", "aware_brand02", "yes", "women_18_34"),
                ("FR", "aware_brand02", "yes", "women_18_34"),
                ("FR", "consider_brand01", "yes", "all"),
                ("DE", "assoc_brand01", "innovative", "men_55_plus"),
                ("FR", "assoc_brand01", "innovative", "men_55_plus"),
            ],
            names=KEYS,
        ),
        name="wave",
    ).sort_index()
    pd.testing.assert_series_equal(declared, expected)
    pd.testing.assert_series_equal(
        table["true_change"], table["value"] - table["reference_value"], check_names=False
    )
    assert set(zip(table["reference_wave"], table["wave"], strict=True)) == {
        ("w1", "w2"),
        ("w2", "w3"),
    }


def test_a_group_change_moves_all_but_not_a_disjoint_group(series: SimulatedSeries) -> None:
    table = series.true_changes.set_index([*KEYS, "wave"])["true_change"]
    assert table["DE", "aware_brand02", "yes", "all", "w3"] > 0
    # men_55_plus shares no cell with women_18_34.
    assert table["DE", "aware_brand02", "yes", "men_55_plus", "w3"] == 0.0


def test_panels_differ_across_waves(series: SimulatedSeries) -> None:
    first, second = series.waves["w1"], series.waves["w2"]
    demos = list(SPEC.demographics)
    assert not first.respondents[demos].equals(second.respondents[demos])
    assert len(second.respondents) == len(SPEC.markets) * SPEC.n_respondents
    # Wave 3 draws its own panel too, not wave 2's again.
    assert not second.respondents[demos].equals(series.waves["w3"].respondents[demos])


def test_deterministic_for_a_seed(series: SimulatedSeries) -> None:
    again = simulate_waves(SEED, SPEC, WAVES, series.changes)
    for wave in WAVES:
        pd.testing.assert_frame_equal(again.waves[wave].answers, series.waves[wave].answers)


def test_unusable_changes_are_all_reported() -> None:
    bad = [
        TrueChange("aware_brand09", "yes", "all", 0.05, "w2"),
        TrueChange("aware_brand01", "yes", "teens", 0.05, "w1"),
    ]
    with pytest.raises(ValueError, match="unusable true changes") as info:
        simulate_waves(SEED, SPEC, WAVES, bad)
    message = str(info.value)
    assert "no such question/option" in message
    assert "target group not one of" in message
    assert "must be a wave after the first" in message


def test_change_out_of_range_says_how_to_fix() -> None:
    with pytest.raises(ValueError, match="choose a smaller delta"):
        simulate_waves(SEED, SPEC, WAVES, [TrueChange("aware_brand01", "yes", "all", 0.99, "w2")])


def test_duplicate_wave_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct labels"):
        simulate_waves(SEED, SPEC, ["w1", "w1"])
