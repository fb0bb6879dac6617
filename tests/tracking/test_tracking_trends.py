"""The trend table, kept incrementally, and the tracking step that runs after publication."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mrp.config import TrackingConfig, parse_config
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from misterp.tracking.changes import later_waves_referencing
from misterp.tracking.trends import TREND_COLUMNS, rebuild_trends, update_trends
from misterp.tracking.update import update_tracking
from support import PLUMBING, no_mcmc_backends, small_wave_config
from tracking_support import publish_fake_wave

KEY = "DE/aware_b1/yes"


def _wave(value: float) -> dict[str, dict[str, np.ndarray]]:
    return {KEY: {"all": np.full(8, value), "women": np.full(8, value / 2)}}


def test_publishing_adds_a_waves_rows_sorted_by_period(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    fieldwork = {"fieldwork": {"2026-11": ["2026-11-03", "2026-11-17"]}}
    publish_fake_wave(store, "2026-11", _wave(0.5), tracking=fieldwork)
    publish_fake_wave(store, "2026-10", _wave(0.25))

    update_trends(store, "2026-11")
    table = update_trends(store, "2026-10")

    assert list(table.columns) == list(TREND_COLUMNS)
    assert list(table["wave"]) == ["2026-10", "2026-10", "2026-11", "2026-11"]
    assert list(table["mean"]) == [0.25, 0.125, 0.5, 0.25]
    november = table[table["wave"] == "2026-11"].iloc[0]
    assert november["period_start"] == pd.Timestamp("2026-11-01")
    assert november["period_end"] == pd.Timestamp("2026-11-30")
    assert november["fieldwork_start"] == pd.Timestamp("2026-11-03")
    assert pd.isna(table.iloc[0]["fieldwork_start"])
    pd.testing.assert_frame_equal(store.read_parquet("trends.parquet"), table)


def test_publishing_a_wave_again_replaces_its_rows(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    publish_fake_wave(store, "2026-11", _wave(0.5))
    update_trends(store, "2026-10")
    update_trends(store, "2026-11")

    publish_fake_wave(store, "2026-11", _wave(0.75))
    table = update_trends(store, "2026-11")

    assert len(table) == 4
    assert list(table.loc[table["wave"] == "2026-11", "mean"]) == [0.75, 0.375]


def test_rows_of_a_wave_that_is_no_longer_complete_are_dropped(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    publish_fake_wave(store, "2026-11", _wave(0.5))
    update_trends(store, "2026-10")
    update_trends(store, "2026-11")

    store.retract("2026-10")  # a re-run of October has started
    table = update_trends(store, "2026-11")

    assert set(table["wave"]) == {"2026-11"}


def test_the_update_reads_no_other_waves_estimates(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    update_trends(store, "2026-10")
    store.write_bytes("2026-10/estimates.parquet", b"damaged: must not be read")
    publish_fake_wave(store, "2026-11", _wave(0.5))

    table = update_trends(store, "2026-11")

    assert list(table["wave"].unique()) == ["2026-10", "2026-11"]


def test_rebuild_reads_every_complete_wave(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    publish_fake_wave(store, "2026-11", _wave(0.5))
    publish_fake_wave(store, "2026-12", _wave(0.5), complete=False)

    assert list(rebuild_trends(store)["wave"].unique()) == ["2026-10", "2026-11"]


def test_update_tracking_skips_a_wave_id_that_is_no_period(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "demo", _wave(0.5))

    outcome = update_tracking(store, "demo")

    assert outcome.status == "skipped"
    assert "rename the wave" in outcome.message
    assert not store.exists("trends.parquet")
    assert not store.exists("demo/changes.parquet")
    assert json.loads(store.read_bytes("demo/tracking.json"))["status"] == "skipped"
    assert sum("changes and trends skipped" in r.message for r in caplog.records) == 1


def test_a_failing_tracking_step_leaves_the_wave_published(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    publish_fake_wave(store, "2026-11", _wave(0.5))
    store.write_bytes("2026-11/changes.parquet", b"stale")
    store.write_bytes("2026-10/draws/DE/aware_b1/yes.parquet", b"damaged")

    outcome = update_tracking(store, "2026-11")

    assert outcome.status == "failed"
    assert store.is_complete("2026-11")
    assert not store.exists("2026-11/changes.parquet")  # nothing stale left behind
    assert json.loads(store.read_bytes("2026-11/tracking.json"))["status"] == "failed"


def test_run_wave_inline_writes_changes_and_trends_for_each_wave(tmp_path: Path) -> None:
    outcomes = []
    for wave in ("2026-10", "2026-11"):
        raw = small_wave_config(tmp_path, wave=wave, spec={"markets": ("DE",)}, **PLUMBING)
        raw["input"] = str(tmp_path / "input")
        outcomes.append(run_wave_inline(parse_config(raw), backends=no_mcmc_backends()))
    store = ResultStore(str(tmp_path / "results"))

    changes = store.read_parquet("2026-11/changes.parquet")
    trends = store.read_parquet("trends.parquet")

    assert outcomes[1].tracking is not None
    assert outcomes[1].tracking.status == "updated"
    assert set(changes["reference"]) == {"previous"}
    assert changes["comparable"].all()  # same input, census, groups and formulas
    assert len(changes) == len(outcomes[1].estimates)
    assert list(trends["wave"].unique()) == ["2026-10", "2026-11"]
    assert len(trends) == 2 * len(outcomes[1].estimates)


def test_the_first_update_builds_the_table_from_every_complete_wave(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-09", _wave(0.25))  # published before tracking existed
    publish_fake_wave(store, "2026-10", _wave(0.25), complete=False)
    publish_fake_wave(store, "2026-11", _wave(0.5))

    table = update_trends(store, "2026-11")

    assert list(table["wave"].unique()) == ["2026-09", "2026-11"]


def test_republishing_an_earlier_wave_recomputes_the_later_waves_changes(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    for wave, value in (("2026-09", 0.25), ("2026-10", 0.25), ("2026-11", 0.5)):
        publish_fake_wave(store, wave, _wave(value))
        update_tracking(store, wave)
    november = store.read_parquet("2026-11/changes.parquet")
    assert november.loc[november["target_group"] == "all", "mean"].tolist() == [0.25]

    # 2026-10 is re-run and comes out higher: November's change against it is now stale
    publish_fake_wave(store, "2026-10", _wave(0.375))
    outcome = update_tracking(store, "2026-10")

    assert outcome.refreshed == ("2026-11",)
    november = store.read_parquet("2026-11/changes.parquet")
    assert november.loc[november["target_group"] == "all", "mean"].tolist() == [0.125]
    # the wave before is not touched: its changes do not refer to 2026-10
    september = (
        store.read_parquet("2026-09/changes.parquet")
        if store.exists("2026-09/changes.parquet")
        else None
    )
    assert september is None or september.empty


def test_later_waves_referencing_follows_previous_year_ago_and_rolling(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    months = [f"2025-{m:02d}" for m in range(10, 13)] + [f"2026-{m:02d}" for m in range(1, 12)]
    for wave in months:
        # 2026-04 is running: it is never stale, and 2026-05's previous wave is 2026-03
        publish_fake_wave(store, wave, _wave(0.5), complete=wave != "2026-04")

    stale = later_waves_referencing(store, "2025-10", TrackingConfig(rolling_waves=2))

    # rolling 2 looks 3 complete waves back (2025-11..2026-01); a year later is 2026-10
    assert stale == ["2025-11", "2025-12", "2026-01", "2026-10"]
    assert later_waves_referencing(store, "2026-03", TrackingConfig(rolling_waves=1)) == ["2026-05"]


def test_a_complete_wave_missing_from_the_table_is_restored_by_the_next_update(
    tmp_path: Path,
) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-09", _wave(0.25))
    update_trends(store, "2026-09")
    # 2026-10 published, but its trend update was lost (a concurrent writer, a killed run)
    publish_fake_wave(store, "2026-10", _wave(0.5))
    publish_fake_wave(store, "2026-11", _wave(0.75))

    table = update_trends(store, "2026-11")

    assert list(table["wave"].unique()) == ["2026-09", "2026-10", "2026-11"]
    pd.testing.assert_frame_equal(table, rebuild_trends(store), check_dtype=False)


class _RacingStore(ResultStore):
    """A store where another publisher overwrites the trend table right after our first write."""

    def __init__(self, root: str, stale: pd.DataFrame) -> None:
        super().__init__(root)
        self.stale: pd.DataFrame | None = stale
        self.trend_writes = 0

    def write_parquet(self, relpath: str, frame: pd.DataFrame) -> None:
        super().write_parquet(relpath, frame)
        if relpath == "trends.parquet":
            self.trend_writes += 1
            if self.stale is not None:
                stale, self.stale = self.stale, None
                super().write_parquet(relpath, stale)  # the other writer wins this round


def test_rows_lost_to_a_concurrent_update_are_written_again(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-10", _wave(0.25))
    before = update_trends(store, "2026-10")
    publish_fake_wave(store, "2026-11", _wave(0.5))
    racing = _RacingStore(str(tmp_path), stale=before)

    table = update_trends(racing, "2026-11")

    assert racing.trend_writes == 2
    assert list(store.read_parquet("trends.parquet")["wave"].unique()) == ["2026-10", "2026-11"]
    pd.testing.assert_frame_equal(table, store.read_parquet("trends.parquet"), check_dtype=False)
