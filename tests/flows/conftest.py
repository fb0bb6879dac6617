"""One real Prefect API (Prefect's test harness: a temporary server) for every flow test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server for the session, shared with the fit worker processes.

    Started once (about 10 s on two cores) instead of once per module. Flows and fan-outs
    share it with their workers through ``PREFECT_API_URL``, restored afterwards.
    """
    from prefect.testing.utilities import prefect_test_harness

    saved = os.environ.get("PREFECT_API_URL")
    with prefect_test_harness(server_startup_timeout=180):
        yield
    if saved is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = saved
