"""What `ticketgate rehearse` itself costs: fans per CPU-second and event-loop lag while it
holds ~20,000 concurrent fans, per HTTP client library (aiohttp, httpx).

    python -m bench.rehearsal_cost [--fans 21000] [--duration 90] [--burst 20]
                                   [--clients aiohttp,httpx]

For each library: a fresh development gateway (one worker, pinned to CPU 0 with taskset when
available), then the real command pinned to CPU 1: the burst of `--fans` joins over `--burst` s,
admission at 10/s so nearly all of them stay in the queue and poll as told (booking off: this
measures the fan journey through the queue), stopped after `--duration` s. Prints one line of
figures per library from the report's `tool` section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.processes import Child, free_port, wait_http_ready

SCENARIO = """
fans: {fans}
burst_share: 1.0
burst_sec: {burst}
max_duration_sec: {duration}
tune_gc: {tune_gc}
queue:
  heartbeat_ttl_sec: 300
booking:
  enabled: false
client:
  library: {client}
  connections: 500
"""


PIN = True
TUNE_GC = "true"


def pinned(cpu: int, argv: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    if not PIN or taskset is None or (os.cpu_count() or 1) < 2:
        return argv
    return [taskset, "-c", str(cpu), *argv]


def measure(client: str, fans: int, duration: int, burst: int, work: Path) -> dict[str, object]:
    port = free_port()
    env = {
        **os.environ,
        "SERVER_ENVIRONMENT": "development",
        "DATABASE_PATH": str(work / f"{client}.db"),
        "LOG_LEVEL": "warning",
        "LOG_ACCESS": "false",
        "QUEUE_BUCKET_CAPACITY": "10",
        "QUEUE_BUCKET_REFILL_PER_SEC": "10",
        "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1",
    }
    gateway = Child(
        f"gateway-{client}",
        pinned(0, [sys.executable, "-m", "ticketgate.cli", "serve", "--dev", "--port", str(port)]),
        env=env,
        log_dir=work,
    )
    try:
        wait_http_ready(gateway, f"http://127.0.0.1:{port}/healthz")
        scenario = work / f"{client}.yaml"
        scenario.write_text(
            SCENARIO.format(
                fans=fans, duration=duration, client=client, burst=burst, tune_gc=TUNE_GC
            ),
            encoding="utf-8",
        )
        prefix = work / f"report-{client}"
        tool = Child(
            f"rehearse-{client}",
            pinned(
                1,
                [
                    sys.executable,
                    "-m",
                    "ticketgate.cli",
                    "rehearse",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--scenario",
                    str(scenario),
                    "--report",
                    str(prefix),
                    "--no-progress",
                ],
            ),
            log_dir=work,
        )
        try:
            tool.process.wait(duration + 120)
        except subprocess.TimeoutExpired:
            late = f"still running {duration + 120} s after start (limit {duration} s)"
            return {"client": client, "fans": fans, "finished": False, "why": late}
        finally:
            tool.stop()
        report = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    finally:
        gateway.stop()
    figures = report["tool"]
    return {
        "client": client,
        "tune_gc": TUNE_GC,
        "finished": True,
        "fans_started": figures["fans_started"],
        "peak_active_fans": figures["peak_active_fans"],
        "duration_sec": figures["duration_sec"],
        "cpu_sec": figures["cpu_sec"],
        "cpu_share_of_one_core": round(figures["cpu_sec"] / figures["duration_sec"], 3),
        "fans_per_cpu_sec": figures["fans_per_cpu_sec"],
        "requests": report["errors"]["requests"],
        "requests_per_cpu_sec": figures["requests_per_cpu_sec"],
        "errors": report["errors"]["errors"],
        "loop_lag_ms": figures["loop_lag_ms"],
        "gc_full_collections_ms": figures["gc_full_collections_ms"],
        "status_p99_ms": report["latency"].get("status", {}).get("p99"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fans", type=int, default=21_000)
    parser.add_argument("--duration", type=int, default=90)
    parser.add_argument("--clients", default="aiohttp,httpx")
    parser.add_argument("--burst", type=int, default=20, help="seconds over which fans join")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs 0 and 1")
    parser.add_argument(
        "--default-gc", action="store_true", help="scenario tune_gc: false (CPython defaults)"
    )
    parser.add_argument("--keep", type=Path, help="copy the reports (JSON, HTML) here")
    args = parser.parse_args(argv)
    global PIN, TUNE_GC
    PIN = not args.no_pin
    TUNE_GC = "false" if args.default_gc else "true"
    work = Path(tempfile.mkdtemp(prefix="tg-rehearsal-cost-"))
    try:
        for client in args.clients.split(","):
            print(
                json.dumps(measure(client, args.fans, args.duration, args.burst, work)), flush=True
            )
    finally:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for report in work.glob("report-*"):
                shutil.copy(report, args.keep / report.name)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
