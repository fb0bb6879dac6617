"""Shared fixtures: slow-test switches, a real local S3 endpoint, a Prefect test harness."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import free_port

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
