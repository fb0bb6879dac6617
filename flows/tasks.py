"""The Prefect tasks of a wave: each wraps one step of ``misterp.mrp`` and adds retries on I/O.

Prefect's task retries are for infrastructure only (a store timing out): statistical retries
(stronger sampler settings) happen inside the fit, and invalid input fails at once.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from flows.alerts import emit_fit_event, emit_wave_event
from misterp.config import ConfigError, WaveConfig
from misterp.fitstore import RefitPlan, plan_refits, read_current_fits
from misterp.health import WaveHealth
from misterp.lease import LeaseLost, WaveLocked
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.specs import FormulaError
from misterp.mrp.staging import open_staged_wave, stage_wave
from misterp.mrp.validation import InputValidationError
from misterp.mrp.wave import WaveOutcome, fit_staged, publish_wave, record_lost_fit
from misterp.records import FitSummary, RecordError
from misterp.reporting.write import ReportOutcome, ReportStepOutcome, update_report
from misterp.storage import ResultStore, UnsafePathError
from misterp.tracking.update import TrackingOutcome, update_tracking

if TYPE_CHECKING:
    from misterp.reporting.mmm_report import MMMReportOutcome

__all__ = [
    "fit_model",
    "open_staged",
    "prepare",
    "publish",
    "record_lost",
    "report_health",
    "report_wave",
    "show_health",
    "show_mmm_report",
    "show_report",
    "stage",
    "track",
]

logger = logging.getLogger(__name__)


def artifact_key(prefix: str, wave: str) -> str:
    """An artifact key for a wave: Prefect allows lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{wave}".lower())


def fit_task_name() -> str:
    """Task-run name: the model's key, so the UI lists fits by what they model."""
    from prefect.runtime import task_run

    return f"fit {task_run.parameters.get('key', '')}".strip()


def retry_infrastructure_only(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an S3 timeout or a lost connection, never input that is simply wrong."""
    try:
        state.result()
    except (
        InputValidationError,
        ConfigError,
        FormulaError,
        RecordError,
        FileNotFoundError,
        LeaseLost,
        WaveLocked,
        UnsafePathError,
    ):
        return False
    except Exception:
        return True
    return False


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def prepare(config: WaveConfig) -> PreparedWave:
    """Read, validate and plan the wave."""
    return prepare_wave(config)


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def stage(prepared: PreparedWave, refit_all: bool) -> RefitPlan:
    """Write the prepared cells to the store once and decide which models need a fit."""
    store = ResultStore(prepared.config.output, prepared.config.storage_options)
    stage_wave(prepared, store)
    return plan_refits(
        store,
        prepared.wave_id,
        prepared.planned_fits(),
        prepared.settings_hash,
        refit_all=refit_all,
    )


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def open_staged(output: str, wave: str, storage_options: dict[str, Any]) -> PreparedWave:
    """Read a staged wave back from the store (for a re-run)."""
    return open_staged_wave(output, wave, storage_options)


@task(
    task_run_name=fit_task_name,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def fit_model(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """Fit one model of a staged wave, record it in the store, alert if it did not converge."""
    summary = fit_staged(output, wave, key, storage_options, cores=cores, run_id=run_id)
    emit_fit_event(wave, summary)
    return summary


@task(
    task_run_name="record lost {key}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def record_lost(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    reason: str,
    run_id: str | None = None,
) -> FitSummary:
    """Record a fit whose worker process died as failed, so the wave's health explains it."""
    summary = record_lost_fit(output, wave, key, reason, storage_options, run_id=run_id)
    emit_fit_event(wave, summary)
    return summary


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_infrastructure_only)
def publish(prepared: PreparedWave, started: float, run_id: str | None = None) -> WaveOutcome:
    """Read every current fit record, then write estimates and draws, and the manifest last."""
    store = ResultStore(prepared.config.output, prepared.config.storage_options)
    fits = read_current_fits(
        store, prepared.wave_id, prepared.planned_fits(), prepared.settings_hash
    )
    return publish_wave(prepared, fits, started_at=started, run_id=run_id)


@task(task_run_name="track {wave}")
def track(output: str, wave: str, storage_options: dict[str, Any]) -> TrackingOutcome:
    """Compute the wave's changes.parquet and refresh the trend table, after publication.

    No retries and no failure: ``update_tracking`` never raises, it logs and records a
    problem in ``OUTPUT/WAVE/tracking.json``, and the published wave stays complete (a re-run
    of the wave recomputes both).
    """
    return update_tracking(ResultStore(output, storage_options), wave)


def show_health(health: WaveHealth, output_uri: str, *, family: str = "wave") -> None:
    """Show a run's health as artifacts and emit the event the alerts listen to.

    ``family``: ``wave`` (artifact ``wave-health-W``) or ``mmm`` (``mmm-health-RUN``).
    """
    key = artifact_key(f"{family}-health", health.wave)
    create_table_artifact(
        key=key,
        table=health.rows(),
        description=f"misterp {health.subject} {health.wave}: every model, problems first",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=health.to_markdown(),
        description=health.headline(),
    )
    emit_wave_event(health, output_uri, family=family)


@task
def report_health(outcome: WaveOutcome) -> WaveHealth:
    """Show the wave's health as artifacts and emit the wave event the alerts listen to."""
    show_health(outcome.health, outcome.output_uri)
    return outcome.health


@task(task_run_name="report {wave}")
def report_wave(output: str, wave: str, storage_options: dict[str, Any]) -> ReportOutcome:
    """Write the wave's report after tracking; show its headline and a link on the run.

    No retries and no failure, as for tracking: ``update_report`` never raises (it logs and
    records ``OUTPUT/WAVE/report.json``), and the artifacts are a convenience, so a Prefect
    API that refuses them costs a log line, not the published wave. The artifacts summarise
    and link; the report itself is the page in the store.
    """
    outcome = update_report(ResultStore(output, storage_options), wave)
    show_report(
        outcome,
        kind="wave",
        name=wave,
        what=f"wave {wave}",
        headline="headline estimates and their change",
        page="the analyst report (index.html, tables.xlsx)",
    )
    return outcome


def show_report(
    outcome: ReportStepOutcome, *, kind: str, name: str, what: str, headline: str, page: str
) -> None:
    """Show a written report on the flow run: its headline as a table and a link to the page.

    For a wave (``kind="wave"``) and a media-mix run (``kind="mmm"``); the keys are
    ``KIND-headline-NAME`` and ``KIND-report-NAME``; ``what`` names it in the descriptions.
    The artifacts are a convenience: a failed report shows none, and a Prefect API that refuses
    them costs a log line, never the run.
    """
    if outcome.status != "written" or outcome.link is None:
        return
    try:
        if outcome.headline:
            create_table_artifact(
                key=artifact_key(f"{kind}-headline", name),
                table=list(outcome.headline),
                description=f"misterp {what}: {headline}",
            )
        create_link_artifact(
            key=artifact_key(f"{kind}-report", name),
            link=outcome.link,
            link_text=f"report of {what}",
            description=f"misterp {what}: {page}",
        )
    except Exception as exc:
        logger.warning("%s: report artifacts not created: %s: %s", what, type(exc).__name__, exc)


def show_mmm_report(outcome: MMMReportOutcome | None) -> None:
    """Show a media-mix run's report on the flow run: ROAS per market, and a link to the page."""
    if outcome is not None:
        show_report(
            outcome,
            kind="mmm",
            name=outcome.run,
            what=f"media-mix run {outcome.run}",
            headline="ROAS per market, channels best first, with their intervals",
            page="the media-mix report (index.html and its CSVs)",
        )
