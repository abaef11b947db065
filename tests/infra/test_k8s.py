"""infra/k8s: both overlays render with kustomize and validate against the Kubernetes schemas, offline."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from qa_core.lm_server import MODEL_ALIAS
from tests.infra.tools import run, tool

K8S_VERSION = "1.33.0"  # the schemas ship inside the kubernetes-validate wheel: no download at test time
OVERLAYS = ["dev", "prod"]


def render(overlay: str) -> list[dict]:
    result = run([tool("kubectl"), "kustomize", f"infra/k8s/overlays/{overlay}"])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def test_every_rendered_object_validates_against_the_schemas(rendered: tuple[str, list[dict]]) -> None:
    overlay, docs = rendered
    assert len(docs) > 10, overlay
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    deployment = copy.deepcopy(by_kind(render("prod"), "Deployment")["qa-api"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment = copy.deepcopy(by_kind(render("prod"), "Deployment")["qa-api"])
    containers(deployment)[0]["livenessprobe"] = {}  # a typo in a field name: strict mode catches it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_base_holds_the_five_workloads(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    deployments = by_kind(docs, "Deployment")
    assert {"qa-api", "optimizer-worker-api", "optimizer-worker", "feedback-ui", "mlflow", "llm"} <= set(deployments)
    assert {"worker-migrate", "feedback-migrate", "bootstrap"} <= set(by_kind(docs, "Job"))
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        if deployment["metadata"]["name"] == "redis":
            continue  # dev's in-cluster Redis: the official image
        assert pod["securityContext"]["runAsNonRoot"] is True, deployment["metadata"]["name"]


def test_probes_call_the_health_endpoints(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    deployments = by_kind(docs, "Deployment")
    for name in ("qa-api", "optimizer-worker-api", "feedback-ui"):
        (container,) = containers(deployments[name])
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live", name
    (llm,) = containers(deployments["llm"])
    # Ready once the base model is loaded (the router answers /v1/models before); alive while the router is.
    assert llm["readinessProbe"]["httpGet"]["path"] == f"/props?model={MODEL_ALIAS}"
    assert llm["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "inspect ping" in " ".join(
        containers(deployments["optimizer-worker"])[0]["livenessProbe"]["exec"]["command"]
    )


def test_prod_scales_qa_api_limits_every_container_and_budgets_disruptions() -> None:
    docs = render("prod")
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qa-api"}
    assert hpa["spec"]["minReplicas"] >= 2
    deployments = by_kind(docs, "Deployment")
    for name, deployment in deployments.items():
        for container in containers(deployment):
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert {"memory"} <= set(resources.get("limits", {})), name
    pdbs = by_kind(docs, "PodDisruptionBudget").values()
    budgets = {pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for pdb in pdbs}
    assert {"qa-api", "feedback-ui", "mlflow"} <= budgets
    for name in ("qa-api", "feedback-ui"):
        assert deployments[name]["spec"]["replicas"] >= 2, "a budget of one replica would block every drain"


def test_prod_uses_external_databases_and_object_storage() -> None:
    docs = render("prod")
    assert not by_kind(docs, "StatefulSet"), "no database inside the prod cluster"
    assert "redis" not in by_kind(docs, "Deployment")
    assert not by_kind(docs, "Secret"), "prod expects the Secret to exist; it never commits one"
    (mlflow,) = containers(by_kind(docs, "Deployment")["mlflow"])
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "dspy-qa-secrets"
    assert all(mount["mountPath"] != "/mlartifacts" for mount in mlflow["volumeMounts"])
    config = by_kind(docs, "ConfigMap")["dspy-qa-config"]["data"]
    assert config["APP_ENV"] == "prod"
    dev_config = by_kind(render("dev"), "ConfigMap")["dspy-qa-config"]["data"]
    assert dev_config["APP_ENV"] == "dev"
