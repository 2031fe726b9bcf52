"""Issue 10 item 19: a required backend that is missing skips on a developer's machine and
fails under CI=true, so a CI run can never be green while PostgreSQL or Redis tests silently
skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = """
from tests.unit.test_accounts_database import database_factory


async def test_needs_postgresql(tmp_path):
    async with database_factory("postgresql", tmp_path) as factory:
        factory.open()
"""


def run_probe(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {
        **os.environ,
        "CI": ci,
        # Nothing listens on port 1: PostgreSQL is "not installed" for this run.
        "TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test",
    }
    config = ["-c", str(REPO / "pyproject.toml"), "--rootdir", str(REPO)]
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(probe), "-q", "-p", "no:cacheprovider", *config],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", ["true", "1"])
def test_an_unreachable_postgresql_fails_under_ci(tmp_path: Path, ci: str) -> None:
    done = run_probe(tmp_path, ci)
    assert done.returncode == 1, done.stdout
    assert "1 failed" in done.stdout
    assert "required backend unavailable under CI=true" in done.stdout
    assert "PostgreSQL unreachable" in done.stdout


def test_an_unreachable_postgresql_skips_elsewhere(tmp_path: Path) -> None:
    done = run_probe(tmp_path, "")
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
