"""The wave's fit task and ``fit-batch`` flow with a sampler that samples nothing.

For the plumbing tests of the fan-out (worker processes, deployments, the command line): the
sampler is not what they test, and real MCMC made them take minutes. ``fit_without_mcmc`` is
``flows.tasks.fit_model`` and ``fit_batch_without_mcmc`` is ``flows.fit_batch.fit_batch``, run
with ``NO_MCMC`` as the sampler backends: staging, records, lease checks and events are the
production ones; the posterior is the conjugate one of each model's cells (``support``), seeded
per model as a real fit is (``spec_seed``), so the same model fitted anywhere gives the same
estimates. Statistical recovery is tested with real sampling in tests/mrp.

Imported by its full name (``tests.flows.no_mcmc_fits``) in the worker processes of a process
fan-out (they unpickle the task by reference), and loaded from its path as a deployment's
entrypoint in the flow-run subprocesses a Prefect worker starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from prefect import flow, task
from tests.support import conjugate_posterior, fake_backends

from flows.fit_batch import fit_batch
from flows.tasks import fit_model, fit_task_name, retry_infrastructure_only
from misterp.mrp import model
from misterp.mrp.model import spec_seed
from misterp.records import FitSummary

#: Backends that sample nothing: each model's conjugate posterior, with the model's own seed.
NO_MCMC = fake_backends(
    lambda spec, counts, sampler: conjugate_posterior(
        counts, sampler, spec_seed(spec, sampler.random_seed)
    )
)


@contextmanager
def without_mcmc() -> Iterator[None]:
    """Fits in this process (``workers: 1``, or a pool worker's task) use ``NO_MCMC``."""
    with mock.patch.dict(model.BACKENDS, NO_MCMC):
        yield


@task(
    task_run_name=fit_task_name,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_infrastructure_only,
)
def fit_without_mcmc(
    output: str,
    wave: str,
    key: str,
    storage_options: dict[str, Any],
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """``flows.tasks.fit_model`` with ``NO_MCMC``, in whichever process runs the task."""
    with without_mcmc():
        return fit_model.fn(output, wave, key, storage_options, cores=cores, run_id=run_id)


@flow(name="fit-batch")
def fit_batch_without_mcmc(
    output: str,
    wave: str,
    keys: list[str],
    storage_options: dict[str, Any] | None = None,
    workers: int | None = None,
    run_id: str | None = None,
) -> dict[str, int]:
    """``flows.fit_batch.fit_batch`` with ``NO_MCMC`` (its fits run in this process when
    ``workers`` is 1)."""
    with without_mcmc():
        return fit_batch.fn(output, wave, keys, storage_options, workers, run_id)
