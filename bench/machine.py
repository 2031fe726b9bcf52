"""What the figures were measured on: without this a req/s number means nothing."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.wrkrun import wrk_version

REPO = Path(__file__).resolve().parent.parent


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, check=False, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "missing"
    for part in _run([binary, "--version"]).split():
        if part.startswith("v="):
            return part[2:]
    return "unknown"


def load_average() -> str:
    return " ".join(_read("/proc/loadavg").split()[:3])


def git_state() -> dict[str, object]:
    """Commit plus uncommitted changes under src/: the gateway runs from the working tree."""
    dirty = [line for line in _run(["git", "status", "--porcelain", "--", "src"]).splitlines()]
    return {
        "commit": _run(["git", "rev-parse", "HEAD"]),
        "short": _run(["git", "rev-parse", "--short", "HEAD"]),
        "src_uncommitted_files": len(dirty),
    }


def describe() -> dict[str, object]:
    return {
        "nproc": os.cpu_count() or 0,
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_version(),
        "wrk": wrk_version(),
        "loadavg_start": load_average(),
    }
