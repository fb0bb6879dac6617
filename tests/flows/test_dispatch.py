"""The process fan-out survives a worker killed under a fit (the OOM killer, ``kill -9``)."""

from __future__ import annotations

from fake_fits import KILLER, RECORDED, fan_out
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

from flows.dispatch import WORKER_LOST_TWICE, batch_parameters
from misterp.status import FitStatus


def test_a_fit_that_kills_its_worker_fails_alone_and_the_others_complete(
    prefect_api: None,
) -> None:
    keys = ["DE/q1/a", "DE/q1/b", KILLER, "DE/q2/a", "DE/q2/b", "DE/q3/a"]
    RECORDED.clear()

    summaries = fan_out(keys, workers=2)  # a broken pool would raise here

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
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"fit {KILLER}"]))
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
