"""The catalog of waves: complete ones in period order, incomplete ones named as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from misterp.status import FitStatus
from misterp.storage import ResultStore
from misterp.tracking.catalog import list_waves
from tracking_support import publish_fake_wave

KEY = "DE/aware_b1/yes"


def test_waves_are_listed_in_period_order_with_incomplete_ones_marked(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    draws = {KEY: {"all": np.full(4, 0.5)}}
    publish_fake_wave(store, "2026-11", draws)
    publish_fake_wave(store, "2026-09", draws, statuses={KEY: FitStatus.NOT_CONVERGED})
    publish_fake_wave(store, "2026-10", draws, complete=False)
    publish_fake_wave(store, "demo", draws)
    store.write_bytes("trends.parquet", b"not a wave")

    entries = list_waves(store)

    assert [(e.wave, e.complete) for e in entries] == [
        ("2026-09", True),
        ("2026-10", False),
        ("2026-11", True),
        ("demo", True),
    ]
    september, october, november, demo = entries
    assert (november.models, november.healthy, september.healthy) == (1, True, False)
    assert october.note == "no manifest (running or stopped)"
    assert not october.usable
    assert "not a period" in (demo.note or "")
    assert not demo.usable
    assert october.line() == "2026-10  incomplete: no manifest (running or stopped)"
    assert september.line().startswith("2026-09  1 model, needs attention: 1 not converged")


def test_an_unreadable_manifest_makes_the_wave_incomplete(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    store.write_bytes("2026-11/manifest.json", b"{not json")

    (entry,) = list_waves(store)

    assert not entry.complete
    assert "unreadable manifest" in (entry.note or "")


def test_an_empty_or_missing_root_has_no_waves(tmp_path: Path) -> None:
    assert list_waves(ResultStore(str(tmp_path / "nothing"))) == []
