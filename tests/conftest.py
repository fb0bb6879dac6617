"""Shared fixtures: slow-test switches, a real local S3 endpoint, one real Prefect server.

Both servers are started once per session and shared by every test that needs them: moto
(about 2 s) by the first such test, ``prefect server start`` (about 12 s on two cores) as soon
as the tests are collected, in the background.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import PREFECT, PrefectServer, free_port, stop_group

# Keep PyTensor's compile cache and Prefect's home out of the user's dotfiles but stable
# across runs of the suite, so the first compile is paid once per machine.
os.environ.setdefault("PREFECT_HOME", str(Path(__file__).parent.parent / ".cache" / "prefect"))
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "misterp")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Store credentials for the local S3 endpoint (moto accepts any), from the environment as a
# pod gets them from its Secret: never in storage options that become run parameters.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--only-slow", action="store_true", help="run only tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow") or config.getoption("--only-slow")
    only_slow = config.getoption("--only-slow")
    skip_slow = pytest.mark.skip(reason="slow: pass --run-slow")
    skip_fast = pytest.mark.skip(reason="fast test skipped by --only-slow")
    for item in items:
        slow = "slow" in item.keywords
        if slow and not run_slow:
            item.add_marker(skip_slow)
        if only_slow and not slow:
            item.add_marker(skip_fast)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API over HTTP on 127.0.0.1 (moto in server mode), for the whole session."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("moto server did not start")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> tuple[str, dict[str, object]]:
    """A fresh bucket on the local S3 endpoint, and the fsspec storage options to reach it.

    As in production, the options name the endpoint only; credentials come from the
    environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, set for the whole session).
    """
    import s3fs

    options: dict[str, object] = {"client_kwargs": {"endpoint_url": s3_endpoint}}
    fs = s3fs.S3FileSystem(**options)
    name = f"misterp-{uuid.uuid4().hex[:16]}"
    fs.mkdir(name)
    return f"s3://{name}", options


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
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"prefect server not healthy after {seconds} s:\n{log.read_text()[-3000:]}")


def _start_prefect_server() -> tuple[PrefectServer, subprocess.Popen[bytes]]:
    """``prefect server start`` on a free port with its own home and SQLite database."""
    home = Path(tempfile.mkdtemp(prefix="misterp-prefect-server-"))
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", home)
    env = server.env(
        PREFECT_UI_ENABLED="false",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db",
    )
    env.pop("PREFECT_API_URL")
    with (home / "server.log").open("wb") as out:
        process = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the uvicorn child it starts is stopped with it
        )
    return server, process


#: The Prefect server started when collection ended, until ``prefect_server`` claims it.
_EARLY_PREFECT_SERVER: list[tuple[PrefectServer, subprocess.Popen[bytes]]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the Prefect server now if a test that will run needs it.

    It takes about 12 s to start on two cores; started here, that overlaps the tests that run
    before the first one needing it, and ``prefect_server`` only waits for what is left.
    """
    if any(
        "prefect_server" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("skip") is None
        for item in session.items
    ):
        _EARLY_PREFECT_SERVER.append(_start_prefect_server())


def pytest_sessionfinish(session: pytest.Session) -> None:
    for server, process in _EARLY_PREFECT_SERVER:  # started but never used
        stop_group(process)
        shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    """A real ``prefect server start`` for the whole session, with its own home and database.

    Run as a user runs it, services included (the alerts need its triggers and actions).
    Tests share it, so they find their own runs, artifacts and logs by id, never by being the
    only ones there.
    """
    if _EARLY_PREFECT_SERVER:
        server, process = _EARLY_PREFECT_SERVER.pop()
    else:
        server, process = _start_prefect_server()
    try:
        _wait_healthy(server.api_url, process, server.home / "server.log", seconds=240)
        yield server
    finally:
        stop_group(process)
        shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture(scope="session")
def _prefect_settings(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """This process's Prefect client on the session's server, from first use to the end.

    Set as Prefect's global settings too (as Prefect's test harness does), so the threads that
    send logs and events use it.
    """
    import prefect.context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
        prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()),
    ):
        yield prefect_server
        # send what is still queued while the server is up
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all()


@pytest.fixture
def prefect_api(_prefect_settings: PrefectServer) -> Iterator[PrefectServer]:
    """A real Prefect API for this test: the session's server.

    A process fan-out points its workers at the API through ``PREFECT_API_URL`` in this
    process's environment (``flows.dispatch.share_api_with_workers``); it is restored after
    the test, so later subprocesses (``misterp run``) start their own API as a user's would.
    The test's flow-run logs and events are sent before the next test starts.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    saved = os.environ.get("PREFECT_API_URL")
    try:
        yield _prefect_settings
        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all()
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
