"""One store of three published waves (with their reports) for every report test."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import build_three_waves

from misterp.mrp.wave import WaveOutcome


@pytest.fixture(scope="session")
def three_waves(tmp_path_factory: pytest.TempPathFactory) -> list[WaveOutcome]:
    """Three published monthly waves of one market and two brands; about 15 s to build."""
    return build_three_waves(tmp_path_factory.mktemp("report-store"))


@pytest.fixture(scope="session")
def results(three_waves: list[WaveOutcome]) -> Path:
    """The results root of ``three_waves``."""
    return Path(three_waves[0].output_uri).parent
