"""The container image without a Docker engine: lint the Dockerfile, check its locks, and
run what the image runs — deploy/install.sh builds the wheel and the runtime venv, then the
Dockerfile's own ENTRYPOINT/CMD serves from that venv and its HEALTHCHECK probes it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import DEPLOY, ROOT, run_tool
from tests.redis_server import free_port

DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


class Pin(NamedTuple):
    name: str
    version: str
    marker: Marker | None
    hashes: int

    def applies(self) -> bool:
        """Whether this interpreter and platform install it (a universal lock may pin one
        package twice, for different Python versions)."""
        return self.marker is None or self.marker.evaluate()


def locked(path: Path) -> list[Pin]:
    """The pins of a `uv pip compile --generate-hashes` lock, in file order."""
    pins: list[Pin] = []
    for line in path.read_text().splitlines():
        if not line.startswith(("#", " ")) and "==" in line:
            requirement = Requirement(line.rstrip(" \\"))
            (spec,) = requirement.specifier
            pins.append(
                Pin(canonicalize_name(requirement.name), spec.version, requirement.marker, 0)
            )
        elif line.strip().startswith("--hash=sha256:") and pins:
            pins[-1] = pins[-1]._replace(hashes=pins[-1].hashes + 1)
    return pins


def instruction(name: str) -> str:
    """The argument of the Dockerfile's (last) `name` instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.+)$", text, flags=re.MULTILINE)
    assert found, f"Dockerfile has no {name}"
    return str(found[-1])


def test_dockerfile_is_hadolint_clean() -> None:
    # hadolint's default threshold fails on anything down to "info".
    result = run_tool("hadolint", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("requirements.txt", PYPROJECT["project"]["dependencies"]),
        ("requirements-build.txt", PYPROJECT["build-system"]["requires"]),
    ],
)
def test_locks_pin_what_pyproject_pins_with_hashes(lock: str, wanted: list[str]) -> None:
    pins = [pin for pin in locked(DEPLOY / lock) if pin.applies()]
    for entry in wanted:
        requirement = Requirement(entry)
        name = canonicalize_name(requirement.name)
        versions = [pin.version for pin in pins if pin.name == name]
        assert versions, f"{name} missing from deploy/{lock}: run deploy/lock.sh"
        assert all(version in requirement.specifier for version in versions), (
            f"deploy/{lock} pins {name}=={versions}, pyproject says "
            f"{requirement.specifier}: run deploy/lock.sh"
        )
    assert all(pin.hashes > 0 for pin in locked(DEPLOY / lock)), "every pin needs its hashes"


def test_dockerfile_shape() -> None:
    """The contract the manifests and compose file rely on."""
    assert json.loads(instruction("ENTRYPOINT")) == ["ticketgate"]
    assert json.loads(instruction("CMD")) == ["serve"]
    assert instruction("USER").split(":")[0] not in {"0", "root"}
    assert "/healthz" in instruction("HEALTHCHECK")
    stages = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    # Everything the build stage copies survives .dockerignore.
    ignore = (ROOT / ".dockerignore").read_text()
    for copied in ("pyproject.toml", "setup.py", "README.md", "src/", "deploy/install.sh"):
        assert f"!{copied}" in ignore


def _source_copy(target: Path) -> Path:
    """The build context .dockerignore lets through (no local venv, no generated modules)."""
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(
        ROOT / "src",
        target / "src",
        ignore=shutil.ignore_patterns("*_pb2*.py", "*_pb2*.pyi", "__pycache__", "*.egg-info"),
    )
    (target / "deploy").mkdir()
    for name in ("install.sh", "requirements.txt", "requirements-build.txt"):
        shutil.copy2(DEPLOY / name, target / "deploy" / name)
    return target


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("image")
    (base / "context").mkdir()
    source = _source_copy(base / "context")
    runtime = base / "opt-ticketgate"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_NO_CACHE_DIR": "0"}
    result = subprocess.run(
        ["sh", str(source / "deploy" / "install.sh"), str(source), str(base / "build"), runtime],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return runtime


@pytest.mark.slow
def test_runtime_venv_holds_the_lock_and_the_wheel_only(runtime_venv: Path) -> None:
    listing = subprocess.run(
        [
            str(runtime_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {canonicalize_name(name) for name in json.loads(listing.stdout)}
    here = {pin.name for pin in locked(DEPLOY / "requirements.txt") if pin.applies()}
    assert installed == here | {"ticketgate"}
    # No installer, no build backend, no compiler plugin, no test tool in the image's venv.
    assert not installed & {"pip", "setuptools", "wheel", "grpcio-tools", "pytest", "mypy"}
    generated = list(
        (runtime_venv / "lib").glob("python3*/site-packages/ticketgate/proto/*/v1/*_pb2.py")
    )
    assert len(generated) == 3, generated


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status), response.read()


@pytest.mark.slow
def test_image_entrypoint_serves_and_its_healthcheck_passes(
    runtime_venv: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        # The image's ENV, then what a production deployment sets (docs/operations.md).
        "PATH": f"{runtime_venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_ENVIRONMENT": "production",
        "QUEUE_TOKEN_SECRET": "image-test-secret-image-test-secret-0123",
        "BACKEND_EMBEDDED": "true",
        "DATABASE_PATH": str(tmp_path / "ticketgate.db"),
        "HOME": str(tmp_path),
    }
    command = json.loads(instruction("ENTRYPOINT")) + json.loads(instruction("CMD"))
    process = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0][-4000:]
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "gateway from the runtime venv never served"
                time.sleep(0.2)
        assert status == 200
        assert json.loads(body)["status"] == "healthy"
        status, body = _get(f"http://127.0.0.1:{port}/version")
        assert status == 200
        assert json.loads(body)["version"] == PYPROJECT["project"]["version"]
        # The HEALTHCHECK command itself, with the image's PATH (its `python` is the venv's).
        check = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
        assert subprocess.run(check, env=env, timeout=10).returncode == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "a handled SIGTERM exits 0"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # ... and the same probe fails once nothing listens (it is not a check that cannot fail).
    assert subprocess.run(check, env=env, capture_output=True, timeout=10).returncode != 0
