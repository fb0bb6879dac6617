"""A real ``prefect server`` and process workers, started as subprocesses like a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


@dataclass(frozen=True)
class PrefectServer:
    """A running server: its API URL, and the environment a CLI or worker needs to reach it."""

    api_url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }
        return env

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``prefect ARGS`` from the repository root against this server."""
        return subprocess.run(
            [PREFECT, "--no-prompt", *args],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    process.kill()
    raise RuntimeError(f"prefect server not healthy after {seconds} s:\n{log.read_text()[-3000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process and everything it started, SIGKILL what is left after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port with its own home and SQLite database."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server = PrefectServer(api_url, home)
    env = server.env(
        PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
    )
    env.pop("PREFECT_API_URL")
    log = home / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the uvicorn child it starts is stopped with it
        )
    try:
        _wait_healthy(api_url, process, log, seconds=240)
        yield server
    finally:
        _stop_group(process)


@pytest.fixture
def prefect_client_settings(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """Point this process's Prefect client at the server (and restore the settings after)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = prefect_server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
            yield prefect_server
            # send this test's flow-run logs while the server is still up
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved


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
        _stop_group(worker)
