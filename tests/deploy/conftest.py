"""Process workers on the session's real ``prefect server`` (tests/conftest.py), started as a
user would start them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import PREFECT, ROOT, PrefectServer, stop_group


@pytest.fixture
def prefect_client_settings(prefect_api: PrefectServer) -> PrefectServer:
    """The session's server, also as ``PREFECT_API_URL`` in this process's environment (as
    a user exports it; ``prefect_api`` restores it after the test)."""
    os.environ["PREFECT_API_URL"] = prefect_api.api_url
    return prefect_api


@pytest.fixture
def process_worker(
    prefect_server: PrefectServer, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """A process work pool and ``prefect worker start`` on it (each flow run a subprocess)."""
    pool = f"misterp-local-{tmp_path.name[-12:]}".replace("_", "-")
    created = prefect_server.cli(
        "work-pool",
        "create",
        pool,
        "--type",
        "process",
        "--base-job-template",
        "deployments/work-pools/process.json",
    )
    assert created.returncode == 0, created.stdout + created.stderr
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--limit", "2"],
            cwd=ROOT,
            # As in a pod: store credentials come from the environment (a Secret), never from
            # run parameters; moto accepts these.
            env=prefect_server.env(
                PREFECT_WORKER_QUERY_SECONDS="1",
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
            ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its flow-run subprocesses stop with it
        )
    try:
        yield pool, worker, log
    finally:
        stop_group(worker, grace_seconds=3)
