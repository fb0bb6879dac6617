"""The report step of a wave flow: the headline table and a link to the page, on the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pandas as pd
from prefect import State, flow

from flows.tasks import artifact_key, show_mmm_report, show_wave_report
from misterp.reporting.mmm_report import MMMReportOutcome, update_mmm_report
from misterp.reporting.write import ReportOutcome, update_report
from misterp.storage import ResultStore
from tracking_support import publish_fake_wave

WAVE = "2026-11"


@flow(name="report-artifacts-test")
def report_flow(output: str) -> ReportOutcome:
    outcome = update_report(ResultStore(output), WAVE)
    show_wave_report(outcome, WAVE)
    return outcome


@flow(name="mmm-report-artifacts-test")
def mmm_report_flow(output: str, run: str) -> MMMReportOutcome:
    outcome = update_mmm_report(ResultStore(output), run)
    show_mmm_report(outcome)
    return outcome


def _artifacts(key: str, flow_run_id: UUID | None = None) -> list[Any]:
    """The artifacts ``key``, of the flow run when given (the server is shared with other
    tests, which make artifacts with the same keys)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    of_run = None if flow_run_id is None else ArtifactFilterFlowRunId(any_=[flow_run_id])
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]), flow_run_id=of_run)
        )


def _artifact(key: str, state: State[Any]) -> Any:
    """The one artifact ``key`` of the flow run that ended in ``state``."""
    assert state.state_details.flow_run_id is not None
    (artifact,) = _artifacts(key, state.state_details.flow_run_id)
    return artifact


def test_the_report_step_shows_the_headline_and_links_the_page(
    prefect_api: object, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path))
    draws = {
        "DE/aware_b1/yes": {"all": np.full(8, 0.5)},
        "DE/aware_b2/yes": {"all": np.full(8, 0.25)},
    }
    publish_fake_wave(store, WAVE, draws)

    state = report_flow(str(tmp_path), return_state=True)
    outcome = state.result()

    index = tmp_path / WAVE / "report" / "index.html"
    assert outcome.status == "written"
    assert index.exists()
    table = _artifact("wave-headline-2026-11", state)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["kpi"] for row in rows] == ["DE · aware_b1", "DE · aware_b2"]
    assert [row["estimate"][:5] for row in rows] == ["50.0%", "25.0%"]
    assert {row["arrow"] for row in rows} == {"no previous wave"}
    link = _artifact("wave-report-2026-11", state)
    assert index.as_uri() in str(link.data)


def test_artifact_keys_are_what_prefect_accepts() -> None:
    assert artifact_key("wave-headline", "2026_W45.b") == "wave-headline-2026-w45-b"


def test_a_media_mix_run_shows_roas_per_market_and_links_its_report(
    prefect_api: object, tmp_path: Path
) -> None:
    from tests.reporting.mmm_run_store import RUN, fake_run

    fake_run(tmp_path, diverging=("FR",))

    state = mmm_report_flow(str(tmp_path / "out"), RUN, return_state=True)
    outcome = state.result()

    index = tmp_path / "out" / "mmm" / RUN / "report" / "index.html"
    assert outcome.status == "written"
    table = _artifact(f"mmm-headline-{RUN}", state)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(row["market"], row["status"]) for row in rows] == [
        ("DE", "converged"),
        ("FR", "not_converged"),
    ]
    roas = pd.read_parquet(index.parent.parent / "roas.parquet")
    de = roas[roas["market"] == "DE"].sort_values("roas", ascending=False).iloc[0]
    best = f"{de['channel']} {de['roas']:.2f} ({de['roas_lower']:.2f}-{de['roas_upper']:.2f})"
    assert rows[0]["roas"].startswith(best)
    assert rows[1]["flag"] == "not converged: numbers are not trustworthy"
    link = _artifact(f"mmm-report-{RUN}", state)
    assert index.as_uri() in str(link.data)


def test_a_failed_media_mix_report_shows_no_artifacts(prefect_api: object, tmp_path: Path) -> None:
    outcome = mmm_report_flow(str(tmp_path), "never-ran")

    assert outcome.status == "failed"
    assert _artifacts("mmm-report-never-ran") == []
