"""`python -m bench.run` / `bench.ab` on a machine without wrk (issue 10 item 20): one line
naming what to install and exit 2, before any child process starts, instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [["bench.run", "--quick"], ["bench.ab", "--preset", "edge", "--scenario", "join"]],
)
def test_a_missing_wrk_is_one_line_saying_what_to_install(
    command: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # an empty PATH: no wrk
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "wrk" in lines[0]
    assert "apt-get install" in lines[0]
    assert "Traceback" not in done.stderr
