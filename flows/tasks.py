"""The Prefect tasks around a wave's fits and its artifacts: one fit, a lost fit, health, report.

The pipeline's steps run as tasks through :mod:`flows.steps`; the tasks here are the fan-out's
(one fit per task run) and what a flow shows on its run (health, the report's headline).

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
from misterp.config import ConfigError
from misterp.health import RunHealth
from misterp.lease import LeaseLost, RunLocked
from misterp.mrp.specs import FormulaError
from misterp.mrp.validation import InputValidationError
from misterp.records import FitSummary, RecordError
from misterp.reporting.write import ReportOutcome, ReportStepOutcome
from misterp.storage import UnsafePathError

if TYPE_CHECKING:
    from misterp.mrp.wave import WaveOutcome
    from misterp.reporting.mmm_report import MMMReportOutcome

__all__ = [
    "fit_model",
    "record_lost",
    "report_health",
    "retry_infrastructure_only",
    "show_health",
    "show_mmm_report",
    "show_report",
    "show_wave_report",
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
        RunLocked,
        UnsafePathError,
    ):
        return False
    except Exception:
        return True
    return False


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
    from misterp.mrp.wave import fit_staged  # here: a media-mix worker never imports Bambi

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
    from misterp.mrp.wave import record_lost_fit

    summary = record_lost_fit(output, wave, key, reason, storage_options, run_id=run_id)
    emit_fit_event(wave, summary)
    return summary


def show_health(health: RunHealth, output_uri: str, *, family: str = "wave") -> None:
    """Show a run's health as artifacts and emit the event the alerts listen to.

    ``family``: ``wave`` (artifact ``wave-health-W``) or ``mmm`` (``mmm-health-RUN``).
    """
    key = artifact_key(f"{family}-health", health.run)
    create_table_artifact(
        key=key,
        table=health.rows(),
        description=f"misterp {health.subject} {health.run}: every model, problems first",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown=health.to_markdown(),
        description=health.headline(),
    )
    emit_wave_event(health, output_uri, family=family)


@task
def report_health(outcome: WaveOutcome) -> RunHealth:
    """Show the wave's health as artifacts and emit the wave event the alerts listen to."""
    show_health(outcome.health, outcome.output_uri)
    return outcome.health


def show_wave_report(outcome: ReportOutcome | None, wave: str) -> None:
    """Show a wave's written report on the flow run: its headline and a link to the page.

    The report itself is the page in the store; the artifacts summarise and link.
    """
    if outcome is not None:
        show_report(
            outcome,
            kind="wave",
            name=wave,
            what=f"wave {wave}",
            headline="headline estimates and their change",
            page="the analyst report (index.html, tables.xlsx)",
        )


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
