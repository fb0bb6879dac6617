"""Production fan-out on this machine: real ``prefect server``, a process pool and worker, S3.

The wave flow dispatches ``fit-batch`` flow runs with ``run_deployment`` exactly as it does on
the Kubernetes pool; here the worker starts each flow run as a local subprocess instead of a
pod. The estimates must be those of the local flow, and a re-run must refit only what is lost.

The fan-out is the subject, not the sampler: the batches run ``fit-batch`` with a sampler that
samples nothing (``tests/flows/no_mcmc_fits.py``, deployed as a user deploys ``fit-batch``),
and so does the local flow; each model is seeded as a real fit is, so the estimates of the same
model fitted locally or in a batch agree exactly only if the same data and seeds reach it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.flows.no_mcmc_fits import without_mcmc

import flows.wave
from flows.cli import summary_of
from flows.dispatch import fit_on_deployment
from flows.wave import rerun_wave, run_wave
from misterp.mrp.fits import fit_path, read_fit_record
from misterp.mrp.poststratify import SUMMARY_COLUMNS
from misterp.mrp.records import Manifest
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.status import FitStatus
from misterp.storage import MANIFEST, ResultStore
from support import PREFECT, ROOT, config_file

WAVE = "2026-10"
# Plumbing, not statistics: tiny draw counts, thresholds they can meet (so the re-run has
# converged fits to keep); recovery and real thresholds are tested in tests/mrp.
SAMPLER = {"draws": 150, "tune": 150, "chains": 2, "stored_draws": 100}
CONVERGENCE = {"r_hat_max": 1.3, "ess_bulk_min": 10, "ess_tail_min": 10, "divergences_max": 5}
ESTIMATE_COLUMNS = list(SUMMARY_COLUMNS)
ID_COLUMNS = ["market", "question_id", "option", "target_group"]

#: Models per ``fit-batch`` flow run: 8 models make a full and a partial batch, both at once
#: on the worker (its limit is 2).
BATCH_SIZE = 5

pytestmark = pytest.mark.slow


def _wave_config(bucket: str, options: dict[str, object], results: str) -> dict[str, Any]:
    wave = simulate_wave(
        5,
        WaveTruthSpec(
            markets=("DE",),
            brands=("brand01", "brand02"),
            n_respondents=400,
            rare_brand="brand02",
            association_options=("innovative", "trustworthy"),
        ),
    )
    wave.write(f"{bucket}/input/{WAVE}", storage_options=options)
    config = wave.config(f"{bucket}/input/{{wave}}", f"{bucket}/{results}")
    return config | {
        "storage_options": options,
        "sampler": SAMPLER,
        "convergence": CONVERGENCE,
        "retry": {"max_attempts": 1},
        "workers": 1,
    }


def _start_deploying_fit_batch(server: Any, pool: str) -> subprocess.Popen[str]:
    """``prefect deploy`` the fit-batch flow to the process pool, as a user would locally.

    The flow is ``fit-batch`` with a sampler that samples nothing (``fit_batch_without_mcmc``).
    Started in the background: it imports the flow (about 15 s) while the local flow runs.
    """
    return subprocess.Popen(
        [
            PREFECT,
            "--no-prompt",
            "deploy",
            "tests/flows/no_mcmc_fits.py:fit_batch_without_mcmc",
            "--name",
            "local",
            "--pool",
            pool,
        ],
        cwd=ROOT,
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _deployed(deploying: subprocess.Popen[str]) -> str:
    output, _ = deploying.communicate(timeout=300)
    assert deploying.returncode == 0, output
    return "fit-batch/local"


def _batch_runs(deployment: str) -> list[Any]:
    """The flow runs of ``deployment`` (by id: the server is shared with other tests)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _estimates(store: ResultStore) -> pd.DataFrame:
    frame = store.read_parquet(f"{WAVE}/estimates.parquet")
    return frame.sort_values(ID_COLUMNS).reset_index(drop=True)


def test_fan_out_matches_the_local_flow_and_a_rerun_refits_only_lost_fits(
    prefect_client_settings: Any,
    process_worker: tuple[str, subprocess.Popen[bytes], Path],
    s3_bucket: tuple[str, dict[str, object]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool, worker, worker_log = process_worker
    bucket, options = s3_bucket
    # the wave waits for its batch flow runs polling every 0.5 s, not 5 s (seconds per wait)
    monkeypatch.setattr(
        flows.wave, "fit_on_deployment", functools.partial(fit_on_deployment, poll_seconds=0.5)
    )
    deploying = _start_deploying_fit_batch(prefect_client_settings, pool)

    local_config = _wave_config(bucket, options, "results-local")
    config_path = tmp_path / "wave.yaml"  # what a re-run reads its storage options from
    with without_mcmc():  # the fits of the local flow run in this process (workers: 1)
        local = summary_of(
            run_wave(
                config=config_file(tmp_path / "local.yaml", local_config),
                wave=WAVE,
                return_state=True,
            )
        )
    deployment = _deployed(deploying)

    config = local_config | {"output": f"{bucket}/results"}
    config_path.write_text(yaml.safe_dump(config | {"wave": WAVE}))
    started = time.perf_counter()
    summary = summary_of(
        run_wave(
            config=str(config_path),
            wave=WAVE,
            fit_deployment=deployment,
            batch_size=BATCH_SIZE,
            return_state=True,
        )
    )
    fan_out_seconds = time.perf_counter() - started
    assert worker.poll() is None, worker_log.read_text()[-3000:]

    n_models = local.counts.models
    assert n_models == 8
    assert summary.counts == local.counts
    assert summary.fitted == n_models
    assert summary.counts.converged >= n_models // 2, summary
    runs = _batch_runs(deployment)
    assert len(runs) == -(-n_models // BATCH_SIZE) == 2  # batches, one flow run (pod) each
    assert {run.state.type.value for run in runs} == {"COMPLETED"}, worker_log.read_text()[-3000:]
    assert all(run.parent_task_run_id is not None for run in runs), "batches not under the wave"

    store = ResultStore(f"{bucket}/results", options)
    local_store = ResultStore(f"{bucket}/results-local", options)
    assert store.is_complete(WAVE)
    fanned, reference = _estimates(store), _estimates(local_store)
    pd.testing.assert_frame_equal(fanned[ID_COLUMNS], reference[ID_COLUMNS])
    np.testing.assert_allclose(
        fanned[ESTIMATE_COLUMNS].to_numpy(float),
        reference[ESTIMATE_COLUMNS].to_numpy(float),
        rtol=1e-9,
    )

    # A lost pod: two fits never recorded. A fit that failed: its record says so. Fits that
    # did not converge are refitted too (with these tiny draws there may be some).
    models = Manifest.from_json(store.read_bytes(f"{WAVE}/{MANIFEST}"), MANIFEST).models
    keys = sorted(model.key for model in models)
    not_converged = {m.key for m in models if m.status is not FitStatus.CONVERGED}
    converged = sorted(set(keys) - not_converged)
    lost, failed = converged[:2], converged[-1]
    for key in lost:
        store.remove(fit_path(WAVE, key, "json"))
        store.remove(fit_path(WAVE, key, "npy"))
    record = read_fit_record(store, WAVE, failed)
    assert record is not None
    failed_record = record.model_copy(update={"status": FitStatus.FAILED})
    store.write_bytes(fit_path(WAVE, failed, "json"), failed_record.to_json())
    before = {key: read_fit_record(store, WAVE, key) for key in keys}

    started = time.perf_counter()
    rerun = summary_of(
        rerun_wave(
            output=f"{bucket}/results",
            wave=WAVE,
            config=str(config_path),
            fit_deployment=deployment,
            batch_size=BATCH_SIZE,
            return_state=True,
        )
    )
    rerun_seconds = time.perf_counter() - started

    expected = {*lost, failed} | not_converged
    assert rerun.fitted == len(expected)
    assert rerun.reused == n_models - len(expected)
    assert len(_batch_runs(deployment)) == len(runs) + -(-len(expected) // BATCH_SIZE)
    after = {key: read_fit_record(store, WAVE, key) for key in keys}
    fit_ids = {key: record.fit_id for key, record in after.items() if record is not None}
    refitted = {key for key in keys if before[key] is None or before[key].fit_id != fit_ids[key]}
    assert refitted == expected
    assert store.is_complete(WAVE)
    manifest = Manifest.from_json(store.read_bytes(f"{WAVE}/{MANIFEST}"), MANIFEST)
    assert len(manifest.models) == n_models
    assert {m.key: m.fit_id for m in manifest.models} == fit_ids
    # same seeds, same data: the refits reproduce the first fits exactly
    np.testing.assert_allclose(
        _estimates(store)[ESTIMATE_COLUMNS].to_numpy(float),
        reference[ESTIMATE_COLUMNS].to_numpy(float),
        rtol=1e-9,
    )
    print(
        json.dumps(
            {
                "models": n_models,
                "batch_flow_runs": len(runs),
                "fan_out_seconds": round(fan_out_seconds, 1),
                "converged": len(converged),
                "rerun_refitted": sorted(refitted),
                "rerun_seconds": round(rerun_seconds, 1),
            }
        )
    )
