"""The media-mix flows: ``mmm`` (validate, fit every market, publish) and ``mmm-rerun-failed``.

Wiring only: the work is :func:`misterp.mmm.run.run_mmm`, which fits the markets in local
processes of the flow-run pod and reuses every converged market whose data and settings did not
change. That reuse is the re-run: ``mmm-rerun-failed`` runs an existing run id again, so only
its failed, not converged (or changed) markets are refitted. Both end Completed when every
market converged and Failed (after publishing, flagged) otherwise, so a cron run shows red.
Reading the input is a task with infrastructure retries (an S3 hiccup); the fits are not: the
retry policy inside ``run_mmm`` owns statistical retries.
"""

from __future__ import annotations

from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.states import Failed
from pydantic import BaseModel, ConfigDict

from flows.wave import refuse_credentials_in_parameters
from misterp.errors import ConfigError
from misterp.mmm.config import MMMConfig, load_mmm_config, parse_mmm_config
from misterp.mmm.run import run_folder, run_mmm
from misterp.mmm.validation import MMMData, read_mmm_input
from misterp.records import StatusCounts
from misterp.storage import ResultStore

__all__ = ["MMMRunSummary", "read_mmm_config", "rerun_failed_mmm", "run_mmm_flow"]


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


def _fit_and_publish(
    config: MMMConfig, workers: int | None, refit_all: bool
) -> MMMRunSummary | State:
    logger = get_run_logger()
    data = validate_input(config)
    outcome = run_mmm(config, workers=workers, refit_all=refit_all, data=data)
    logger.info("%s; written to %s", outcome.headline, outcome.output_uri)
    summary = MMMRunSummary(
        run=outcome.run, output=outcome.output_uri, counts=outcome.counts, headline=outcome.headline
    )
    if outcome.counts.healthy:
        return summary
    return Failed(message=f"{outcome.headline}; see diagnostics.parquet", data=summary)


@flow(name="mmm")
def run_mmm_flow(
    config: str | dict[str, Any],
    output: str | None = None,
    workers: int | None = None,
    refit_all: bool = False,
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
        Markets fitted at once in processes; default: the config's, else one per 2 cores.
    refit_all
        Refit converged markets whose data and settings did not change.
    """
    refuse_credentials_in_parameters(config)
    return _fit_and_publish(read_mmm_config(config, output), workers, refit_all)


@flow(name="mmm-rerun-failed")
def rerun_failed_mmm(
    config: str,
    run: str,
    output: str | None = None,
    workers: int | None = None,
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
    output, workers
        As for ``mmm``.
    """
    parsed = read_mmm_config(config, output).model_copy(update={"run": run})
    store = ResultStore(parsed.output, parsed.storage_options)
    if not store.list(f"{run_folder(run)}/fits"):
        raise ConfigError(
            f"no media-mix run {run} in {store.uri('mmm')} (no fits/ folder): start the mmm "
            "deployment for it instead, or give the run id of an existing run"
        )
    return _fit_and_publish(parsed, workers, refit_all=False)
