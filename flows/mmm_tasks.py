"""The Prefect tasks around a media-mix run's fits: one market, a lost market, the health.

The pipeline's steps (validate, stage, publish, report) run as tasks through :mod:`flows.steps`.

``fit_mmm_market`` and ``record_lost_mmm_market`` follow the fan-out's contract
(:mod:`flows.dispatch`): ``wave`` is the run id and ``key`` the market, so a media-mix run fans
out exactly like a wave, in worker processes or as ``mmm-fit-batch`` flow runs. Statistical
retries happen inside the fit (the retry ladder); Prefect retries only infrastructure.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from flows.alerts import emit_fit_event
from flows.tasks import fit_task_name, retry_infrastructure_only, show_health
from misterp.mmm.pooled import POOLED_KEY
from misterp.mmm.run import MMMRunOutcome
from misterp.mmm.staging import (
    read_staged_run,
    run_folder,
)
from misterp.mmm.worker import (
    fit_staged_market,
    fit_staged_pooled,
    market_summary,
    record_lost_market,
)
from misterp.records import FitSummary
from misterp.storage import ResultStore

__all__ = [
    "MMM_RERUN",
    "fit_mmm_market",
    "record_lost_mmm_market",
    "show_mmm_health",
]


#: How to refit only a run's failed markets (the deployment ``mmm-rerun-failed`` does the same).
MMM_RERUN = "misterp mmm run --config CONFIG (run {run}: converged markets are reused)"


@task(
    task_run_name=fit_task_name,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def fit_mmm_market(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """Fit market ``key`` of the staged media-mix run ``wave``; alert if it did not converge.

    ``key`` ``POOLED_KEY`` fits every market as one pooled model: one event per market, and the
    summary of the pooled fit under that key.
    """
    if key == POOLED_KEY:
        records = fit_staged_pooled(output, wave, storage_options, cores=cores, run_id=run_id)
        for record in records.values():
            emit_fit_event(run_folder(wave), market_summary(record))
        first = next(iter(records.values()))
        return market_summary(first).model_copy(update={"key": POOLED_KEY})
    record = fit_staged_market(output, wave, key, storage_options, cores=cores, run_id=run_id)
    summary = market_summary(record)
    emit_fit_event(run_folder(wave), summary)
    return summary


@task(
    task_run_name="record lost {key}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def record_lost_mmm_market(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    reason: str,
    run_id: str | None = None,
) -> FitSummary:
    """Record a market whose worker process died as failed, so the diagnostics explain it.

    ``key`` ``POOLED_KEY``: every market of the pooled fit is recorded failed.
    """
    markets = (
        list(read_staged_run(ResultStore(output, storage_options), wave).markets)
        if key == POOLED_KEY
        else [key]
    )
    records = [
        record_lost_market(output, wave, market, reason, storage_options, run_id=run_id)
        for market in markets
    ]
    for record in records[1:]:
        emit_fit_event(run_folder(wave), market_summary(record))
    record = records[0]
    summary = market_summary(record)
    if key == POOLED_KEY:
        summary = summary.model_copy(update={"key": POOLED_KEY})
    emit_fit_event(run_folder(wave), summary)
    return summary


@task
def show_mmm_health(outcome: MMMRunOutcome) -> None:
    """Show the run's health (every market, problems first) and emit the run-finished event."""
    show_health(outcome.health, outcome.output_uri, family="mmm")
