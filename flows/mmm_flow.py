"""The media-mix flows: ``mmm`` (validate, fit every market, publish) and ``mmm-rerun-failed``.

Wiring only, the tracker's way: validate, take the run's lease (``OUTPUT/mmm/RUN/lease.json``;
a second run of the same run id is refused with ``WaveLocked`` naming the holder, ``force``
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
from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.states import Failed
from pydantic import BaseModel, ConfigDict

from flows.dispatch import fit_in_processes, fit_on_deployment
from flows.mmm_tasks import MMM_RERUN
from flows.tasks import show_mmm_report
from flows.wave import refuse_credentials_in_parameters
from misterp.errors import ConfigError
from misterp.lease import WaveLease
from misterp.mmm.config import MMMConfig, load_mmm_config, parse_mmm_config
from misterp.mmm.staging import lease_run, run_folder
from misterp.mmm.validation import MMMData, read_mmm_input
from misterp.records import StatusCounts
from misterp.storage import ResultStore

__all__ = [
    "DEFAULT_MMM_BATCH_SIZE",
    "MMMRunSummary",
    "read_mmm_config",
    "rerun_failed_mmm",
    "run_mmm_flow",
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


def read_mmm_config(config: str | dict[str, Any], output: str | None = None) -> MMMConfig:
    """A config from a path/URI or a mapping, with the output overridden when given."""
    parsed = parse_mmm_config(config) if isinstance(config, dict) else load_mmm_config(config)
    return parsed.model_copy(update={"output": output}) if output else parsed


@task(name="validate-mmm-input", retries=2, retry_delay_seconds=10)
def validate_input(config: MMMConfig) -> MMMData:
    """Read and validate the input (raises with every problem; writes nothing)."""
    return read_mmm_input(config)


def take_run_lease(store: ResultStore, run: str, force: bool) -> WaveLease:
    """Take the run's lease for this flow run; ``WaveLocked`` while another run holds it."""
    from prefect.runtime import flow_run

    note = f"prefect flow run {flow_run.name} ({flow_run.id})" if flow_run.id else None
    lease = lease_run(store, run, force=force, note=note)
    get_run_logger().info("media-mix run %s: lease taken, run id %s", run, lease.run_id)
    return lease


def fit_markets(
    config: MMMConfig,
    run: str,
    markets: list[str],
    workers: int | None,
    fit_deployment: str | None,
    batch_size: int,
    run_id: str,
) -> None:
    """Fit ``markets`` of the staged run in worker processes or on ``mmm-fit-batch``.

    Resolved at call time (not bound at import) so a test can swap in a fit that samples
    nothing; the deployment's pods run :mod:`flows.mmm_fit_batch`.
    """
    from flows import mmm_tasks

    if not markets:
        return
    if fit_deployment:
        fit_on_deployment(
            fit_deployment,
            config.output,
            run,
            markets,
            config.storage_options,
            workers or config.workers,
            batch_size,
            run_id=run_id,
        )
    else:
        fit_in_processes(
            config.output,
            run,
            markets,
            config.storage_options,
            workers or config.workers,
            run_id,
            fit=mmm_tasks.fit_mmm_market,
            record=mmm_tasks.record_lost_mmm_market,
            rerun=MMM_RERUN.format(run=run),
        )


def _fit_and_publish(
    config: MMMConfig,
    workers: int | None,
    refit_all: bool,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_MMM_BATCH_SIZE,
    force: bool = False,
) -> MMMRunSummary | State:
    from flows.mmm_tasks import publish_mmm, show_mmm_health, stage_mmm

    logger = get_run_logger()
    started = time.perf_counter()
    data = validate_input(config)
    run = config.run or str(data.last_week.date())
    store = ResultStore(config.output, config.storage_options)
    # Validation writes nothing, so the lease is taken once the input is known to be good.
    with take_run_lease(store, run, force) as lease:
        to_fit = stage_mmm(config, data, run, refit_all)
        logger.info("media-mix run %s: %d markets to fit", run, len(to_fit))
        fit_markets(config, run, to_fit, workers, fit_deployment, batch_size, lease.run_id)
        outcome = publish_mmm(config, data, run, started, lease.run_id)
    logger.info("%s; written to %s", outcome.headline, outcome.output_uri)
    show_mmm_report(outcome.report)  # ROAS per market and a link to the page, on the run
    show_mmm_health(outcome)
    summary = MMMRunSummary(
        run=outcome.run, output=outcome.output_uri, counts=outcome.counts, headline=outcome.headline
    )
    if outcome.counts.healthy:
        return summary
    return Failed(
        message=f"{outcome.headline}; see the mmm-health artifact or health.md", data=summary
    )


@flow(name="mmm")
def run_mmm_flow(
    config: str | dict[str, Any],
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
        Path or URI of the YAML config (preferred), or the config as a mapping; a mapping with
        credentials in ``storage_options`` is refused (run parameters are stored in Prefect).
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
    refuse_credentials_in_parameters(config)
    return _fit_and_publish(
        read_mmm_config(config, output), workers, refit_all, fit_deployment, batch_size, force
    )


@flow(name="mmm-rerun-failed")
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
    return _fit_and_publish(parsed, workers, False, fit_deployment, batch_size, force)
