"""Run wrk with a scenario script and read its exact figures.

The figures come from the `TGBENCH {json}` line that bench/wrk/report.lua prints in wrk's
`done` hook; wrk's own text summary is kept alongside, for a human to check against. wrk only
counts "status >= 400" as one number; `count_statuses=True` (used for the unmeasured warm-up)
makes the scripts count every status code, at some client CPU per response.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
MARKER = "TGBENCH "


class WrkFailed(RuntimeError):
    """wrk could not run or printed no result line."""


@dataclass(slots=True)
class WrkResult:
    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    command: list[str]
    output: str
    redis: dict[str, object] = field(default_factory=dict)
    # The server's own CPU over the measured run (see processes.process_group_cpu).
    server: dict[str, object] = field(default_factory=dict)
    # Responses per HTTP status, only when the run counted them (count_statuses=True).
    status_counts: dict[str, int] | None = None
    # wrk's own CPU (user + system) over its run: on a box where the client shares the cores
    # with the gateway and Redis, a costlier client lowers req/s with no change in the server.
    client_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        """Non-2xx/3xx responses plus socket errors: any of them flags the run."""
        return sum(self.errors.values())

    def unexpected_statuses(self) -> dict[str, int]:
        """Counted responses that were not 2xx (empty when statuses were not counted)."""
        return {k: v for k, v in (self.status_counts or {}).items() if not k.startswith("2")}

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "error_count": self.error_count,
            "redis": self.redis,
            "server": self.server,
            "client_cpu_us_per_request": round(self.client_cpu_s / max(1, self.requests) * 1e6, 1),
            "command": self.command,
            "wrk_output": self.output,
        }
        if self.status_counts is not None:
            out["status_counts"] = self.status_counts
        return out


# What a benchmark needs on PATH, and how a Debian/Ubuntu machine gets it.
REQUIRED_TOOLS = {"wrk": "wrk", "redis-server": "redis-server"}


def missing_tools_line(program: str) -> str | None:
    """One line naming what to install when a tool the benchmark runs is absent, else None.

    Checked before anything starts, so a fresh machine gets an instruction, not a traceback.
    """
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not missing:
        return None
    packages = " ".join(REQUIRED_TOOLS[tool] for tool in missing)
    return (
        f"{program}: {' and '.join(missing)} not found on PATH; install with "
        f"`sudo apt-get install {packages}` (Debian/Ubuntu; macOS: `brew install wrk redis`)"
    )


def wrk_binary() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkFailed("wrk not found on PATH (apt-get install wrk)")
    return binary


def run_wrk(
    url: str,
    script: str,
    script_args: list[str],
    *,
    threads: int,
    connections: int,
    duration_s: int,
    timeout_s: int = 5,
    count_statuses: bool = False,
) -> WrkResult:
    command = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + timeout_s + 30,
            check=False,
            env={**os.environ, "TGBENCH_STATUS_COUNTS": "1" if count_statuses else "0"},
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkFailed(f"wrk did not finish: {' '.join(command)}") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Only wrk is reaped in between (the gateway's processes outlive the run).
    client_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise WrkFailed(
            f"wrk exited {done.returncode} without a result\n{done.stdout}\n{done.stderr}"
        )
    data = json.loads(line[len(MARKER) :])
    latency = {name: round(float(us) / 1000.0, 3) for name, us in data["latency_us"].items()}
    output = "\n".join(ln for ln in done.stdout.splitlines() if not ln.startswith(MARKER))
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        latency_ms=latency,
        errors={name: int(value) for name, value in data["errors"].items()},
        command=command,
        output=output,
        status_counts=(
            {str(k): int(v) for k, v in sorted(data["status_counts"].items())}
            if "status_counts" in data
            else None
        ),
        client_cpu_s=client_cpu_s,
    )


def wrk_version() -> str:
    done = subprocess.run(
        [wrk_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"
