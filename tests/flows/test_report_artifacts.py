"""The report step of a wave flow: the headline table and a link to the page, on the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow

from flows.tasks import artifact_key, report_wave
from misterp.reporting.write import ReportOutcome
from misterp.storage import ResultStore
from tracking_support import publish_fake_wave

WAVE = "2026-11"


@flow(name="report-artifacts-test")
def report_flow(output: str) -> ReportOutcome:
    return report_wave(output, WAVE, {})


def _artifact(key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return artifact


def test_the_report_step_shows_the_headline_and_links_the_page(
    prefect_api: None, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path))
    draws = {
        "DE/aware_b1/yes": {"all": np.full(8, 0.5)},
        "DE/aware_b2/yes": {"all": np.full(8, 0.25)},
    }
    publish_fake_wave(store, WAVE, draws)

    outcome = report_flow(str(tmp_path))

    index = tmp_path / WAVE / "report" / "index.html"
    assert outcome.status == "written"
    assert index.exists()
    table = _artifact("wave-headline-2026-11")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["kpi"] for row in rows] == ["DE · aware_b1", "DE · aware_b2"]
    assert [row["estimate"][:5] for row in rows] == ["50.0%", "25.0%"]
    assert {row["arrow"] for row in rows} == {"no previous wave"}
    link = _artifact("wave-report-2026-11")
    assert index.as_uri() in str(link.data)


def test_artifact_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("wave-headline", "2026_W45.b") == "wave-headline-2026-w45-b"
