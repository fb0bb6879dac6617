"""The process fan-out survives a worker killed under a fit (the OOM killer, ``kill -9``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fake_fits import FIT_LOG, FLAKY, KILLER, RECORDED, fan_out
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterName,
)

from flows.dispatch import WORKER_LOST_TWICE, batch_parameters
from misterp.status import FitStatus


def test_a_fit_that_kills_its_worker_fails_alone_and_the_others_complete(
    prefect_api: None,
) -> None:
    keys = ["DE/q1/a", "DE/q1/b", KILLER, "DE/q2/a", "DE/q2/b", "DE/q3/a"]
    RECORDED.clear()

    state = fan_out(keys, workers=2, return_state=True)
    summaries = state.result()  # a broken pool would raise here

    by_key = {summary.key: summary for summary in summaries}
    assert sorted(by_key) == sorted(keys)
    assert len(summaries) == len(keys)  # each fit reported once, also those retried
    assert by_key[KILLER].status is FitStatus.FAILED
    assert by_key[KILLER].error == WORKER_LOST_TWICE
    assert WORKER_LOST_TWICE.startswith("worker process died (signal 9?) twice")
    assert {s.status for k, s in by_key.items() if k != KILLER} == {FitStatus.CONVERGED}
    assert [call["key"] for call in RECORDED] == [KILLER]
    assert RECORDED[0]["reason"] == WORKER_LOST_TWICE
    # The UI shows the killed attempts ended, not running forever.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(any_=[f"fit {KILLER}"]),
                flow_run_id=TaskRunFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert [run.state.type.value for run in runs if run.state] == ["CRASHED", "CRASHED"]


def test_batch_parameters_carry_no_credentials() -> None:
    options = {
        "key": "AKIA-planted",
        "secret": "planted-secret",
        "token": "planted-token",
        "client_kwargs": {"endpoint_url": "http://s3:9000", "aws_secret_access_key": "planted"},
        "config_kwargs": {"connect_timeout": 5},
    }

    parameters = batch_parameters("s3://b/results", "2026-10", ["DE/q/a"], options, 2, "run-1")

    assert parameters["storage_options"] == {
        "client_kwargs": {"endpoint_url": "http://s3:9000"},
        "config_kwargs": {"connect_timeout": 5},
    }
    assert "planted" not in repr(parameters)
    assert parameters["keys"] == ["DE/q/a"]
    assert parameters["run_id"] == "run-1"


def test_fits_that_share_a_task_run_with_a_killer_are_neither_lost_nor_fitted_twice(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four fits per task run: the fits done before the worker died keep their summaries,
    the one running is retried alone, and those not started run again in a fresh pool."""
    log = tmp_path / "fits.log"
    monkeypatch.setenv(FIT_LOG, str(log))
    first = ["DE/q1/a", "DE/q1/b", KILLER, "DE/q1/c"]
    second = ["DE/q2/a", "DE/q2/b", "DE/q2/c", "DE/q2/d"]
    RECORDED.clear()

    state = fan_out(first + second, workers=2, per_task=4, return_state=True)
    summaries = state.result()

    assert sorted(s.key for s in summaries) == sorted(first + second)
    by_key = {summary.key: summary for summary in summaries}
    assert by_key[KILLER].error == WORKER_LOST_TWICE
    assert {s.status for k, s in by_key.items() if k != KILLER} == {FitStatus.CONVERGED}
    assert [call["key"] for call in RECORDED] == [KILLER]
    started = Counter(log.read_text().split())
    assert started["DE/q1/a"] == started["DE/q1/b"] == 1  # done before the killer: kept
    assert started[KILLER] == 2  # with its task run, then alone
    assert started["DE/q1/c"] == 1  # queued behind the killer: started once, in a fresh pool
    # The other worker goes down with the pool: its running fit is retried alone, its
    # finished ones are kept and its queued ones run in the fresh pool (how far it got
    # depends on when each worker started).
    assert all(started[key] in (1, 2) for key in second)
    assert sum(started[key] == 2 for key in second) <= 1
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_=KILLER),
                flow_run_id=TaskRunFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert sorted((run.name, run.state.type.value) for run in runs if run.state) == [
        (f"fit {KILLER}", "CRASHED"),  # alone, the second time
        (f"fit {', '.join(first)}", "CRASHED"),
    ]


def test_a_task_run_retried_after_a_store_outage_refits_only_what_was_not_done(
    prefect_api: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect retries a task run after an infrastructure fault; its fits that had finished
    are not fitted again, and every fit is reported once."""
    log = tmp_path / "fits.log"
    monkeypatch.setenv(FIT_LOG, str(log))
    keys = ["DE/q1/a", "DE/q1/b", FLAKY, "DE/q1/c"]

    summaries = fan_out(keys, workers=1, per_task=4)

    assert [summary.key for summary in summaries] == keys
    assert {summary.status for summary in summaries} == {FitStatus.CONVERGED}
    assert Counter(log.read_text().split()) == {"DE/q1/a": 1, "DE/q1/b": 1, FLAKY: 2, "DE/q1/c": 1}
