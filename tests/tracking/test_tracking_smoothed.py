"""A wave's smoothed trend in a store: its window, its rows, and a window that is too long."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.outcome import ExitCode, exit_code_for
from misterp.mrp.config import TrackingConfig, parse_config
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from misterp.tracking.smoothed import (
    SMOOTHED_COLUMNS,
    SMOOTHED_FILE,
    SmoothingWindowError,
    wave_smoothing,
)
from misterp.tracking.smoothing import local_level
from misterp.tracking.update import update_tracking
from support import PLUMBING, no_mcmc_backends, small_wave_config
from tracking_support import publish_fake_wave

KEY = "DE/aware_b1/yes"
OTHER = "DE/aware_b2/yes"
SMOOTHING = {"smoothing": {"enabled": True, "window": 3}}


def _draws(rng: np.random.Generator, centre: float) -> dict[str, np.ndarray]:
    return {"all": rng.normal(centre, 0.02, 400), "women": rng.normal(centre, 0.04, 400)}


def _publish(
    store: ResultStore,
    centres: dict[str, float],
    wave: str,
    *,
    smoothing: bool = True,
    **kwargs: object,
) -> None:
    rng = np.random.default_rng(abs(hash(wave)) % 1000)
    draws = {key: _draws(rng, centre) for key, centre in centres.items()}
    tracking = SMOOTHING if smoothing else {}
    publish_fake_wave(store, wave, draws, tracking=tracking, **kwargs)  # type: ignore[arg-type]


def test_the_table_smooths_each_estimate_over_the_window_from_the_published_summaries(
    tmp_path: Path,
) -> None:
    store = ResultStore(str(tmp_path))
    for wave, centre in (("2026-08", 0.2), ("2026-09", 0.4), ("2026-10", 0.42), ("2026-11", 0.5)):
        _publish(store, {KEY: centre, OTHER: 0.3}, wave)

    table = wave_smoothing(store, "2026-11")

    assert list(table.columns) == list(SMOOTHED_COLUMNS)
    assert len(table) == 2 * 2 * 3  # models x groups x window (2026-08 is outside it)
    one = table[(table["question_id"] == "aware_b1") & (table["target_group"] == "all")]
    assert one["level_wave"].tolist() == ["2026-09", "2026-10", "2026-11"]
    estimates = [
        store.read_parquet(f"{w}/estimates.parquet").query(
            "question_id == 'aware_b1' and target_group == 'all'"
        )
        for w in ("2026-09", "2026-10", "2026-11")
    ]
    assert one["raw_mean"].tolist() == pytest.approx([float(e["mean"].iloc[0]) for e in estimates])
    assert one["raw_sd"].tolist() == pytest.approx([float(e["sd"].iloc[0]) for e in estimates])
    # the same numbers as the smoother given the table's raw figures and its drift sd
    series = local_level(
        one[["raw_mean"]].to_numpy().T,
        one[["raw_sd"]].to_numpy().T,
        drift_sd=float(one["drift_sd"].iloc[0]),
    )
    assert one["level"].tolist() == pytest.approx(series.level_mean[0].tolist())
    assert one["p_up"].iloc[2] == pytest.approx(float(series.p_up()[0, 2]))
    assert pd.isna(one["flag"].iloc[0])  # no wave before the window's first
    assert set(one["flag"].iloc[1:]) <= {"up", "down", "steady"}
    assert (table["waves_used"] == 3).all()


def test_a_series_starts_after_the_last_wave_that_is_not_like_for_like(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    _publish(store, {KEY: 0.4, OTHER: 0.3}, "2026-09", formulas={KEY: "p(yes, n) ~ 1"})
    _publish(store, {KEY: 0.4, OTHER: 0.3}, "2026-10")
    _publish(store, {KEY: 0.4, OTHER: 0.3}, "2026-11")

    table = wave_smoothing(store, "2026-11").set_index(["question_id", "target_group"])

    changed = table.loc[("aware_b1", "all")]
    assert changed["waves_used"].tolist() == [2, 2, 2]
    assert np.isnan(changed["raw_mean"].iloc[0])
    assert np.isnan(changed["level"].iloc[0])
    assert table.loc[("aware_b2", "all"), "waves_used"].tolist() == [3, 3, 3]


def test_tracking_publishes_the_smoothed_table_beside_the_changes_only_when_asked(
    tmp_path: Path,
) -> None:
    store = ResultStore(str(tmp_path))
    for wave in ("2026-09", "2026-10", "2026-11"):
        _publish(store, {KEY: 0.4}, wave)

    on = update_tracking(store, "2026-11")
    assert on.status == "updated", on.message
    assert on.smoothed_rows == len(store.read_parquet(f"2026-11/{SMOOTHED_FILE}")) == 6
    assert store.exists("2026-11/changes.parquet")  # the raw changes stay

    off = update_tracking(store, "2026-11", TrackingConfig())
    assert off.smoothed_rows == 0
    assert not store.exists(f"2026-11/{SMOOTHED_FILE}")  # nothing stale left behind


def test_republishing_an_earlier_wave_recomputes_the_later_waves_smoothed_trend(
    tmp_path: Path,
) -> None:
    store = ResultStore(str(tmp_path))
    _publish(store, {KEY: 0.4}, "2026-09", smoothing=False)
    _publish(store, {KEY: 0.4}, "2026-10", smoothing=False)
    _publish(store, {KEY: 0.4}, "2026-11")
    assert update_tracking(store, "2026-11").smoothed_rows == 6

    _publish(store, {KEY: 0.6}, "2026-10", smoothing=False)  # a re-run of October
    outcome = update_tracking(store, "2026-10")

    table = store.read_parquet(f"2026-11/{SMOOTHED_FILE}")
    october = table[(table["level_wave"] == "2026-10") & (table["target_group"] == "all")]
    assert october["raw_mean"].iloc[0] == pytest.approx(0.6, abs=0.01)
    assert "smoothed trends of later waves 2026-11 recomputed" in outcome.message


def test_a_window_longer_than_the_waves_published_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    raw = small_wave_config(
        tmp_path,
        wave="2026-11",
        spec={"markets": ("DE",)},
        **PLUMBING,
        tracking={"smoothing": {"enabled": True, "window": 2}},
    )

    with pytest.raises(SmoothingWindowError) as caught:
        run_wave_inline(parse_config(raw), backends=no_mcmc_backends())

    message = str(caught.value)
    assert "tracking.smoothing.window is 2 waves, but 1 is published" in message
    assert "tracking.smoothing.enabled: false" in message
    assert exit_code_for(caught.value) is ExitCode.INVALID
    assert not (tmp_path / "results" / "2026-11").exists()
