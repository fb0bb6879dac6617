"""The ``fit-batch`` flow: one pod (or local process) fitting a batch of a staged wave's models.

The wave flow dispatches batches here with ``run_deployment``. Inside, the batch's fits run in
parallel worker processes; each writes its record to the store as soon as it is done, so a
pod that is lost midway loses only its unfinished fits, which a re-run then picks up.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger

from flows.dispatch import fit_in_processes


@flow(name="fit-batch")
def fit_batch(
    output: str,
    wave: str,
    keys: list[str],
    storage_options: dict[str, Any] | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """Fit ``keys`` of the wave staged in ``output``; returns models per status.

    Parameters
    ----------
    output
        Results root URI the wave was staged in.
    wave
        Wave id.
    keys
        Model keys (``market/question/option``) to fit.
    storage_options
        fsspec options for the store without credentials (those come from the environment).
    workers
        Parallel fit processes in this pod; default: all CPUs the process sees.
    run_id
        The run holding the wave's lease; a fit whose run lost the wave writes nothing.
    """
    summaries = fit_in_processes(output, wave, keys, storage_options or {}, workers, run_id)
    counts = Counter(summary.status.value for summary in summaries)
    get_run_logger().info("batch of %d models: %s", len(keys), dict(counts))
    return dict(counts)
