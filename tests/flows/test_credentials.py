"""Storage credentials never reach Prefect's database: not as run parameters, logs or events."""

from __future__ import annotations

import inspect
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow

from flows.dispatch import fit_on_deployment
from flows.wave import rerun_wave, run_wave
from misterp.config import ConfigError
from misterp.mrp.config import parse_config
from support import PrefectServer

#: Secret-looking values planted in storage options; none may appear anywhere in the API.
SECRETS = ("AKIAPLANTEDKEYID0000", "planted/secret+value/0000", "planted-session-token")
PLANTED_OPTIONS: dict[str, Any] = {
    "key": SECRETS[0],
    "secret": SECRETS[1],
    "token": SECRETS[2],
    "client_kwargs": {"endpoint_url": "http://127.0.0.1:1", "aws_secret_access_key": SECRETS[1]},
}


def _all_pages(read: Callable[..., list[Any]]) -> list[Any]:
    """Every item ``read(limit=, offset=)`` returns, page by page (the server is shared)."""
    items: list[Any] = []
    while page := read(limit=200, offset=len(items)):
        items += page
    return items


def _everything_the_api_stores() -> str:
    """Every flow run, task run, log and event the API holds, as one JSON text."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        stored = [run.model_dump(mode="json") for run in _all_pages(client.read_flow_runs)]
        stored += [run.model_dump(mode="json") for run in _all_pages(client.read_task_runs)]
        stored += [log.model_dump(mode="json") for log in _all_pages(client.read_logs)]
        page = client.read_events(limit=50)
        stored += [event.model_dump(mode="json") for event in page.events]
        while page.next_page:
            page = client.read_events_page(page.next_page)
            stored += [event.model_dump(mode="json") for event in page.events]
    return json.dumps(stored)


def _assert_no_secrets(stored: str) -> None:
    for secret in SECRETS:
        assert secret not in stored
        assert json.dumps(secret)[1:-1] not in stored  # also as escaped in JSON text


@pytest.mark.parametrize("wave_flow", [run_wave, rerun_wave], ids=["run-wave", "rerun-wave"])
def test_the_wave_flows_take_a_config_path_and_no_storage_options(wave_flow: Any) -> None:
    parameters = inspect.signature(wave_flow.fn).parameters

    assert "storage_options" not in parameters
    # a path or URI: never a mapping or an object that could carry credentials
    assert parameters["config"].annotation in ("str", "str | None")
    schema = wave_flow.parameters.properties["config"]  # what a deployment's server enforces
    assert {branch["type"] for branch in schema.get("anyOf", [schema])} <= {"string", "null"}


def test_a_parsed_config_never_serialises_its_storage_options() -> None:
    # Prefect stores a flow's parameters as their JSON; a parsed config passed as one must
    # leave its credentials behind, and so must every record that dumps the config
    parsed = parse_config(
        {
            "input": "s3://bucket/input",
            "output": "s3://bucket/results",
            "demographics": ["gender"],
            "storage_options": {"key": "AKIA-planted", "secret": "s3cr3t"},
        }
    )
    assert parsed.storage_options["key"] == "AKIA-planted"  # kept in memory for the store
    assert "AKIA-planted" not in parsed.model_dump_json()
    assert "storage_options" not in parsed.model_dump(mode="json")


def _complete_batches(deployment_id: UUID, expected: int, stop: threading.Event) -> None:
    """Play the worker: end every batch flow run of the deployment Completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.states import Completed

    done: set[UUID] = set()
    with get_client(sync_client=True) as client:
        while len(done) < expected and not stop.is_set():
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            for run in runs:
                if run.id not in done:
                    client.set_flow_run_state(run.id, Completed(), force=True)
                    done.add(run.id)
            time.sleep(0.2)


def test_fit_batch_runs_dispatched_by_a_wave_store_no_credentials(prefect_api: None) -> None:
    from prefect.client.orchestration import get_client

    from flows.fit_batch import fit_batch

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(fit_batch)
        deployment_id = client.create_deployment(
            flow_id=flow_id, name="credentials-test", entrypoint="flows/fit_batch.py:fit_batch"
        )
    keys = [f"DE/q{number}/yes" for number in range(5)]

    @flow
    def wave_dispatch() -> dict[str, str]:  # no parameters: the options live in the closure
        return fit_on_deployment(
            "fit-batch/credentials-test",
            "s3://bucket/results",
            "2026-10",
            keys,
            PLANTED_OPTIONS,
            workers=2,
            batch_size=2,
            poll_seconds=0.2,
        )

    stop = threading.Event()
    worker = threading.Thread(target=_complete_batches, args=(deployment_id, 3, stop))
    worker.start()
    try:
        states = wave_dispatch()
    finally:
        stop.set()
        worker.join(timeout=30)

    assert list(states.values()) == ["COMPLETED"] * 3  # ceil(5 / 2) batches
    stored = _everything_the_api_stores()
    _assert_no_secrets(stored)
    with get_client(sync_client=True) as client:
        batches = [
            run for run in client.read_flow_runs(limit=200) if run.deployment_id == deployment_id
        ]
    assert len(batches) == 3
    assert all(
        run.parameters["storage_options"]
        == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}}
        for run in batches
    )


ENTRYPOINTS = {"wave": "flows/wave.py:run_wave", "mmm": "flows/mmm_flow.py:run_mmm_flow"}


def _files_holding(home: Path, secret: str) -> list[str]:
    """The files under the Prefect server's home (database, WAL, logs) that hold ``secret``."""
    return sorted(
        str(path.relative_to(home))
        for path in home.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    )


@pytest.mark.parametrize("family", ["wave", "mmm"])
def test_a_config_mapping_with_a_secret_is_refused_before_any_flow_run_exists(
    prefect_api: PrefectServer, family: str
) -> None:
    """A mapping never becomes a run: not by a call, not through a deployment (issue 26).

    The secret once reached ``prefect.db-wal`` twice (the run was created with its parameters,
    then refused), although the API showed it removed.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows.mmm_flow import run_mmm_flow

    secret = f"planted-{uuid.uuid4().hex}"
    config = {
        "input": "s3://bucket/input/{wave}",
        "output": "s3://bucket/results",
        "demographics": ["age_band"],
        "storage_options": {"client_kwargs": {"aws_secret_access_key": secret}},
    }
    if family == "mmm":
        config = {key: config[key] for key in ("output", "storage_options")} | {"input": "in"}
    target = run_wave if family == "wave" else run_mmm_flow
    with get_client(sync_client=True) as client:
        runs_before = len(_all_pages(client.read_flow_runs))

    with pytest.raises(ConfigError, match="path or URI of the YAML config") as called:
        target(config=config)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(target)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"credentials-{secret[-8:]}",
            entrypoint=ENTRYPOINTS[family],
            parameter_openapi_schema=target.parameters.model_dump(),
        )
    # the server checks the deployment's parameter schema (config: string) before a run
    with pytest.raises(Exception, match="409"):
        run_deployment(deployment_id, parameters={"config": config}, timeout=0)

    assert secret not in str(called.value)
    with get_client(sync_client=True) as client:
        assert len(_all_pages(client.read_flow_runs)) == runs_before  # no run was created
    assert _files_holding(prefect_api.home, secret) == []
