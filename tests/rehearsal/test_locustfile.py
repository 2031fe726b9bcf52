"""deploy/locust/locustfile.py runs the fan journey under Locust against a real gateway:
fans join, poll, enter, reserve and pay, and Locust counts no failure."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rehearsal.gateway import serve_gateway

LOCUSTFILE = Path(__file__).resolve().parents[2] / "deploy" / "locust" / "locustfile.py"
USERS = 60


@pytest.mark.slow
def test_the_locust_journey_enters_and_books_without_failures(tmp_path: Path) -> None:
    locust = shutil.which("locust", path=str(Path(sys.executable).parent))
    assert locust is not None, "locust is a test dependency (pyproject [test])"
    with serve_gateway(
        tmp_path, QUEUE_BUCKET_CAPACITY="10", QUEUE_BUCKET_REFILL_PER_SEC="10",
        DATABASE_POOL_SIZE="1", BACKEND_RESERVATION_API_TIMEOUT="5s",
    ) as base:  # fmt: skip
        done = subprocess.run(
            [
                locust,
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                base,
                "--users",
                str(USERS),
                "--spawn-rate",
                str(USERS),
                "--run-time",
                "25s",
                "--csv",
                str(tmp_path / "locust"),
                "--only-summary",
                "--stop-timeout",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "TG_GHOST_SHARE": "0.1", "TG_PAYMENT_MIX": "approve:1"},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "locust_stats.csv").open(encoding="utf-8") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["join"]["Request Count"]) == USERS
    assert int(rows["status"]["Request Count"]) >= USERS
    assert int(rows["enter"]["Request Count"]) >= USERS // 2
    assert int(rows["reserve"]["Request Count"]) >= USERS // 2
    assert int(rows["pay"]["Request Count"]) >= 1
    assert int(rows["Aggregated"]["Failure Count"]) == 0, (
        tmp_path / "locust_failures.csv"
    ).read_text()
