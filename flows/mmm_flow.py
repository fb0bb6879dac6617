"""The media-mix flows: ``mmm`` (validate, fit every market, publish) and ``mmm-rerun-failed``.

Wiring only, the tracker's way: validate, take the run's lease (``OUTPUT/mmm/RUN/lease.json``;
a second run of the same run id is refused with ``RunLocked`` naming the holder, ``force``
takes it over), stage every market (:mod:`misterp.mmm.staging`), fan the markets out with
:mod:`flows.dispatch` (one fit task per market in worker processes by default; with
``fit_deployment``, batches of markets as flow runs of the ``mmm-fit-batch`` deployment, a pod
each), then publish, manifest last. A market whose worker or pod was lost is recorded failed.
Converged markets whose data and settings did not change are reused; that reuse is the re-run:
``mmm-rerun-failed`` runs an existing run id again, so only its failed, not converged (or
changed) markets are refitted. Both end Completed when every market converged and Failed
(after publishing, flagged) otherwise, so a cron run shows red. Prefect retries only
infrastructure; the retry ladder inside each fit owns statistical retries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefect import State, get_run_logger
from prefect.states import Failed
from pydantic import BaseModel, ConfigDict

from flows.config_flow import config_path_flow
from flows.dispatch import fit_in_processes, fit_on_deployment
from flows.mmm_tasks import MMM_RERUN
from flows.steps import PrefectSteps
from flows.tasks import show_mmm_report
from flows.wave import lease_note
from misterp.config import check_storage_options
from misterp.errors import ConfigError
from misterp.mmm.config import MMMConfig, load_mmm_config
from misterp.mmm.staging import run_folder
from misterp.pipeline.mmm import (
    MMMRun,
    ReportedMMMRun,
    reported,
    run_mmm_steps,
    validate_mmm_run,
)
from misterp.pipeline.sequence import FanOut
from misterp.records import StatusCounts
from misterp.storage import ResultStore

__all__ = [
    "DEFAULT_MMM_BATCH_SIZE",
    "MMMRunSummary",
    "read_mmm_config",
    "rerun_failed_mmm",
    "run_mmm_flow",
    "run_summary",
]

#: Markets per ``mmm-fit-batch`` flow run: one, since one market's four chains fill a pod.
DEFAULT_MMM_BATCH_SIZE = 1


class MMMRunSummary(BaseModel):
    """What a media-mix flow run returns (its result in the UI)."""

    model_config = ConfigDict(frozen=True)

    run: str
    output: str
    counts: StatusCounts
    headline: str
    #: Markets whose estimates are flagged (not converged or failed), in run order.
    flagged: tuple[str, ...] = ()
    #: How the report step ended: ``written`` (at ``report_index``) or ``failed`` (why).
    report_status: str | None = None
    report_index: str | None = None
    report_message: str | None = None


def run_summary(outcome: ReportedMMMRun) -> MMMRunSummary:
    """What the flow run returns of a published, reported run."""
    diagnostics = outcome.diagnostics
    report = outcome.report
    flagged: list[object] = (
        list(diagnostics.loc[diagnostics["status"] != "converged", "market"])
        if len(diagnostics)
        else []
    )
    return MMMRunSummary(
        run=outcome.run,
        output=outcome.output_uri,
        counts=outcome.counts,
        headline=outcome.headline,
        flagged=tuple(str(market) for market in flagged),
        report_status=report.status if report is not None else None,
        report_index=report.index if report is not None else None,
        report_message=report.message if report is not None else None,
    )


def read_mmm_config(config: str, output: str | None = None) -> MMMConfig:
    """The config at a path or URI, with the output overridden if given."""
    parsed = load_mmm_config(config)
    if not output:
        return parsed
    check_storage_options(parsed.storage_options, (parsed.input, output))
    return parsed.model_copy(update={"output": output})


def dispatch_fan_out(
    workers: int | None, fit_deployment: str | None, batch_size: int
) -> FanOut[MMMRun]:
    """The flows' fan-out: markets in worker processes or on ``mmm-fit-batch``.

    The fit task is resolved at call time (not bound at import) so a test can swap in a fit
    that samples nothing; the deployment's pods run :mod:`flows.mmm_fit_batch`.
    """

    def fit_units(run: MMMRun, units: Sequence[str], run_id: str) -> None:
        from flows import mmm_tasks

        config = run.config
        if fit_deployment:
            fit_on_deployment(
                fit_deployment,
                config.output,
                run.run,
                list(units),
                config.storage_options,
                workers or config.workers,
                batch_size,
                run_id=run_id,
            )
        else:
            fit_in_processes(
                config.output,
                run.run,
                list(units),
                config.storage_options,
                workers or config.workers,
                run_id,
                fit=mmm_tasks.fit_mmm_market,
                record=mmm_tasks.record_lost_mmm_market,
                rerun=MMM_RERUN.format(run=run.run),
            )

    return fit_units


def _run(
    config: MMMConfig,
    workers: int | None,
    refit_all: bool,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_MMM_BATCH_SIZE,
    force: bool = False,
) -> MMMRunSummary | State:
    """The pipeline with each step a task and the markets fanned out; artifacts and state after."""
    from flows.mmm_tasks import show_mmm_health

    logger = get_run_logger()
    started = time.perf_counter()
    steps = run_mmm_steps(
        lambda: validate_mmm_run(config, refit_all=refit_all, started=started),
        fan_out=dispatch_fan_out(workers, fit_deployment, batch_size),
        steps=PrefectSteps("mmm", f"media-mix run {config.run or ''}".strip()),
        force=force,
        note=lease_note(),
    )
    outcome = reported(steps)
    logger.info("%s; written to %s", outcome.headline, outcome.output_uri)
    show_mmm_report(outcome.report)  # ROAS per market and a link to the page, on the run
    show_mmm_health(outcome)
    summary = run_summary(outcome)
    if outcome.counts.healthy:
        return summary
    return Failed(
        message=f"{outcome.headline}; see the mmm-health artifact or health.md", data=summary
    )


@config_path_flow(name="mmm")
def run_mmm_flow(
    config: str,
    output: str | None = None,
    workers: int | None = None,
    refit_all: bool = False,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_MMM_BATCH_SIZE,
    force: bool = False,
) -> MMMRunSummary | State:
    """Validate the input, fit one media-mix model per market and publish (manifest last).

    Parameters
    ----------
    config
        Path or URI of the YAML config, never the config itself: run parameters are stored
        in Prefect's database, and a config's storage options may hold credentials (anything
        else is refused before a run exists: ``flows.config_flow``).
    output
        Override the config's results root.
    workers
        Markets fitted at once in processes (of this run, or of each batch pod); default: the
        config's, else one per CPU the process sees.
    refit_all
        Refit converged markets whose data and settings did not change.
    fit_deployment
        ``flow/deployment`` name of an ``mmm-fit-batch`` deployment to fit the markets on (one
        flow run, a pod in production, per batch); default: worker processes of this run.
    batch_size
        Markets per ``mmm-fit-batch`` flow run.
    force
        Take the run's lease over from another run of the same run id that looks alive (it is
        dead, but its lease is not stale yet); that run's later writes are refused.
    """
    return _run(
        read_mmm_config(config, output), workers, refit_all, fit_deployment, batch_size, force
    )


@config_path_flow(name="mmm-rerun-failed")
def rerun_failed_mmm(
    config: str,
    run: str,
    output: str | None = None,
    workers: int | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_MMM_BATCH_SIZE,
    force: bool = False,
) -> MMMRunSummary | State:
    """Refit only the failed or not converged markets of an existing run, and publish it again.

    Converged markets whose data and settings are unchanged are reused from ``fits/``; a market
    whose data changed since is refitted too (its old fit no longer describes the data).

    Parameters
    ----------
    config
        Path or URI of the run's YAML config (a path only: it may name storage options).
    run
        The run id to re-run (``OUTPUT/mmm/RUN/``).
    output, workers, fit_deployment, batch_size, force
        As for ``mmm``.
    """
    parsed = read_mmm_config(config, output).model_copy(update={"run": run})
    store = ResultStore(parsed.output, parsed.storage_options)
    if not store.list(f"{run_folder(run)}/fits"):
        raise ConfigError(
            f"no media-mix run {run} in {store.uri('mmm')} (no fits/ folder): start the mmm "
            "deployment for it instead, or give the run id of an existing run"
        )
    return _run(parsed, workers, False, fit_deployment, batch_size, force)
