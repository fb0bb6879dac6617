"""``prefect deploy --all`` on a real local ``prefect server`` accepts deployments/prefect.yaml.

Run the way the README says: create the Kubernetes pool from the repository's base job template,
then deploy every deployment with the image from ``$MISTERP_IMAGE``. The server must end up with
the schedules, limits, parameters and job variables the file promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.wave import DEFAULT_BATCH_SIZE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "registry.example.com/misterp:ci"


def test_prefect_deploy_all_accepts_the_deployments_file(prefect_client_settings: Any) -> None:
    from prefect.client.orchestration import get_client

    server = prefect_client_settings
    pool = server.cli(
        "work-pool",
        "create",
        "misterp-k8s",
        "--type",
        "kubernetes",
        "--base-job-template",
        "deployments/work-pools/kubernetes.json",
        "--overwrite",
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr

    deployed = server.cli(
        "deploy", "--prefect-file", "deployments/prefect.yaml", "--all", MISTERP_IMAGE=IMAGE
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    with get_client(sync_client=True) as client:
        wave = client.read_deployment_by_name("run-wave/tracking-wave")
        batch = client.read_deployment_by_name("fit-batch/fit-batch")
        rerun = client.read_deployment_by_name("rerun-wave/rerun-failed")
        mmm = client.read_deployment_by_name("mmm/mmm")
        mmm_rerun = client.read_deployment_by_name("mmm-rerun-failed/mmm-rerun-failed")
        mmm_batch = client.read_deployment_by_name("mmm-fit-batch/mmm-fit-batch")
        created_pool = client.read_work_pool("misterp-k8s")

    assert created_pool.type == "kubernetes"
    for deployment in (wave, batch, rerun, mmm, mmm_rerun, mmm_batch):
        assert deployment.work_pool_name == "misterp-k8s"
        assert deployment.job_variables["image"] == IMAGE
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/misterp"}}
        ]

    # the monthly schedule, in the team's timezone, active
    (schedule,) = wave.schedules
    assert schedule.active
    assert schedule.schedule.cron == "0 5 3 * *"
    assert schedule.schedule.timezone == "Europe/Berlin"
    # parameters the flow's signature accepts, batches pointed at the fit-batch deployment
    assert wave.parameters["fit_deployment"] == "fit-batch/fit-batch"
    assert wave.parameters["batch_size"] == DEFAULT_BATCH_SIZE
    assert set(wave.parameters) <= set(wave.parameter_openapi_schema["properties"])
    assert {"output", "wave", "keys"} <= set(batch.parameter_openapi_schema["required"])
    assert set(rerun.parameter_openapi_schema["required"]) == {"wave"}
    # credentials never travel as run parameters: no flow takes storage options but fit-batch,
    # which is given them without credentials
    # the weekly media-mix run; its re-run is told which run to repair
    (weekly,) = mmm.schedules
    assert weekly.active
    assert weekly.schedule.cron == "0 6 * * 1"
    assert set(mmm_rerun.parameter_openapi_schema["required"]) == {"config", "run"}
    for deployment in (wave, rerun, mmm, mmm_rerun):
        assert "storage_options" not in deployment.parameter_openapi_schema["properties"]
    # pods bounded by the deployment's limit, as documented
    assert batch.global_concurrency_limit is not None
    assert batch.global_concurrency_limit.limit == _declared_limit("fit-batch")
    assert batch.job_variables["cpu_limit"] == "2"
    # media-mix markets fan out like the tracker's fits, one market per pod by default
    for deployment in (mmm, mmm_rerun):
        assert deployment.parameters["fit_deployment"] == "mmm-fit-batch/mmm-fit-batch"
        assert set(deployment.parameters) <= set(deployment.parameter_openapi_schema["properties"])
    assert {"output", "wave", "keys"} <= set(mmm_batch.parameter_openapi_schema["required"])
    assert mmm_batch.global_concurrency_limit is not None
    assert mmm_batch.global_concurrency_limit.limit == _declared_limit("mmm-fit-batch")


def _declared_limit(name: str) -> int:
    declared = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    return int(next(d for d in declared["deployments"] if d["name"] == name)["concurrency_limit"])
