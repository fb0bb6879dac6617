"""The ``mmm-fit-batch`` flow: one pod (or local process) fitting a batch of a run's markets.

The ``mmm`` flow dispatches batches here with ``run_deployment`` (:func:`flows.dispatch.
fit_on_deployment`), exactly as a wave dispatches ``fit-batch``. The parameter names are the
fan-out's contract: ``wave`` is the media-mix run id and ``keys`` are its markets. Inside, the
markets are fitted in worker processes; each writes its record as soon as it is done, so a pod
lost midway loses only its unfinished markets, which a re-run refits.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger

from flows.dispatch import fit_in_processes
from flows.mmm_tasks import MMM_RERUN, fit_mmm_market, record_lost_mmm_market


@flow(name="mmm-fit-batch")
def mmm_fit_batch(
    output: str,
    wave: str,
    keys: list[str],
    storage_options: dict[str, Any] | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """Fit markets ``keys`` of the media-mix run ``wave`` staged in ``output``; counts by status.

    Parameters
    ----------
    output
        Results root URI the run was staged in (``OUTPUT/mmm/RUN/staged/``).
    wave
        The media-mix run id (named as in ``fit-batch``: the fan-out's contract).
    keys
        Markets to fit.
    storage_options
        fsspec options for the store without credentials (those come from the environment).
    workers
        Parallel fit processes in this pod; default: all CPUs the process sees.
    run_id
        The run holding the run's lease; a fit whose run lost it writes nothing.
    """
    summaries = fit_in_processes(
        output,
        wave,
        keys,
        storage_options or {},
        workers,
        run_id,
        fit=fit_mmm_market,
        record=record_lost_mmm_market,
        rerun=MMM_RERUN.format(run=wave),
    )
    counts = Counter(summary.status.value for summary in summaries)
    get_run_logger().info("batch of %d markets: %s", len(keys), dict(counts))
    return dict(counts)
