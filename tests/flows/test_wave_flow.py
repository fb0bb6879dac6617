"""The wave flow against a real Prefect API (the session's server) and a real S3 endpoint."""

from __future__ import annotations

import functools
from pathlib import Path
from uuid import UUID

import pandas as pd
import pytest
from tests.flows.no_mcmc_fits import fit_without_mcmc

import flows.wave
from flows.cli import summary_of
from flows.dispatch import fit_in_processes
from flows.wave import run_wave
from misterp.mrp.records import Manifest
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.validation import InputValidationError
from misterp.storage import MANIFEST, ResultStore
from support import config_file

# Plumbing, not statistics: tiny draw counts, and no MCMC; recovery is tested in tests/mrp.
PLUMBING_SAMPLER = {"draws": 200, "tune": 150, "chains": 2, "stored_draws": 100}


def _artifact(key: str, flow_run_id: UUID | None) -> list[dict[str, object]]:
    """The one artifact ``key`` of the flow run (the server is shared with other tests)."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    data = artifact.data
    rows: list[dict[str, object]] = json.loads(data) if isinstance(data, str) else data
    return rows


def _small_wave(seed: int) -> object:
    return simulate_wave(
        seed,
        WaveTruthSpec(
            markets=("DE",),
            brands=("brand01", "brand02"),
            n_respondents=400,
            rare_brand="brand02",
            association_options=("innovative", "trustworthy"),
        ),
    )


def test_demo_wave_runs_end_to_end_on_s3(
    prefect_api: object,
    s3_bucket: tuple[str, dict[str, object]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bucket, options = s3_bucket
    # the fits run in two worker processes; each samples nothing there (no_mcmc_fits)
    monkeypatch.setattr(
        flows.wave, "fit_in_processes", functools.partial(fit_in_processes, fit=fit_without_mcmc)
    )
    wave = _small_wave(11)
    wave.write(f"{bucket}/input/2026-10", storage_options=options)
    config = wave.config(f"{bucket}/input/{{wave}}", f"{bucket}/results")
    config |= {
        "storage_options": options,
        "sampler": PLUMBING_SAMPLER,
        "retry": {"max_attempts": 1},
        "workers": 2,
        # each brand's association battery is one joint fit in a worker, split per option
        "model": {"joint_questions": "multi"},
    }

    state = run_wave(
        config=config_file(tmp_path / "wave.yaml", config), wave="2026-10", return_state=True
    )
    summary = summary_of(state)

    store = ResultStore(f"{bucket}/results", options)
    assert store.is_complete("2026-10")
    manifest = Manifest.from_json(store.read_bytes(f"2026-10/{MANIFEST}"), MANIFEST)
    # the run's state says whether every model converged; the wave is published either way
    problems = sorted(m.key for m in manifest.models if m.estimate_status.needs_attention)
    assert state.is_failed() == bool(problems), state
    # the health report: a file beside the estimates and Prefect artifacts, problems listed
    health = store.read_bytes("2026-10/health.md").decode()
    assert all(f"`{key}`" in health for key in problems)
    table = _artifact("wave-health-2026-10", state.state_details.flow_run_id)
    assert [row["model"] for row in table][: len(problems)] == problems
    assert len(table) == len(manifest.models)
    estimates = store.read_parquet("2026-10/estimates.parquet")
    n_models = 2 * 2 + 2 * 2  # aware+consider per brand, 2 association options per brand
    assert summary.counts.models == n_models == len(manifest.models)
    batteries = [m for m in manifest.models if m.spec["question_id"].startswith("assoc_")]
    assert {m.spec["joint"] for m in batteries} == {"assoc_brand01", "assoc_brand02"}
    for question in ("assoc_brand01", "assoc_brand02"):  # one fit: same attempts and seconds
        members = [m for m in batteries if m.spec["question_id"] == question]
        assert len({(m.seconds, m.attempts) for m in members}) == 1
        assert len({m.fit_id for m in members}) == len(members)
    groups = 1 + len(wave.target_groups)
    assert len(estimates) == n_models * groups
    assert set(estimates["status"]) <= {"converged", "not_converged", "failed"}
    # every model with a posterior has its poststratified draws stored and readable
    for model in manifest.models:
        assert model.draws is not None, model.key
        draws = store.read_parquet(f"2026-10/{model.draws}")
        assert len(draws) == PLUMBING_SAMPLER["stored_draws"] * groups
    # estimates are probabilities and intervals are ordered
    ok = estimates.dropna(subset=["mean"])
    assert ((ok["q05"] <= ok["q50"]) & (ok["q50"] <= ok["q95"])).all()
    assert ok["mean"].between(0, 1).all()
    # a raw share exists exactly where the group has respondents in the base
    has_people = estimates["n"] > 0
    assert estimates.loc[has_people, "raw_mean"].between(0, 1).all()
    assert estimates.loc[~has_people, "raw_mean"].isna().all()


def test_bad_input_fails_before_anything_is_written(prefect_api: object, tmp_path: Path) -> None:
    wave = _small_wave(12)
    wave.write(str(tmp_path / "input"))
    answers = pd.read_csv(tmp_path / "input" / "answers.csv", dtype=str)
    answers.loc[3, "selected"] = "2"
    answers.to_csv(tmp_path / "input" / "answers.csv", index=False)
    config = wave.config(str(tmp_path / "input"), str(tmp_path / "results"))

    with pytest.raises(InputValidationError, match=r"answers\.csv.*selected.*row 5"):
        run_wave(config=config_file(tmp_path / "wave.yaml", config), wave="2026-10")

    assert not (tmp_path / "results").exists()
