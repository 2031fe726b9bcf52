"""scripts/test.sh's PostgreSQL (issue 10 item 19): when none answers, scripts/postgres.sh
starts a throwaway cluster the tests can use, and removes it when the script exits."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tests.required import backend_unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
set -euo pipefail
source scripts/postgres.sh
TG_DEFAULT_DATABASE_URL=postgresql://postgres@127.0.0.1:1/test  # nothing answers there
tg_pg_ensure
tg_pg_answers "$TEST_DATABASE_URL"
echo "url=$TEST_DATABASE_URL"
echo "dir=$TG_PG_DIR"
"""


def test_a_throwaway_cluster_starts_when_none_answers() -> None:
    if not (shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")):
        backend_unavailable("PostgreSQL binaries not installed (scripts/test.sh installs them)")
    env = {key: value for key, value in os.environ.items() if key != "TEST_DATABASE_URL"}
    done = subprocess.run(
        ["bash", "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split("=", 1) for line in done.stdout.split())
    assert lines["url"].startswith("postgresql://postgres@127.0.0.1:")
    assert not lines["url"].endswith(":1/test")
    assert "started a throwaway PostgreSQL" in done.stderr
    assert not Path(lines["dir"]).exists(), "the cluster is removed at exit"


def test_a_given_url_is_used_as_is() -> None:
    env = {**os.environ, "TEST_DATABASE_URL": "postgresql://u@db.example:5433/x"}
    done = subprocess.run(
        ["bash", "-c", "source scripts/postgres.sh; tg_pg_ensure; echo $TEST_DATABASE_URL"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "postgresql://u@db.example:5433/x"
