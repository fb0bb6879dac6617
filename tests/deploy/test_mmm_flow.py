"""The mmm flows on a real Prefect API (the session's server), with the run tests' fake sampler.

The markets fan out through ``flows.dispatch`` as the tracker's fits do: inline (one worker),
in worker processes, and as flow runs of an ``mmm-fit-batch`` deployment served by a runner.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from tests.mmm.fake_mmm_fits import PIDS_FILE, fit_fake_market
from tests.mmm.test_mmm_run import CALLS, DIVERGING

from misterp.errors import ConfigError
from misterp.lease import RunLocked, read_lease
from misterp.mmm.outputs import MMMManifest
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.staging import lease_run
from misterp.storage import MANIFEST, ResultStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import flows.mmm_flow

    simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80).write(tmp_path / "input")
    path = tmp_path / "mmm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": str(tmp_path / "input"),
                "output": str(tmp_path / "out"),
                "controls": ["price"],
                "run": "r1",
                "workers": 1,
            }
        )
    )
    import flows.mmm_tasks

    assert flows.mmm_flow  # the flow reads the fit task from flows.mmm_tasks when it runs
    monkeypatch.setattr(flows.mmm_tasks, "fit_mmm_market", fit_fake_market)
    CALLS.clear()
    DIVERGING.clear()
    yield str(path)
    DIVERGING.clear()


def _artifact_data(key: str, flow_run_id: UUID | None) -> Any:
    """The data of the newest artifact with ``key`` of the flow run (a table is JSON, markdown
    text); by flow run, since the server is shared with other tests."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    data = artifact.data
    return json.loads(data) if isinstance(data, str) and data.startswith("[") else data


@pytest.mark.usefixtures("prefect_api")
def test_flagged_run_fails_and_the_rerun_refits_only_the_flagged_market(config_path) -> None:
    from flows.mmm_flow import rerun_failed_mmm, run_mmm_flow

    DIVERGING.add("FR")
    state = run_mmm_flow(config_path, return_state=True)
    assert state.is_failed()
    assert "1 of 2" in state.message or "not converged" in state.message, state.message
    assert "mmm-health artifact" in state.message
    assert CALLS == ["DE", "FR", "FR", "FR"]  # FR escalated through the retry ladder
    rows = _artifact_data("mmm-health-r1", state.state_details.flow_run_id)
    assert [(row["model"], row["status"]) for row in rows] == [
        ("FR", "not_converged"),  # problems first
        ("DE", "converged"),
    ]
    summary_text = _artifact_data("mmm-health-r1-summary", state.state_details.flow_run_id)
    assert "Media-mix run r1: NEEDS ATTENTION" in summary_text

    DIVERGING.clear()
    summary = rerun_failed_mmm(config_path, "r1")
    assert CALLS[4:] == ["FR"]  # DE reused
    assert summary.counts.converged == 2
    assert summary.headline == "media-mix run r1: all 2 models converged"


@pytest.mark.usefixtures("prefect_api")
def test_rerun_of_an_unknown_run_and_credentials_in_parameters_are_refused(config_path) -> None:
    from flows.mmm_flow import rerun_failed_mmm, run_mmm_flow

    with pytest.raises(ConfigError, match="no media-mix run nope"):
        rerun_failed_mmm(config_path, "nope")
    mapping = yaml.safe_load(Path(config_path).read_text())
    mapping["storage_options"] = {"key": "AKIA", "secret": "s3cr3t"}
    with pytest.raises(ConfigError, match="path or URI of the YAML config file, not a dict"):
        run_mmm_flow(mapping)  # before a run exists: tests/flows/test_credentials.py
    assert CALLS == []


def _manifest(output: Path) -> MMMManifest:
    store = ResultStore(str(output))
    return MMMManifest.from_json(store.read_bytes(f"mmm/r1/{MANIFEST}"), MANIFEST)


def _fitted_by(output: Path) -> dict[str, set[int]]:
    pids: dict[str, set[int]] = {}
    for line in (output / PIDS_FILE).read_text().splitlines():
        market, pid = line.split(": ")
        pids.setdefault(market, set()).add(int(pid))
    return pids


@pytest.mark.usefixtures("prefect_api")
def test_markets_fan_out_to_worker_processes_and_publish(config_path, tmp_path) -> None:
    from flows.mmm_flow import run_mmm_flow

    summary = run_mmm_flow(config_path, workers=2)

    assert summary.counts.converged == 2
    manifest = _manifest(tmp_path / "out")
    assert {m.market for m in manifest.markets} == {"DE", "FR"}
    fitted_by = _fitted_by(tmp_path / "out")
    assert set(fitted_by) == {"DE", "FR"}
    assert os.getpid() not in set().union(*fitted_by.values())  # fitted in worker processes
    assert CALLS == []  # nothing sampled in this process
    store = ResultStore(str(tmp_path / "out"))
    assert store.exists("mmm/r1/staged/plan.json")
    assert not read_lease(store, "mmm/r1").held  # released after publishing


@pytest.mark.usefixtures("prefect_api")
def test_a_second_run_of_a_held_run_id_is_refused_and_force_takes_it_over(
    config_path, tmp_path
) -> None:
    from flows.mmm_flow import run_mmm_flow

    store = ResultStore(str(tmp_path / "out"))
    holder = lease_run(store, "r1", run_id="other-run", settle=0.0, heartbeat=False)

    state = run_mmm_flow(config_path, return_state=True)

    assert state.is_failed()
    with pytest.raises(RunLocked, match=r"media-mix run r1 in .* run other-run on host .*--force"):
        state.result()
    assert store.list("mmm/r1") == ["mmm/r1/lease.json"]  # nothing staged, fitted or published
    assert CALLS == []

    summary = run_mmm_flow(config_path, force=True)

    assert summary.counts.converged == 2
    lease = read_lease(store, "mmm/r1")
    assert lease is not None
    assert lease.taken_over_ids == (holder.run_id,)


@pytest.fixture
def served_batch_deployment(prefect_api: object, tmp_path: Path) -> Iterator[str]:
    """``mmm-fit-batch/local``, served by a runner subprocess that runs each flow run."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    api_url = str(get_current_settings().api.url)
    code = (
        "from tests.mmm.fake_mmm_fits import fake_mmm_fit_batch\n"
        "fake_mmm_fit_batch.serve(name='local', limit=2)"
    )
    log = tmp_path / "runner.log"
    with log.open("wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PREFECT_API_URL": api_url, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("mmm-fit-batch/local")
                    break
                except Exception:
                    assert runner.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.25)
        yield "mmm-fit-batch/local"
    finally:
        os.killpg(runner.pid, 15)
        runner.wait(timeout=30)


def test_markets_fan_out_as_flow_runs_of_the_batch_deployment(
    served_batch_deployment: str, config_path, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    import flows.mmm_flow
    from flows.dispatch import fit_on_deployment
    from flows.mmm_flow import run_mmm_flow

    # the run waits for its batch flow runs polling every 0.5 s, not 5 s (seconds per wait)
    monkeypatch.setattr(
        flows.mmm_flow,
        "fit_on_deployment",
        functools.partial(fit_on_deployment, poll_seconds=0.5),
    )

    summary = run_mmm_flow(config_path, fit_deployment=served_batch_deployment, batch_size=1)

    assert summary.counts.converged == 2
    with get_client(sync_client=True) as client:  # by id: the server is shared with other tests
        deployment_id = client.read_deployment_by_name(served_batch_deployment).id
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    assert len(runs) == 2  # one flow run per market (batch_size=1)
    assert {run.state.type.value for run in runs} == {"COMPLETED"}
    assert all(run.parameters["run_id"] for run in runs)  # fits are fenced by the lease
    assert all(
        "storage_options" not in run.parameters or not run.parameters["storage_options"]
        for run in runs
    )
    fitted_by = _fitted_by(tmp_path / "out")
    assert set(fitted_by) == {"DE", "FR"}
    assert os.getpid() not in set().union(*fitted_by.values())
    assert {m.market for m in _manifest(tmp_path / "out").markets} == {"DE", "FR"}
