"""A store that stays unreachable ends the run with one error naming the store, not a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.wave import run_wave
from misterp.storage import ResultStore, StoreUnavailable
from support import PLUMBING, WAVE, config_file, free_port, small_wave_config

BUCKET = "s3://misterp-unreachable/results"


def _unreachable_options() -> dict[str, Any]:
    """An S3 endpoint nothing listens on, with short timeouts and no botocore retries."""
    return {
        "anon": True,
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
    }


@pytest.mark.parametrize(
    "operation",
    [
        lambda store: store.write_bytes("2026-10/lease.json", b"{}"),
        lambda store: store.read_bytes("2026-10/manifest.json"),
        lambda store: store.exists("2026-10/manifest.json"),
        lambda store: store.list("2026-10/fits"),
        lambda store: store.remove("2026-10/manifest.json"),
    ],
    ids=["write", "read", "exists", "list", "remove"],
)
def test_an_unreachable_store_raises_store_unavailable_naming_it(
    operation: Callable[[ResultStore], object],
) -> None:
    store = ResultStore(BUCKET, _unreachable_options())
    started = time.perf_counter()

    with pytest.raises(StoreUnavailable, match=f"^store {BUCKET} is unavailable") as raised:
        operation(store)

    assert raised.value.uri == BUCKET
    assert type(raised.value.cause).__name__ == "EndpointConnectionError"
    assert raised.value.__suppress_context__  # the library's traceback is not chained on
    assert time.perf_counter() - started < 30  # botocore's retries off: no minutes of backoff


def test_a_missing_file_is_still_file_not_found(
    s3_bucket: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    bucket, options = s3_bucket
    for store in (ResultStore(f"{bucket}/results", options), ResultStore(str(tmp_path))):
        with pytest.raises(FileNotFoundError):
            store.read_bytes("2026-10/missing.json")
        assert not store.exists("2026-10/missing.json")
        assert store.list("2026-10/fits") == []


def test_a_store_refusing_access_is_unavailable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultStore("memory://misterp-denied/results")

    def denied(*args: object, **kwargs: object) -> bytes:
        raise PermissionError("Access Denied")  # what s3fs makes of a 403

    monkeypatch.setattr(store.fs, "cat_file", denied)

    with pytest.raises(StoreUnavailable, match="PermissionError: Access Denied"):
        store.read_bytes("2026-10/manifest.json")


def test_a_wave_whose_store_is_unreachable_fails_with_one_line_naming_it(
    prefect_api: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    config = small_wave_config(tmp_path, **PLUMBING) | {
        "output": BUCKET,
        "storage_options": _unreachable_options(),
    }

    state = run_wave(
        config=config_file(tmp_path / "wave.yaml", config), wave=WAVE, return_state=True
    )

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, StoreUnavailable)
    assert str(error).startswith(f"store {BUCKET} is unavailable: ")
    assert "\n" not in str(error)
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    text = "\n".join(log.message for log in logs)
    assert f"store {BUCKET} is unavailable" in text
    # The traceback ends at misterp: no frames of the S3 client stack under it.
    assert "aiobotocore" not in text
    assert "botocore/" not in text
