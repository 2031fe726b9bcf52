"""deploy/k8s, checked without a cluster: kustomize (kubectl's own, v5) renders the base, each
overlay and the optional requests-per-second component; kubernetes-validate checks every
rendered object against the Kubernetes 1.37 schemas (strict: unknown fields fail); and the
objects agree with each other and with the gateway's settings validation."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, ROOT, run_tool
from ticketgate.config import check_replicas, load_settings, single_process_components
from ticketgate.services.settings import ServiceSettings

K8S = DEPLOY / "k8s"
TARGETS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "production": K8S / "overlays" / "production",
}


def render(path: Path) -> list[dict[str, Any]]:
    result = run_tool("kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_rps_component(tmp_path: Path) -> Path:
    """Production plus components/hpa-requests-per-second, as its comment tells users."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes only relative paths to other kustomizations.
                "resources": [os.path.relpath(TARGETS["production"], tmp_path)],
                "components": [
                    os.path.relpath(K8S / "components" / "hpa-requests-per-second", tmp_path)
                ],
            }
        )
    )
    return tmp_path


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(TARGETS[request.param])


def test_every_rendered_object_passes_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, docs = rendered
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = run_tool("kubernetes-validate", "--strict", "--kubernetes-version", "1.37", path)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {d["kind"] for d in docs}
    assert kinds >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceAccount",
    }
    # The validator fails what the schemas forbid (so the check above can fail).
    broken = dict(one(docs, "Service", "ticketgate-gateway"))
    broken["spec"] = {**broken["spec"], "portz": broken["spec"]["ports"]}
    path.write_text(yaml.safe_dump(broken))
    bad = run_tool("kubernetes-validate", "--strict", "--kubernetes-version", "1.37", path)
    assert bad.returncode != 0
    assert "portz" in bad.stdout + bad.stderr


def test_rps_component_renders_and_validates(tmp_path: Path) -> None:
    docs = render(with_rps_component(tmp_path))
    hpa = one(docs, "HorizontalPodAutoscaler", "ticketgate-gateway")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "http_server_requests_per_second"
    path = tmp_path / "hpa.yaml"
    path.write_text(yaml.safe_dump(hpa))
    result = run_tool("kubernetes-validate", "--strict", "--kubernetes-version", "1.37", path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The adapter rule names the same metric from the counter the gateway exports.
    values = yaml.safe_load(
        (
            K8S / "components" / "hpa-requests-per-second" / "prometheus-adapter-values.yaml"
        ).read_text()
    )
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == "http_server_requests_per_second"
    assert rule["seriesQuery"].startswith("http_server_requests_total{")


def config_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(docs, "ConfigMap", "ticketgate-config")["data"])


def test_gateway_probes_and_shutdown_budget(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    deployment = one(docs, "Deployment", "ticketgate-gateway")
    gateway = container(deployment)
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["resources"]["requests"]["cpu"]
    assert gateway["resources"]["limits"]["memory"]
    (sleep,) = [int(a) for a in gateway["lifecycle"]["preStop"]["exec"]["command"][1:]]
    shutdown = int(config_of(docs)["SERVER_SHUTDOWN_TIMEOUT_SEC"])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # Kubernetes SIGKILLs at the grace period, counted from the start of preStop.
    assert grace >= sleep + shutdown + 1
    assert grace <= sleep + shutdown + 15, "a long grace period only delays rollouts"


def test_selectors_and_targets_agree(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for name in ("ticketgate-gateway", "ticketgate-services"):
        labels = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = one(docs, "Service", name)["spec"]["selector"]
        assert selector.items() <= labels.items()
        policy = one(docs, "NetworkPolicy", name)["spec"]["podSelector"]["matchLabels"]
        assert policy.items() <= labels.items()
    labels = one(docs, "Deployment", "ticketgate-gateway")["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget", "ticketgate-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler", "ticketgate-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ticketgate-gateway"
    # Every configMapRef names the generated (hash-suffixed) ConfigMap.
    generated = one(docs, "ConfigMap", "ticketgate-config")["metadata"]["name"]
    for name in ("ticketgate-gateway", "ticketgate-services"):
        refs = [
            e["configMapRef"]["name"] for e in container(one(docs, "Deployment", name))["envFrom"]
        ]
        assert refs == [generated]


def test_replicas_match_the_declared_replica_count(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = rendered
    replicas = one(docs, "Deployment", "ticketgate-gateway")["spec"]["replicas"]
    hpa = one(docs, "HorizontalPodAutoscaler", "ticketgate-gateway")["spec"]
    assert hpa["minReplicas"] == replicas
    assert int(config_of(docs)["SERVER_REPLICAS_EXPECTED"]) == replicas
    if name == "production":
        assert replicas >= 3
        assert config_of(docs)["REDIS_CLUSTER_MODE"] == "true"


def secret_refs(docs: list[dict[str, Any]]) -> dict[str, bool]:
    """key of ticketgate-secrets -> required, over every env and volume reference."""
    refs: dict[str, bool] = {}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for entry in container(deployment).get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "ticketgate-secrets"
                refs[ref["key"]] = refs.get(ref["key"], False) or not ref.get("optional")
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "ticketgate-secrets"
                for item in volume["secret"]["items"]:
                    refs[item["key"]] = True
    return refs


def _env_with_secrets(
    docs: list[dict[str, Any]], deployment: str, key_file: Path
) -> dict[str, str]:
    """What the container sees: the ConfigMap, then its env with made-up secret values."""
    env = config_of(docs)
    values = {
        "queue-token-secret": "t" * 48,
        "payment-webhook-secret": "w" * 48,
        "database-url": "postgresql://ticketgate:pw@postgres-rw.db.svc:5432/ticketgate",
    }
    for entry in container(one(docs, "Deployment", deployment)).get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref and not ref.get("optional"):
            env[entry["name"]] = values[ref["key"]]
        elif "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", "x", entry["value"])
    if "AUTH_SIGNING_KEY_FILE" in env:
        env["AUTH_SIGNING_KEY_FILE"] = str(key_file)
    return env


def test_every_required_secret_is_referenced_and_documented(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = rendered
    refs = secret_refs(docs)
    required = {key for key, needed in refs.items() if needed}
    assert required == {
        "queue-token-secret",
        "payment-webhook-secret",
        "database-url",
        "auth-signing-key.pem",
    }
    # The signing key is mounted where AUTH_SIGNING_KEY_FILE points.
    gateway = container(one(docs, "Deployment", "ticketgate-gateway"))
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    key_path = Path(config_of(docs)["AUTH_SIGNING_KEY_FILE"])
    assert str(key_path.parent) == mounts["signing-key"]
    # docs/operations.md's `kubectl create secret` names every key.
    docs_text = (ROOT / "docs" / "operations.md").read_text()
    command = docs_text[docs_text.index("create secret generic ticketgate-secrets") :]
    command = command[: command.index("```")]
    for key in refs:
        assert f"{key}=" in command, key


def test_container_environments_pass_settings_validation(
    rendered: tuple[str, list[dict[str, Any]]], key_file: Path
) -> None:
    name, docs = rendered
    settings = load_settings(_env_with_secrets(docs, "ticketgate-gateway", key_file))
    # Production opens queues only for registered events; a developer's cluster for any id.
    assert settings.queue.auto_create_events is (name == "dev")
    assert not settings.is_development
    assert settings.redis.enabled
    assert settings.database.url.startswith("postgresql")
    # Nothing of it lives in one process only, so the fleet start-up check lets it through.
    assert single_process_components(settings) == []
    check_replicas(settings)
    ServiceSettings.from_env(_env_with_secrets(docs, "ticketgate-services", key_file))


def test_containers_run_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        context = container(deployment)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
