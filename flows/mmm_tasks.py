"""The Prefect tasks of a media-mix run: each wraps one step of ``misterp.mmm`` with I/O retries.

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
from misterp.mmm.config import MMMConfig
from misterp.mmm.model import prepare_market
from misterp.mmm.pooled import POOLED_KEY
from misterp.mmm.run import MMMRunOutcome, publish_run
from misterp.mmm.staging import (
    open_staged_market,
    read_staged_run,
    run_folder,
    stage_run,
    staged_config,
)
from misterp.mmm.validation import MMMData
from misterp.mmm.worker import (
    LOST_MARKET,
    current_records,
    fit_staged_market,
    fit_staged_pooled,
    market_summary,
    markets_to_fit,
    record_lost_market,
)
from misterp.records import FitSummary
from misterp.storage import ResultStore

__all__ = [
    "MMM_RERUN",
    "fit_mmm_market",
    "publish_mmm",
    "record_lost_mmm_market",
    "show_mmm_health",
    "stage_mmm",
]


#: How to refit only a run's failed markets (the deployment ``mmm-rerun-failed`` does the same).
MMM_RERUN = "misterp mmm run --config CONFIG (run {run}: converged markets are reused)"


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def stage_mmm(config: MMMConfig, data: MMMData, run: str, refit_all: bool) -> list[str]:
    """Retract the run, stage every market's prepared input, and say which markets to fit."""
    store = ResultStore(config.output, config.storage_options)
    markets = [m for m in data.markets if config.markets is None or m in config.markets]
    inputs = {market: prepare_market(data, market, config) for market in markets}
    store.retract(run_folder(run))  # an interrupted run must never look complete
    staged = stage_run(
        store,
        run,
        config,
        inputs,
        dropped=data.dropped,
        input_hashes=data.input_hashes,
        notes=data.notes,
        refit_all=refit_all,
    )
    return markets_to_fit(store, staged, config)


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


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def publish_mmm(
    config: MMMConfig, data: MMMData, run: str, started: float, run_id: str
) -> MMMRunOutcome:
    """Read every market's current record (a lost one is recorded failed), then publish.

    Reads the staged inputs back, so the tables describe exactly what the workers fitted.
    """
    store = ResultStore(config.output, config.storage_options)
    staged = read_staged_run(store, run)
    inputs = {m: open_staged_market(store, run, m, staged) for m in staged.markets}
    found = current_records(store, staged, staged_config(staged, config.output))
    records = {
        market: record
        if record is not None
        else record_lost_market(
            config.output, run, market, LOST_MARKET, config.storage_options, run_id=run_id
        )
        for market, record in found.items()
    }
    return publish_run(config, store, run, data, inputs, records, started, run_id=run_id)


@task
def show_mmm_health(outcome: MMMRunOutcome) -> None:
    """Show the run's health (every market, problems first) and emit the run-finished event."""
    show_health(outcome.health, outcome.output_uri, family="mmm")
