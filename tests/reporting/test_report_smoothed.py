"""The smoothed trend in the report: beside the raw change, and only when tracking made one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from misterp.reporting.smoothed import RAW_FLAG, SMOOTHED, SMOOTHED_FLAG
from misterp.reporting.tables import CHANGE, ESTIMATE
from misterp.reporting.write import write_report
from misterp.storage import ResultStore
from misterp.tracking.update import update_tracking
from tracking_support import publish_fake_wave

KEY = "DE/aware_b1/yes"


def _publish(root: Path, smoothing: bool) -> ResultStore:
    store = ResultStore(str(root))
    rng = np.random.default_rng(5)
    for wave, centre in (("2026-09", 0.40), ("2026-10", 0.42), ("2026-11", 0.50)):
        # a run refuses a window longer than the waves published: on from the third wave
        tracking = {"smoothing": {"enabled": smoothing and wave == "2026-11", "window": 3}}
        draws = {
            KEY: {"all": rng.normal(centre, 0.02, 200), "women": rng.normal(centre, 0.04, 200)}
        }
        publish_fake_wave(store, wave, draws, tracking=tracking)
        assert update_tracking(store, wave).status == "updated"
    return store


def test_the_report_shows_the_smoothed_trend_beside_the_raw_change(tmp_path: Path) -> None:
    store = _publish(tmp_path, smoothing=True)

    report = write_report(store, "2026-11")

    table = report.tables.smoothed
    smoothed = store.read_parquet("2026-11/smoothed.parquet")
    newest = smoothed[smoothed["level_wave"] == "2026-11"]
    changes = store.read_parquet("2026-11/changes.parquet")
    raw = changes[changes["reference"] == "previous"].set_index("target_group")
    assert len(table) == len(newest) == 2  # this wave's row of each group, not the window's
    row = table[table["Group"] == "all"].iloc[0]
    assert row[ESTIMATE] == round(
        float(newest.set_index("target_group").loc["all", "raw_mean"]) * 100, 1
    )
    assert row[CHANGE] == round(float(raw.loc["all", "mean"]) * 100, 1)
    assert row[RAW_FLAG] == raw.loc["all", "flag"]
    assert row[SMOOTHED] == round(
        float(newest.set_index("target_group").loc["all", "level"]) * 100, 1
    )
    assert row[SMOOTHED_FLAG] in {"up", "down", "steady"}
    assert list(report.tables.sheets())[:3] == ["headline", "changes", "smoothed"]
    assert store.exists("2026-11/report/smoothed.csv")
    page = store.read_bytes("2026-11/report/index.html").decode()
    assert 'id="smoothed"' in page
    assert "Raw change" in page


def test_a_wave_without_smoothing_has_no_smoothed_sheet_or_section(tmp_path: Path) -> None:
    store = _publish(tmp_path, smoothing=False)

    report = write_report(store, "2026-11")

    assert report.tables.smoothed.empty
    assert "smoothed" not in report.tables.sheets()
    assert not store.exists("2026-11/report/smoothed.csv")
    assert 'id="smoothed"' not in store.read_bytes("2026-11/report/index.html").decode()
