"""Run wrk with a scenario script and read its exact figures.

The figures come from the `TGBENCH {json}` line that bench/wrk/report.lua prints in wrk's
`done` hook; wrk's own text summary is kept alongside, for a human to check against.
"""

from __future__ import annotations

import json
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

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        """Non-2xx/3xx responses plus socket errors: any of them flags the run."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "error_count": self.error_count,
            "redis": self.redis,
            "command": self.command,
            "wrk_output": self.output,
        }


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
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration_s + timeout_s + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkFailed(f"wrk did not finish: {' '.join(command)}") from exc
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
    )


def wrk_version() -> str:
    done = subprocess.run(
        [wrk_binary(), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "unknown"
