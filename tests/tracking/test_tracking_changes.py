"""Changes between waves: the draw-wise core on exact draws, then whole waves in a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mrp.config import PriorConfig
from misterp.status import FitStatus
from misterp.storage import ResultStore
from misterp.tracking.changes import (
    CHANGE_COLUMNS,
    ChangeFlag,
    ReferenceWaveError,
    compare_draws,
    wave_changes,
)
from tracking_support import GROUPS, publish_fake_wave

KEY = "DE/aware_b1/yes"


def test_compare_draws_pairs_draws_and_summarises_the_difference() -> None:
    current = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    reference = np.array([0.25, 0.25, 0.25, 0.25, 0.75])  # differences .25 x4, -.25 x1
    s = compare_draws(current, reference, interval=0.5)
    assert (s.mean, s.p_up, s.p_down) == (0.15, 0.8, 0.2)
    # quantiles .25 and .75 of [-.25, .25, .25, .25, .25] (linear interpolation)
    assert (s.lower, s.upper) == (0.25, 0.25)
    assert s.flag is ChangeFlag.STEADY


def test_a_draw_of_no_change_counts_neither_up_nor_down() -> None:
    s = compare_draws(np.array([0.5, 0.5, 0.75, 0.25]), np.array([0.5, 0.5, 0.5, 0.5]))
    assert (s.p_up, s.p_down) == (0.25, 0.25)


@pytest.mark.parametrize(
    ("probability", "ups", "flag"),
    [
        (0.95, 975, ChangeFlag.UP),
        (0.95, 974, ChangeFlag.STEADY),
        (0.95, 25, ChangeFlag.DOWN),
        (0.95, 26, ChangeFlag.STEADY),
        (0.90, 950, ChangeFlag.UP),
        (0.90, 949, ChangeFlag.STEADY),
    ],
)
def test_the_flag_is_two_sided_and_turns_at_its_threshold_inclusive(
    probability: float, ups: int, flag: ChangeFlag
) -> None:
    # 1,000 draws: `ups` differences of +1/4, the rest -1/4, so P(up) = ups / 1000 exactly;
    # at 0.95 the central 95% interval excludes 0 from P(up) = 0.975 on
    current = np.where(np.arange(1000) < ups, 0.75, 0.25)
    s = compare_draws(current, np.full(1000, 0.5), probability=probability)
    assert s.p_up == ups / 1000
    assert s.flag is flag


def test_compare_draws_refuses_unpaired_or_non_finite_draws() -> None:
    with pytest.raises(ValueError, match="paired"):
        compare_draws(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        compare_draws(np.array([np.nan, 0.5]), np.zeros(2))
    with pytest.raises(ValueError, match="probability"):
        compare_draws(np.zeros(2), np.zeros(2), probability=0.5)


def _draws(value: float, n: int = 40) -> np.ndarray:
    return np.full(n, value)


def _two_models(all_value: float, women_value: float) -> dict[str, dict[str, np.ndarray]]:
    return {KEY: {"all": _draws(all_value), "women": _draws(women_value)}}


def _row(frame: pd.DataFrame, reference: str, group: str = "all") -> pd.Series:
    rows = frame[(frame["reference"] == reference) & (frame["target_group"] == group)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_a_wave_is_compared_with_the_previous_complete_wave(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-09", _two_models(0.25, 0.5))
    publish_fake_wave(store, "2026-10", _two_models(0.75, 0.75), complete=False)  # running
    publish_fake_wave(store, "2026-11", _two_models(0.5, 0.5))

    changes = wave_changes(store, "2026-11")

    assert list(changes.columns) == list(CHANGE_COLUMNS)
    assert set(changes["reference"]) == {"previous"}  # no year-ago wave, too few for rolling
    row = _row(changes, "previous")
    assert row["reference_waves"] == "2026-09"  # the incomplete 2026-10 is skipped
    assert (row["mean"], row["p_up"], row["flag"], row["comparable"]) == (0.25, 1.0, "up", True)
    assert _row(changes, "previous", "women")["flag"] == "steady"


def test_year_ago_and_rolling_references_when_their_waves_exist(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    waves = ["2025-11", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    values = [0.0625, 0.125, 0.125, 0.125, 0.25, 0.25, 0.5]
    for wave, value in zip(waves, values, strict=True):
        publish_fake_wave(store, wave, _two_models(value, value))

    changes = wave_changes(store, "2026-11")

    assert _row(changes, "year_ago")["mean"] == 0.5 - 0.0625
    rolling = _row(changes, "rolling")
    # mean of 2026-09..11 (1/4, 1/4, 1/2) minus mean of 2026-06..08 (1/8 each)
    assert rolling["mean"] == pytest.approx(1 / 3 - 1 / 8)
    assert rolling["reference_waves"] == "2026-08,2026-07,2026-06"


def test_a_changed_target_group_definition_is_noted_not_flagged(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _two_models(0.25, 0.25))
    redefined = {"women": {"gender": ["female"], "age": ["18-34"]}}
    publish_fake_wave(store, "2026-11", _two_models(0.5, 0.5), target_groups=redefined)

    changes = wave_changes(store, "2026-11")

    women = _row(changes, "previous", "women")
    assert not women["comparable"]
    assert pd.isna(women["flag"])
    assert "target group 'women' definition changed since 2026-10" in women["note"]
    assert women["mean"] == 0.25  # the numbers are kept for whoever wants them
    assert _row(changes, "previous", "all")["comparable"]  # 'all' is the same population


def test_census_and_formula_changes_are_noted(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _two_models(0.25, 0.25))
    publish_fake_wave(
        store, "2026-11", _two_models(0.5, 0.5), census="census-2", formulas={KEY: "p ~ 1"}
    )

    note = _row(wave_changes(store, "2026-11"), "previous")["note"]

    assert "formula changed since 2026-10" in note
    assert "census changed since 2026-10" in note


def test_a_change_of_model_priors_is_not_like_for_like(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    # written before group_sd and interaction_zero_sum existed: the model they meant
    before = PriorConfig(group_sd="half_normal", group_sigma=1.0, interaction_zero_sum="total")
    legacy = before.model_dump(mode="json", exclude={"group_sd", "interaction_zero_sum"})
    publish_fake_wave(store, "2026-09", _two_models(0.25, 0.25), priors=legacy)
    publish_fake_wave(store, "2026-10", _two_models(0.25, 0.25), priors=before.model_dump())
    publish_fake_wave(
        store, "2026-11", _two_models(0.5, 0.5), priors=PriorConfig().model_dump(mode="json")
    )

    # the same model, recorded with and without the later keys: comparable
    assert _row(wave_changes(store, "2026-10"), "previous")["comparable"]
    row = _row(wave_changes(store, "2026-11"), "previous")
    assert not row["comparable"]
    assert pd.isna(row["flag"])
    assert "model priors changed since 2026-10" in row["note"]
    assert row["mean"] == 0.25  # the numbers are kept


def test_a_census_update_in_one_market_leaves_the_other_markets_comparable(
    tmp_path: Path,
) -> None:
    store = ResultStore(str(tmp_path))
    models = {"DE/aware_b1/yes": {"all": _draws(0.25)}, "FR/aware_b1/yes": {"all": _draws(0.25)}}
    publish_fake_wave(store, "2026-10", models, market_census={"DE": "de-1", "FR": "fr-1"})
    publish_fake_wave(
        store, "2026-11", models, census="whole-2", market_census={"DE": "de-1", "FR": "fr-2"}
    )

    changes = wave_changes(store, "2026-11").set_index("market")

    assert bool(changes.loc["DE", "comparable"])
    assert not changes.loc["FR", "comparable"]
    assert "census changed since 2026-10" in changes.loc["FR", "note"]


def test_a_model_missing_in_the_reference_says_so_without_numbers(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _two_models(0.25, 0.25))
    new = "DE/aware_b2/yes"
    publish_fake_wave(store, "2026-11", {**_two_models(0.5, 0.5), new: {"all": _draws(0.5)}})

    row = _row(
        wave_changes(store, "2026-11").query("option == 'yes' and question_id == 'aware_b2'"),
        "previous",
    )

    assert not row["comparable"]
    assert row["note"] == "model not in wave 2026-10"
    assert np.isnan(row["mean"])


def test_a_not_converged_reference_is_compared_and_noted(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(
        store, "2026-10", _two_models(0.25, 0.25), statuses={KEY: FitStatus.NOT_CONVERGED}
    )
    publish_fake_wave(store, "2026-11", _two_models(0.5, 0.5))

    row = _row(wave_changes(store, "2026-11"), "previous")

    assert row["comparable"]
    assert row["flag"] == "up"
    assert row["status"] == "not_converged"
    assert row["note"] == "not converged in 2026-10"


def test_draw_counts_that_differ_between_waves_are_thinned_to_pair(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", {KEY: {"all": _draws(0.25, 80)}}, target_groups={})
    publish_fake_wave(store, "2026-11", {KEY: {"all": _draws(0.5, 40)}}, target_groups={})

    assert _row(wave_changes(store, "2026-11"), "previous")["mean"] == 0.25


def test_a_chosen_reference_must_exist_and_be_complete(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-08", _two_models(0.25, 0.25))
    publish_fake_wave(store, "2026-09", _two_models(0.25, 0.25), complete=False)
    publish_fake_wave(store, "2026-11", _two_models(0.5, 0.5))

    chosen = _row(wave_changes(store, "2026-11", reference_wave="2026-08"), "chosen")
    assert chosen["reference_waves"] == "2026-08"
    with pytest.raises(ReferenceWaveError, match=r"'2026-07' does not exist .*misterp waves"):
        wave_changes(store, "2026-11", reference_wave="2026-07")
    with pytest.raises(ReferenceWaveError, match=r"'2026-09' is incomplete .*misterp rerun"):
        wave_changes(store, "2026-11", reference_wave="2026-09")


def test_the_first_wave_has_no_changes_and_an_incomplete_wave_is_refused(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-11", _two_models(0.5, 0.5))
    publish_fake_wave(store, "2026-12", _two_models(0.5, 0.5), complete=False)

    assert wave_changes(store, "2026-11").empty
    with pytest.raises(ReferenceWaveError, match="'2026-12' is not complete"):
        wave_changes(store, "2026-12")


def test_groups_fixture_is_what_the_waves_define() -> None:
    assert set(GROUPS) == {"women"}
