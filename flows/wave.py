"""The tracking-wave flows: ``run-wave`` (validate, plan, stage, fit, publish) and ``rerun-wave``.

Only wiring lives here: the steps are the tasks of ``flows.tasks``, the fan-out is
``flows.dispatch``. Both flows end Completed when every model converged and Failed (after
publishing, with the estimates flagged) when some did not, so a cron run shows red.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Failed

from flows.dispatch import DEFAULT_BATCH_SIZE, fit_in_processes, fit_on_deployment
from flows.tasks import (
    open_staged,
    prepare,
    publish,
    report_health,
    report_wave,
    stage,
    track,
)
from misterp.config import ConfigError, WaveConfig, check_wave_id, load_config, parse_config
from misterp.fitstore import RefitPlan, plan_refits
from misterp.health import WaveHealth
from misterp.lease import WaveLease, acquire_lease
from misterp.mrp.prepare import PreparedWave
from misterp.mrp.wave import WaveOutcome
from misterp.records import WaveRunSummary
from misterp.storage import ResultStore, credential_options, without_credentials

__all__ = ["DEFAULT_BATCH_SIZE", "read_config", "rerun_wave", "resolve_config", "run_wave"]


def fit_planned(
    prepared: PreparedWave,
    plan: RefitPlan,
    fit_deployment: str | None,
    batch_size: int,
    run_id: str | None = None,
) -> None:
    """Run the planned fits locally or on the ``fit-batch`` deployment.

    ``run_id``: the run holding the wave's lease; every fit checks it before writing.
    """
    if not plan.to_fit:
        return
    config = prepared.config
    units = prepared.fit_units(plan.to_fit)  # a joint family is one fit
    if fit_deployment:
        fit_on_deployment(
            fit_deployment,
            config.output,
            prepared.wave_id,
            units,
            config.storage_options,
            config.workers,
            batch_size,
            run_id=run_id,
        )
    else:
        fit_in_processes(
            config.output,
            prepared.wave_id,
            units,
            config.storage_options,
            config.workers,
            run_id=run_id,
        )


def take_wave_lease(store: ResultStore, wave: str, force: bool) -> WaveLease:
    """Take the wave's lease for this flow run; ``WaveLocked`` while another run holds it.

    The lease names the flow run, so whoever finds the wave locked can look that run up.
    """
    from prefect.runtime import flow_run

    note = f"prefect flow run {flow_run.name} ({flow_run.id})" if flow_run.id else None
    lease = acquire_lease(store, wave, force=force, note=note)
    get_run_logger().info("wave %s: lease taken, run id %s", wave, lease.run_id)
    return lease


def refuse_credentials_in_parameters(config: str | dict[str, Any]) -> None:
    """Stop a run whose config, passed as a mapping, carries storage credentials.

    Run parameters are stored in Prefect's database, where everyone with the UI or the API
    reads them. By the time the flow runs they are stored already, so this run's copy is
    overwritten without the credentials before it stops. A config passed as a path is fine:
    only the path is a parameter.
    """
    if not isinstance(config, dict):
        return
    found = credential_options(config.get("storage_options") or {})
    if not found:
        return
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.id:
        with get_client(sync_client=True) as client:
            stored = dict(client.read_flow_run(flow_run.id).parameters)
            if isinstance(stored.get("config"), dict):
                options = stored["config"].get("storage_options") or {}
                stored["config"] = stored["config"] | {
                    "storage_options": without_credentials(options)
                }
            client.update_flow_run(flow_run.id, parameters=stored)
    raise ConfigError(
        f"config storage_options hold credentials ({', '.join(found)}), and a config passed "
        "as a mapping is a run parameter, stored in Prefect's database for anyone with the UI "
        "to read (this run's copy was removed). Put credentials in the environment "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a Kubernetes Secret), not in the "
        "config passed as a run parameter; or pass the config as a file path"
    )


def read_config(config: str | dict[str, Any] | WaveConfig) -> WaveConfig:
    """A config from a path/URI, a mapping or an object, ``{wave}`` not yet substituted."""
    if isinstance(config, WaveConfig):
        return config
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def resolve_config(
    config: str | dict[str, Any] | WaveConfig,
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
) -> WaveConfig:
    """A config from a path/URI, a mapping or an object, with run-time overrides applied."""
    return read_config(config).resolved(wave=wave, input=input, output=output)


def scheduled_wave_id(lag_months: int = 0) -> str:
    """The wave a scheduled run is for: its scheduled month, ``lag_months`` earlier.

    A cron run on the 3rd of December with lag 1 fits the November wave, and a late or
    retried run still fits November, because the scheduled time, not the clock, decides.
    """
    from prefect.runtime import flow_run

    start: dt.datetime = flow_run.scheduled_start_time
    months = start.year * 12 + (start.month - 1) - lag_months
    return f"{months // 12:04d}-{months % 12 + 1:02d}"


def _finish(outcome: WaveOutcome, plan: RefitPlan, health: WaveHealth) -> WaveRunSummary | State:
    """Completed when every model converged; otherwise Failed, after publishing.

    A wave with failed or not converged models is published (its estimates flagged) but its
    run ends Failed, so a cron user sees red in the UI and a retry of the run refits only those.
    """
    get_run_logger().info("wave %s published to %s", outcome.wave_id, outcome.output_uri)
    summary = WaveRunSummary(
        wave=outcome.wave_id,
        output=outcome.output_uri,
        counts=outcome.counts,
        fitted=len(plan.to_fit),
        reused=len(plan.reused),
        headline=health.headline(),
    )
    if health.healthy:
        return summary
    return Failed(message=f"{health.headline()}; see the wave-health artifact", data=summary)


@flow(name="run-wave")
def run_wave(
    config: str | dict[str, Any],
    input: str | None = None,
    output: str | None = None,
    wave: str | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    refit_all: bool = False,
    wave_lag_months: int = 0,
    force: bool = False,
) -> WaveRunSummary | State:
    """Run one tracking wave end to end and return its summary.

    Converged fits already in the store with the same spec, data and settings are reused, so
    retrying a wave run (from the UI or the CLI) refits only what is missing or failed.

    Parameters
    ----------
    config
        Path or URI of the YAML config, or the config as a mapping.
    input, output
        Override the config's input and output URIs.
    wave
        Wave id (substituted for ``{wave}``); default: the config's, else the month of the
        run's scheduled start minus ``wave_lag_months``.
    fit_deployment
        ``flow/deployment`` name of a ``fit-batch`` deployment to run the fits on (one flow
        run per batch); default: worker processes of this run.
    batch_size
        Models per ``fit-batch`` flow run.
    refit_all
        Fit every model again, even converged ones whose inputs did not change.
    wave_lag_months
        For scheduled runs: how many months before the scheduled start the wave is.
    force
        Take the wave's lease over from another run that looks alive (it is dead, but its
        lease is not stale yet); that run's later writes are refused.
    """
    refuse_credentials_in_parameters(config)
    logger = get_run_logger()
    started = time.perf_counter()
    parsed = read_config(config)
    if wave is None and parsed.wave is None:
        wave = scheduled_wave_id(wave_lag_months)
    prepared = prepare(parsed.resolved(wave=wave, input=input, output=output))
    store = ResultStore(prepared.config.output, prepared.config.storage_options)
    # Validation writes nothing, so the lease is taken once the input is known to be good.
    with take_wave_lease(store, prepared.wave_id, force) as lease:
        plan = stage(prepared, refit_all)
        logger.info(
            "wave %s: %d models over %d markets; %s",
            prepared.wave_id,
            len(prepared.specs),
            len(prepared.layouts),
            plan.summary(),
        )
        fit_planned(prepared, plan, fit_deployment, batch_size, lease.run_id)
        outcome = publish(prepared, started, lease.run_id)
        outcome.tracking = track(
            prepared.config.output, prepared.wave_id, prepared.config.storage_options
        )
        # After tracking (it reads the changes and trends); never fails the run.
        outcome.report = report_wave(
            prepared.config.output, prepared.wave_id, prepared.config.storage_options
        )
    return _finish(outcome, plan, report_health(outcome))


@flow(name="rerun-wave")
def rerun_wave(
    wave: str,
    output: str | None = None,
    config: str | None = None,
    fit_deployment: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    force: bool = False,
) -> WaveRunSummary | State:
    """Refit only the models of a staged wave that are missing, failed or not converged.

    Works from what the first run staged in ``output`` (config, cells, counts); the raw input
    is not read again, so the re-run fits exactly the data the first run planned.

    Parameters
    ----------
    wave
        Wave id to re-run.
    output
        Results root URI the wave was written to; default: the config's output.
    config
        Path or URI of the wave's YAML config, read for its output and storage options. Run
        parameters are stored in Prefect's database, so storage options never travel as one;
        credentials come from the environment (``AWS_*``) or the config file.
    fit_deployment, batch_size, force
        As for ``run-wave``.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    storage_options: dict[str, Any] = {}
    if config is not None:
        resolved = resolve_config(config, output=output, wave=wave)
        output, storage_options = resolved.output, dict(resolved.storage_options)
    if not output:
        raise ConfigError("rerun-wave needs output (the results root URI) or config")
    check_wave_id(wave)
    prepared = open_staged(output, wave, storage_options)
    store = ResultStore(output, storage_options)
    with take_wave_lease(store, wave, force) as lease:
        plan = plan_refits(store, wave, prepared.planned_fits(), prepared.settings_hash)
        logger.info("re-run of wave %s: %s", wave, plan.summary())
        fit_planned(prepared, plan, fit_deployment, batch_size, lease.run_id)
        outcome = publish(prepared, started, lease.run_id)
        outcome.tracking = track(output, wave, storage_options)
        outcome.report = report_wave(output, wave, storage_options)
    return _finish(outcome, plan, report_health(outcome))
