"""Deployment config: the work pool renders valid, locked-down jobs; k8s/ and prefect.yaml agree.

Jobs are rendered with prefect-kubernetes' own code (the path its worker takes for every flow
run: ``from_template_and_values`` then ``prepare_for_flow_run``), so these tests fail when the
template and the worker disagree, not only when a file is malformed. No server, no cluster.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import uuid
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, Mock, patch
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.objects import Flow, FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.schedules import CronSchedule
from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings
from prefect.utilities.schema_tools import validate as validate_job_variables
from prefect.utilities.templating import apply_values, find_placeholders
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

ROOT = Path(__file__).resolve().parents[2]
POOL_TEMPLATE = ROOT / "deployments" / "work-pools" / "kubernetes.json"
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
K8S_DIR = ROOT / "k8s"
EXAMPLE_SECRET = "s3-credentials.example.yaml"

WORK_POOL = "misterp-k8s"
NAMESPACE = "misterp"
FLOW_SERVICE_ACCOUNT = "misterp-flows"
S3_SECRET = "misterp-s3"
DEPLOYMENTS = [
    "tracking-wave",
    "fit-batch",
    "rerun-failed",
    "mmm",
    "mmm-fit-batch",
    "mmm-rerun-failed",
]
IMAGE = "registry.example.com/misterp:test"
FLOW_RUN_ID = uuid.UUID("4d8f7f4e-8c1a-4a57-9d07-2f3b1c6e9a10")
# The oldest Kubernetes minor we claim to run on, and the newest schema kubernetes-validate has.
K8S_VERSIONS = ["1.30", kubernetes_validate.latest_version()]


def _prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _deployment(name: str) -> dict[str, Any]:
    return next(d for d in _prefect_yaml()["deployments"] if d["name"] == name)


def _pool_template() -> dict[str, Any]:
    return json.loads(POOL_TEMPLATE.read_text())


def _job_variables(name: str) -> dict[str, Any]:
    """A deployment's job variables with ``{{ $ENV }}`` resolved the way `prefect deploy` does."""
    raw = _deployment(name)["work_pool"].get("job_variables", {})
    return apply_values(raw, os.environ, remove_notset=False)


def _configuration(
    name: str, extra_job_variables: dict[str, Any] | None = None
) -> KubernetesWorkerJobConfiguration:
    """The job configuration the worker prepares for a flow run of deployment ``name``."""
    values = {**_job_variables(name), **(extra_job_variables or {})}
    # A client without attributes: rendering must not need the Prefect API (no block or
    # variable references in the template), and an attempt to use it fails loudly here.
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            _pool_template(), values, client=Mock(spec=[])
        )
    )
    flow = Flow(name=_flow_name(_deployment(name)["entrypoint"]))
    deployment = DeploymentResponse(name=name, flow_id=flow.id)
    flow_run = FlowRun(
        id=FLOW_RUN_ID, flow_id=flow.id, deployment_id=deployment.id, name="brave-okapi"
    )
    configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=flow)
    return configuration


def _render(name: str, extra_job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job manifest the worker would submit for a flow run of deployment ``name``."""
    return _configuration(name, extra_job_variables).job_manifest


@pytest.fixture(scope="module")
def rendered() -> Iterator[dict[str, dict[str, Any]]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MISTERP_IMAGE", IMAGE)
        yield {name: _render(name) for name in DEPLOYMENTS}


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def _container(manifest: dict[str, Any]) -> dict[str, Any]:
    return _pod_spec(manifest)["containers"][0]


def _env(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in _container(manifest)["env"]}


def _for_kubernetes(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as the API server keeps it.

    prefect-kubernetes requires ``parallelism`` and ``completions`` inside the *pod* spec (its
    ``_get_base_job_manifest`` check rejects a template without them), where Kubernetes has no
    such fields. The API server drops unknown fields with a warning (its default field
    validation), so they are harmless. We drop exactly these two here, so strict validation
    still rejects any other stray field. The template also sets the real Job-level fields.
    """
    manifest = json.loads(json.dumps(manifest))
    pod = _pod_spec(manifest)
    assert pod.pop("parallelism") == 1
    assert pod.pop("completions") == 1
    return manifest


def _flow_function(entrypoint: str) -> ast.FunctionDef:
    path, function = entrypoint.split(":")
    tree = ast.parse((ROOT / path).read_text())
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    assert found, f"{path} defines no function {function}"
    return found[0]


def _flow_name(entrypoint: str) -> str:
    """The flow's name as Prefect derives it: ``@flow(name=...)``, else the function name."""
    function = _flow_function(entrypoint)
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "flow":
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return function.name.replace("_", "-")


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


# --- the work-pool template -------------------------------------------------------------------


@pytest.mark.parametrize("pool_file", ["kubernetes.json", "process.json"])
def test_pool_template_declares_every_variable_it_uses(pool_file: str) -> None:
    # The check the Prefect server runs when the pool is created (validate_base_job_template).
    template = json.loads((POOL_TEMPLATE.parent / pool_file).read_text())
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= set(template["variables"]["properties"])


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_job_variables_fit_the_pool_schema(name: str) -> None:
    # As the server validates them at `prefect deploy` (validate_job_variables_for_deployment).
    template = _pool_template()
    defaults = {
        key: spec["default"]
        for key, spec in template["variables"]["properties"].items()
        if "default" in spec
    }
    errors = validate_job_variables(
        {**defaults, **_job_variables(name)},
        template["variables"],
        preprocess=True,
        ignore_required=True,
        allow_none_with_default=True,
    )
    assert errors == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job_is_valid_kubernetes(
    rendered: dict[str, dict[str, Any]], name: str, version: str
) -> None:
    kubernetes_validate.validate(_for_kubernetes(rendered[name]), version, strict=True)


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job_runs_non_root_on_a_read_only_root(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    pod = _pod_spec(rendered[name])
    container = _container(rendered[name])["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job_writes_only_to_an_empty_dir_on_tmp(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    mounts = {m["mountPath"]: m["name"] for m in _container(rendered[name])["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod_spec(rendered[name])["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job_has_cpu_and_memory_requests_and_limits(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    resources = _container(rendered[name])["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}
        assert all(resources[kind].values())


def test_fit_batch_pods_are_scheduled_for_all_the_cpus_they_fit_on(
    rendered: dict[str, dict[str, Any]],
) -> None:
    # A batch runs one fit process per CPU of its limit (the process pool is sized from
    # limits.cpu); a lower request would let the scheduler put more fits on a node than it
    # has cores.
    resources = _container(rendered["fit-batch"])["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_kubernetes_never_retries_and_cleans_up_finished_jobs(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    spec = rendered[name]["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["ttlSecondsAfterFinished"] > 0
    # With backoffLimit 0 the worker tells the run to reschedule itself on eviction.
    env = _env(rendered[name])
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"]["value"] == "reschedule"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_rendered_job_runs_in_the_namespace_as_the_tokenless_flow_account(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    assert rendered[name]["metadata"]["namespace"] == NAMESPACE
    assert _pod_spec(rendered[name])["serviceAccountName"] == FLOW_SERVICE_ACCOUNT
    assert _pod_spec(rendered[name])["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_s3_credentials_come_only_from_the_secret(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    env = _env(rendered[name])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": S3_SECRET, "key": key}
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not [e for e in env.values() if e["name"].startswith("AWS_") and "value" in e]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_flow_run_env_is_merged_with_the_templates_env(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    # The manifest's env list holds the secretKeyRef entries; the worker must prepend the flow
    # run's own variables to it rather than replace it.
    env = _env(rendered[name])
    assert env["PREFECT__FLOW_RUN_ID"]["value"] == str(FLOW_RUN_ID)
    assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]
    pool_size = env["PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS"]["valueFrom"]
    assert pool_size["resourceFieldRef"]["resource"] == "limits.cpu"
    assert env["OMP_NUM_THREADS"]["value"] == "1"
    assert env["PREFECT_LOGGING_EXTRA_LOGGERS"]["value"] == "misterp"


def test_a_deployments_env_adds_to_the_pool_env_instead_of_replacing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MISTERP_IMAGE", IMAGE)
    env = _env(_render("fit-batch", {"env": {"MISTERP_EXTRA": "1"}}))
    assert env["MISTERP_EXTRA"]["value"] == "1"
    assert env["OMP_NUM_THREADS"]["value"] == "1"
    assert "secretKeyRef" in env["AWS_ACCESS_KEY_ID"]["valueFrom"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_image_comes_from_misterp_image_at_deploy_time(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    assert _deployment(name)["work_pool"]["job_variables"]["image"] == "{{ $MISTERP_IMAGE }}"
    assert _container(rendered[name])["image"] == IMAGE


# --- k8s/ -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("filename", "document"),
    _k8s_documents(),
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in _k8s_documents()],
)
def test_k8s_manifest_is_valid_kubernetes(
    filename: str, document: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def test_kustomization_lists_every_manifest_except_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE_SECRET}
    assert listed == present
    assert kustomization["namespace"] == NAMESPACE
    assert [image["name"] for image in kustomization["images"]] == ["misterp"]


def test_every_k8s_object_is_in_the_misterp_namespace() -> None:
    for _, document in _k8s_documents():
        if document["kind"] == "Namespace":
            assert document["metadata"]["name"] == NAMESPACE
        else:
            assert document["metadata"]["namespace"] == NAMESPACE


def test_worker_runs_non_root_on_a_read_only_root_with_resources() -> None:
    (worker,) = [d for _, d in _k8s_documents() if d["kind"] == "Deployment"]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert any(
        m["mountPath"] == "/tmp" and "emptyDir" in volumes[m["name"]]
        for m in container["volumeMounts"]
    )
    assert set(container["resources"]) == {"requests", "limits"}


def test_worker_polls_the_deployments_pool_as_the_bound_service_account() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for _, d in _k8s_documents()}
    worker = documents["Deployment", "prefect-worker"]["spec"]["template"]["spec"]
    args = worker["containers"][0]["args"]
    assert args[args.index("--pool") + 1] == WORK_POOL
    assert args[args.index("--type") + 1] == "kubernetes"
    binding = documents["RoleBinding", "prefect-worker"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": worker["serviceAccountName"], "namespace": NAMESPACE}
    ]
    flows_account = documents["ServiceAccount", FLOW_SERVICE_ACCOUNT]
    assert flows_account["automountServiceAccountToken"] is False


def test_worker_role_can_create_and_delete_jobs_but_not_read_secrets() -> None:
    (role,) = [d for _, d in _k8s_documents() if d["kind"] == "Role"]
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert {"create", "delete", "watch"} <= rules["batch", "jobs"]
    assert ("", "secrets") not in rules
    assert not any("*" in verbs for verbs in rules.values())


def test_pool_template_defaults_match_the_k8s_objects() -> None:
    variables = _pool_template()["variables"]["properties"]
    names = {(d["kind"], d["metadata"]["name"]) for _, d in _k8s_documents()}
    assert variables["namespace"]["default"] == NAMESPACE
    assert ("ServiceAccount", variables["service_account_name"]["default"]) in names
    example = yaml.safe_load((K8S_DIR / EXAMPLE_SECRET).read_text())
    assert variables["s3_secret_name"]["default"] == example["metadata"]["name"] == S3_SECRET


def test_worker_hands_the_prefect_auth_string_to_flow_runs_as_a_secret_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker copies its Prefect settings into every flow-run Job; without the two
    # PREFECT_INTEGRATIONS_* settings an auth string would sit in plain text in each manifest.
    # Submit a job through the worker's own code with worker.yaml's environment and compare.
    monkeypatch.setenv("MISTERP_IMAGE", IMAGE)
    (worker,) = [d for _, d in _k8s_documents() if d["kind"] == "Deployment"]
    worker_env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    auth_ref = worker_env["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    assert auth_ref["optional"] is True  # a server without basic auth needs no Secret
    for name, entry in worker_env.items():
        if name.startswith("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_"):
            monkeypatch.setenv(name, entry["value"])
    secret_value = "admin:not-in-any-manifest"
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: secret_value}):
        configuration = _configuration("fit-batch")

    with patch("prefect_kubernetes.worker.BatchV1Api") as batch_api:
        batch_api.return_value.create_namespaced_job = AsyncMock()
        worker_process = KubernetesWorker(work_pool_name=WORK_POOL)
        asyncio.run(worker_process._create_job(configuration, client=Mock()))
        namespace, submitted = batch_api.return_value.create_namespaced_job.call_args.args

    assert namespace == NAMESPACE
    assert secret_value not in json.dumps(submitted)
    assert _env(submitted)["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"] == {
        "name": auth_ref["name"],
        "key": auth_ref["key"],
    }


# --- k8s/networkpolicy.yaml -------------------------------------------------------------------


def _network_policy() -> dict[str, Any]:
    (policy,) = [d for _, d in _k8s_documents() if d["kind"] == "NetworkPolicy"]
    return policy


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector matches ``labels`` (the API server's semantics)."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matches = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }
        if not matches[operator]:
            return False
    return True


def _egress_rules_for(protocol: str, port: int) -> list[dict[str, Any]]:
    return [
        rule
        for rule in _network_policy()["spec"]["egress"]
        if {"protocol": protocol, "port": port} in rule["ports"]
    ]


def _selects_namespace(peer: dict[str, Any], namespace: str) -> bool:
    # Kubernetes labels every namespace with its name under this key.
    selector = peer.get("namespaceSelector")
    return selector is not None and _selects(selector, {"kubernetes.io/metadata.name": namespace})


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_network_policy_selects_the_flow_run_pods_of_every_deployment(
    rendered: dict[str, dict[str, Any]], name: str
) -> None:
    pod_labels = rendered[name]["spec"]["template"]["metadata"]["labels"]
    assert _selects(_network_policy()["spec"]["podSelector"], pod_labels)


def test_network_policy_leaves_the_worker_alone() -> None:
    # The worker needs the Kubernetes API, which the policy does not allow.
    (worker,) = [d for _, d in _k8s_documents() if d["kind"] == "Deployment"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not _selects(_network_policy()["spec"]["podSelector"], worker_labels)


def test_network_policy_denies_all_ingress_and_restricts_egress() -> None:
    spec = _network_policy()["spec"]
    # Without "Ingress" in policyTypes an egress-only policy leaves ingress wide open.
    assert {"Ingress", "Egress"} <= set(spec["policyTypes"])
    assert spec.get("ingress", []) == []


def test_every_egress_rule_names_its_destinations_and_ports() -> None:
    # A rule without `to` allows every destination, one without `ports` every port.
    for rule in _network_policy()["spec"]["egress"]:
        assert rule.get("to"), rule
        assert rule.get("ports"), rule
        assert all(port.get("protocol") and port.get("port") for port in rule["ports"]), rule


def test_flow_runs_can_resolve_names_through_the_cluster_dns() -> None:
    for protocol in ("UDP", "TCP"):  # TCP for answers too large for UDP
        (rule,) = _egress_rules_for(protocol, 53)
        assert any(
            _selects_namespace(peer, "kube-system")
            and _selects(peer.get("podSelector", {}), {"k8s-app": "kube-dns"})
            for peer in rule["to"]
        )


def test_flow_runs_can_reach_the_prefect_api_the_configmap_names() -> None:
    (configmap,) = [d for _, d in _k8s_documents() if d["kind"] == "ConfigMap"]
    url = urlsplit(configmap["data"]["PREFECT_API_URL"])
    assert url.hostname is not None
    port = url.port or {"http": 80, "https": 443}[url.scheme]
    peers = [peer for rule in _egress_rules_for("TCP", port) for peer in rule["to"]]
    if ".svc" in url.hostname:  # service.namespace.svc[.cluster.local]
        namespace = url.hostname.split(".")[1]
        assert any(_selects_namespace(peer, namespace) for peer in peers)
    else:
        assert any("ipBlock" in peer for peer in peers)


def test_flow_runs_reach_s3_over_https_but_not_the_private_networks() -> None:
    # The public 443 rule is for S3 (and Prefect Cloud); it must not double as a way into the
    # cluster's pods, services or the Kubernetes API, which sit on private ranges.
    private = [ip_network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    blocks = [peer["ipBlock"] for rule in _egress_rules_for("TCP", 443) for peer in rule["to"]]
    assert any(block["cidr"] == "0.0.0.0/0" for block in blocks)
    for block in blocks:
        cidr = ip_network(block["cidr"])
        excepted = [ip_network(e) for e in block.get("except", [])]
        for network in private:
            if network.subnet_of(cidr):
                assert any(network.subnet_of(e) for e in excepted), (block, network)


# --- deployments/prefect.yaml -----------------------------------------------------------------


def test_prefect_yaml_parses_as_prefect_deploy_reads_it() -> None:
    # `prefect deploy` validates with this model and, on an error, skips the file with a
    # warning instead of failing, so a typo would deploy nothing; catch it here instead.
    model = PrefectYamlModel.model_validate(_prefect_yaml())
    assert [d.name for d in model.deployments] == DEPLOYMENTS


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_runs_an_existing_flow_on_the_k8s_pool(name: str) -> None:
    deployment = _deployment(name)
    path = deployment["entrypoint"].split(":")[0]
    assert (ROOT / path).is_file(), f"{path} does not exist"
    assert deployment["work_pool"]["name"] == WORK_POOL
    arguments = {a.arg for a in _flow_function(deployment["entrypoint"]).args.args}
    assert set(deployment.get("parameters", {})) <= arguments


def test_tracking_wave_runs_monthly_on_a_cron_with_a_timezone() -> None:
    (schedule,) = _deployment("tracking-wave")["schedules"]
    assert schedule["timezone"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    _, _, day_of_month, month, day_of_week = cron.cron.split()
    assert day_of_month.isdigit()  # one fixed day a month, every month
    assert (month, day_of_week) == ("*", "*")


@pytest.mark.parametrize("name", ["tracking-wave", "rerun-failed"])
def test_waves_fan_out_to_the_fit_batch_deployment(name: str) -> None:
    fit_batch = _deployment("fit-batch")
    expected = f"{_flow_name(fit_batch['entrypoint'])}/{fit_batch['name']}"
    assert _deployment(name)["parameters"]["fit_deployment"] == expected


@pytest.mark.parametrize("name", ["mmm", "mmm-rerun-failed"])
def test_mmm_runs_fan_out_to_the_mmm_fit_batch_deployment(name: str) -> None:
    batch = _deployment("mmm-fit-batch")
    expected = f"{_flow_name(batch['entrypoint'])}/{batch['name']}"
    assert _deployment(name)["parameters"]["fit_deployment"] == expected
    assert batch["concurrency_limit"] > 0
    # the batch flow takes the fan-out's parameters (flows.dispatch.batch_parameters)
    from flows.dispatch import batch_parameters

    arguments = {a.arg for a in _flow_function(batch["entrypoint"]).args.args}
    assert set(batch_parameters("s3://b", "r1", ["DE"], {}, None, "run-1")) == arguments


def test_mmm_runs_weekly_on_a_cron_and_its_rerun_needs_the_run_id() -> None:
    (schedule,) = _deployment("mmm")["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    _, _, day_of_month, month, day_of_week = cron.cron.split()
    assert (day_of_month, month) == ("*", "*")
    assert day_of_week.isdigit()  # one fixed weekday, every week
    rerun = _deployment("mmm-rerun-failed")
    assert "schedules" not in rerun  # started by a person, for a run id
    function = _flow_function(rerun["entrypoint"])
    required = [a.arg for a in function.args.args][: -len(function.args.defaults) or None]
    assert required == ["config", "run"]
    assert "run" not in rerun["parameters"]


@pytest.mark.parametrize("name", ["mmm", "mmm-rerun-failed"])
def test_mmm_flows_take_no_storage_options_or_credentials(name: str) -> None:
    deployment = _deployment(name)
    arguments = {a.arg for a in _flow_function(deployment["entrypoint"]).args.args}
    assert "storage_options" not in arguments
    text = yaml.safe_dump(deployment.get("parameters", {})).lower()
    assert not re.search(r"key|secret|token|password", text), text


def test_fit_batch_has_a_concurrency_limit() -> None:
    assert _deployment("fit-batch")["concurrency_limit"] > 0


def test_pull_step_enters_the_images_working_directory() -> None:
    (step,) = _prefect_yaml()["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert workdirs[-1] == directory
