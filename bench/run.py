"""Benchmark harness: `python -m bench.run [--quick]` (usage and results: docs/benchmarks.md).

One run owns everything it measures: a private redis-server, the gateway with N workers on
the Redis store, the ceiling app on the same uvicorn stack, and wrk. Waiters are preloaded
through the gateway's own join script, status is driven with tokens signed by the gateway's
own signer, and every child process is stopped on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis

from bench import machine, preload, report
from bench.processes import HOST, Child, ChildFailed, free_port, start_redis, wait_http_ready
from bench.wrkrun import WrkFailed, WrkResult, run_wrk

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("join", "status-small", "status-large", "ceiling", "ceiling-batched")
CEILINGS = {"ceiling": "redis-py", "ceiling-batched": "batched"}
JOIN_EVENT = "bench-join"
SMALL_EVENT = "bench-status-small"
LARGE_EVENT = "bench-status-large"
HEARTBEAT_TTL_SEC = 3600
# Gateway settings the caller's shell might carry; the run decides them, not the shell.
_ENV_PREFIXES = (
    "SERVER_",
    "REDIS_",
    "QUEUE_",
    "AUTH_",
    "RATE_LIMIT_",
    "JWT_",
    "BACKEND_",
    "OBSERVABILITY_",
    "DATABASE_",
    "LOG_LEVEL",
)


@dataclass(frozen=True, slots=True)
class Plan:
    scenarios: tuple[str, ...]
    workers: int
    threads: int
    connections: int
    duration: int
    warmup: int
    preload_small: int
    preload_large: int
    token_sample: int
    memory_extra: int
    quick: bool
    record: bool
    note: str
    gateway_env: dict[str, str]
    results_dir: Path
    docs: Path
    keep_logs: bool


def _pick(value: int | None, quick: bool, normal: int, small: int) -> int:
    if value is not None:
        return value
    return small if quick else normal


def parse_args(argv: list[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Measure join, status (small and large queue) and the ceiling app with wrk.",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--duration", type=int, help="seconds per measured run (15; quick 3)")
    parser.add_argument("--warmup", type=int, help="seconds of unmeasured warm-up (3; quick 1)")
    parser.add_argument(
        "--preload-small", type=int, help="waiters for the small status run (10000)"
    )
    parser.add_argument(
        "--preload-large",
        type=int,
        help="waiters for the large status run and the memory figure (1000000; quick 20000)",
    )
    parser.add_argument(
        "--token-sample", type=int, help="tokens minted per status run (50000; quick 5000)"
    )
    parser.add_argument(
        "--memory-extra",
        type=int,
        help="waiters per side measurement of user/idempotency cost (100000; quick 5000; 0 off)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: short runs, small preload, not recorded"
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not add the run to docs/benchmarks.md"
    )
    parser.add_argument("--note", default="", help="context recorded with the run")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (repeatable), e.g. RATE_LIMIT_RPS=1000000",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep child logs and tokens")
    args = parser.parse_args(argv)

    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    extra_env: dict[str, str] = {}
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--gateway-env wants NAME=VALUE, got {item!r}")
        extra_env[name] = value
    quick = bool(args.quick)
    plan = Plan(
        scenarios=tuple(s for s in SCENARIOS if s in scenarios),
        workers=args.workers,
        threads=args.threads,
        connections=args.connections,
        duration=_pick(args.duration, quick, 15, 3),
        warmup=_pick(args.warmup, quick, 3, 1),
        preload_small=_pick(args.preload_small, quick, 10_000, 10_000),
        preload_large=_pick(args.preload_large, quick, 1_000_000, 20_000),
        token_sample=_pick(args.token_sample, quick, 50_000, 5_000),
        memory_extra=_pick(args.memory_extra, quick, 100_000, 5_000),
        quick=quick,
        record=not (quick or args.no_record),
        note=args.note,
        gateway_env=extra_env,
        results_dir=args.results_dir,
        docs=args.docs,
        keep_logs=bool(args.keep_logs),
    )
    for name in ("workers", "threads", "connections", "duration", "token_sample"):
        if getattr(plan, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if plan.preload_small < 1 or plan.preload_large < 1:
        parser.error("preload sizes must be at least 1")
    if plan.connections < plan.threads:
        parser.error("wrk needs at least one connection per thread")
    return plan


def count_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _unwind_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind through the `finally` blocks that stop the children; a
    second signal during that cleanup is ignored so it cannot leave a process behind."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


class Run:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.secret = secrets.token_urlsafe(36)
        self.redis_port = 0
        self.client: redis.Redis | None = None
        self.results: dict[str, dict[str, Any]] = {}
        self.memory: dict[str, Any] = {}
        self.problems: list[str] = []
        self.token_files: dict[str, Path] = {}
        self.preloaded: dict[str, int] = {}
        self.gateway_env_shown: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------

    @property
    def redis(self) -> redis.Redis:
        assert self.client is not None
        return self.client

    def log(self, text: str) -> None:
        report.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}")

    @contextlib.contextmanager
    def child(self, child: Child) -> Iterator[Child]:
        try:
            yield child
        finally:
            child.stop()

    def wrk(
        self, port: int, script: str, args: list[str], on_measure: Callable[[], None] | None = None
    ) -> WrkResult:
        """Warm up (connections, pools, caches), then the measured run; `on_measure` runs in
        between, after the warm-up's last requests have drained."""
        url = f"http://{HOST}:{port}"
        plan = self.plan
        if plan.warmup > 0:
            run_wrk(
                url,
                script,
                args,
                threads=plan.threads,
                connections=plan.connections,
                duration_s=plan.warmup,
            )
            time.sleep(0.5)
        if on_measure is not None:
            on_measure()
        self.redis.config_resetstat()
        cpu_before = self._redis_cpu()
        result = run_wrk(
            url,
            script,
            args,
            threads=plan.threads,
            connections=plan.connections,
            duration_s=plan.duration,
        )
        result.redis = self._redis_stats(result, self._redis_cpu() - cpu_before)
        return result

    def _redis_cpu(self) -> float:
        cpu = self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def _redis_stats(self, result: WrkResult, cpu_seconds: float) -> dict[str, Any]:
        """Scripts Redis ran per request (the one-round-trip rule) and how busy it was.

        Redis counts the commands a script calls in commandstats too, so the round-trip
        figure is EVALSHA+EVAL per request; `commands` keeps the full breakdown. Counted from
        CONFIG RESETSTAT after the warm-up; it includes the sweeper's calls and the requests in
        flight when wrk stopped, so slightly above 1.00 is expected.
        """
        stats = self.redis.info("commandstats")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if isinstance(value, dict) and not name.startswith(("cmdstat_config", "cmdstat_info"))
        }
        scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
        evalsha = stats.get("cmdstat_evalsha", {})
        return {
            "commands": calls,
            "scripts_per_request": round(scripts / max(1, result.requests), 3),
            "evalsha_usec_per_call": float(evalsha.get("usec_per_call", 0.0)),
            "cpu_share": round(cpu_seconds / max(result.duration_s, 1e-9), 3),
        }

    def record(self, name: str, label: str, result: WrkResult, **extra: Any) -> None:
        if result.error_count:
            detail = ", ".join(f"{k} {v}" for k, v in result.errors.items() if v)
            self.problems.append(f"{label}: {result.error_count} errors ({detail})")
        self.results[name] = {"label": label, **extra, **result.as_dict()}
        lat = result.latency_ms
        self.log(
            f"{label}: {result.rps:,.0f} req/s, p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"
            + (f", [red]{result.error_count} errors[/red]" if result.error_count else "")
        )

    # -- phases --------------------------------------------------------------------------

    def preload_queues(self) -> None:
        plan = self.plan
        if "status-large" in plan.scenarios:
            self.log(f"preloading {plan.preload_large:,} anonymous waiters ({LARGE_EVENT})")
            done = preload.preload(
                self.redis, LARGE_EVENT, plan.preload_large, sample=plan.token_sample
            )
            self.preloaded[LARGE_EVENT] = done.waiters
            keys = preload.key_bytes(self.redis, LARGE_EVENT)
            self.memory["large"] = {
                "event_id": LARGE_EVENT,
                "waiters": done.waiters,
                "kind": "anonymous joins: no user HASH field, no Idempotency-Key",
                "used_memory_before": done.used_memory_before,
                "used_memory_after": done.used_memory_after,
                "bytes_per_waiter": round(done.bytes_per_waiter, 1),
                "memory_usage_keys": keys,
                "key_bytes_per_waiter": round(sum(keys.values()) / done.waiters, 1),
                "preload_seconds": round(done.seconds, 2),
                "preload_joins_per_sec": round(done.waiters / done.seconds),
            }
            self.log(
                f"  {done.seconds:.1f} s ({done.waiters / done.seconds:,.0f} joins/s), "
                f"{done.bytes_per_waiter:.1f} bytes per waiter (used_memory delta)"
            )
            self.token_files["status-large"] = self._tokens(LARGE_EVENT, done.sample)
        if "status-small" in plan.scenarios:
            self.log(f"preloading {plan.preload_small:,} anonymous waiters ({SMALL_EVENT})")
            done = preload.preload(
                self.redis, SMALL_EVENT, plan.preload_small, sample=plan.token_sample
            )
            self.preloaded[SMALL_EVENT] = done.waiters
            self.token_files["status-small"] = self._tokens(SMALL_EVENT, done.sample)

    def _tokens(self, event_id: str, sample: dict[int, int]) -> Path:
        path = self.workdir / f"tokens-{event_id}.txt"
        preload.write_tokens(path, self.secret.encode(), event_id, sample)
        return path

    def side_memory(self) -> None:
        """Per-waiter cost of anonymous, authenticated and Idempotency-Key joins at one size."""
        n = self.plan.memory_extra
        if n <= 0 or "status-large" not in self.plan.scenarios:
            return
        self.log(f"memory side measurements: 3 x {n:,} joins (anonymous, users, idempotency)")
        per: dict[str, float] = {}
        for kind, users, idem in (
            ("anonymous", False, False),
            ("users", True, False),
            ("idempotency", False, True),
        ):
            event_id = f"bench-mem-{kind}"
            done = preload.preload(self.redis, event_id, n, users=users, idempotency=idem)
            per[kind] = done.bytes_per_waiter
            preload.remove_event(self.redis, event_id, n, idem)
        self.memory["side"] = {
            "waiters": n,
            "anonymous_bytes_per_waiter": round(per["anonymous"], 1),
            "authenticated_bytes_per_waiter": round(per["users"], 1),
            "user_hash_bytes_per_user": round(per["users"] - per["anonymous"], 1),
            "idempotency_bytes_per_waiter": round(per["idempotency"], 1),
            "idempotency_key_bytes_per_join": round(per["idempotency"] - per["anonymous"], 1),
        }

    def gateway_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
        shown = {
            "REDIS_ADDRESS": f"{HOST}:{self.redis_port}",
            "SERVER_ENVIRONMENT": "production",
            "LOG_LEVEL": "warning",
            "QUEUE_HEARTBEAT_TTL_SEC": str(HEARTBEAT_TTL_SEC),
            **self.plan.gateway_env,
        }
        self.gateway_env_shown = dict(shown)
        env.update(shown)
        env["QUEUE_TOKEN_SECRET"] = self.secret
        return env

    def run_gateway(self) -> None:
        plan = self.plan
        wanted = [s for s in plan.scenarios if s not in CEILINGS]
        if not wanted:
            return
        port = free_port()
        binary = Path(sys.executable).with_name("ticketgate")
        argv = [str(binary), "serve", "--workers", str(plan.workers), "--port", str(port)]
        self.log(f"starting gateway: {' '.join(argv)}")
        gateway = Child("gateway", argv, env=self.gateway_env(), cwd=REPO, log_dir=self.workdir)
        with self.child(gateway):
            wait_http_ready(gateway, f"http://{HOST}:{port}/readyz")
            if "join" in wanted:
                before: list[int] = []
                result = self.wrk(
                    port,
                    "join.lua",
                    [JOIN_EVENT],
                    lambda: before.append(preload.last_seq(self.redis, JOIN_EVENT)),
                )
                time.sleep(0.5)
                joined = preload.last_seq(self.redis, JOIN_EVENT) - before[0]
                ok = result.requests - result.errors["status"]
                if not ok <= joined <= result.requests + self.plan.connections:
                    self.problems.append(
                        f"join: {joined} waiters created for {ok} successful responses"
                    )
                self.record("join", "join", result, server_joins=joined)
            for name, event_id in (("status-small", SMALL_EVENT), ("status-large", LARGE_EVENT)):
                if name not in wanted:
                    continue
                label = f"status@{count_label(self.preloaded[event_id])}"
                result = self.wrk(port, "status.lua", [str(self.token_files[name])])
                checks = self.check_status(port, name, event_id, label)
                self.record(name, label, result, waiters=self.preloaded[event_id], checks=checks)
            if not gateway.alive():
                self.problems.append("gateway exited during the run")

    def check_status(self, port: int, name: str, event_id: str, label: str) -> dict[str, Any]:
        """After the run: nobody was swept, and sampled tokens still answer `waiting`."""
        left = preload.waiting(self.redis, event_id)
        expected = self.preloaded[event_id]
        if left != expected:
            self.problems.append(f"{label}: {expected - left} preloaded waiters disappeared")
        tokens = self.token_files[name].read_text().split()[:20]
        seen: dict[str, int] = {}
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5) as http:
            for token in tokens:
                response = http.get("/api/v1/queue/status", params={"token": token})
                key = (
                    str(response.json().get("status"))
                    if response.status_code == 200
                    else f"HTTP {response.status_code}"
                )
                seen[key] = seen.get(key, 0) + 1
        if set(seen) - {"waiting", "ready"}:
            self.problems.append(f"{label}: sampled tokens answered {seen}")
        return {"waiting_after_run": left, "sampled_status": seen}

    def run_ceilings(self) -> None:
        for name, client in CEILINGS.items():
            if name in self.plan.scenarios:
                self.run_ceiling(name, client)

    def run_ceiling(self, name: str, client: str) -> None:
        port = free_port()
        binary = Path(sys.executable).with_name("uvicorn")
        argv = [
            str(binary),
            "bench.ceiling:app",
            "--workers",
            str(self.plan.workers),
            "--host",
            HOST,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--no-server-header",
            "--no-date-header",
            "--log-level",
            "warning",
        ]
        env = dict(os.environ)
        env["CEILING_REDIS_URL"] = f"redis://{HOST}:{self.redis_port}/0"
        env["CEILING_CLIENT"] = client
        env["PYTHONPATH"] = str(REPO)
        self.log(f"starting {name} app (CEILING_CLIENT={client}): {' '.join(argv)}")
        ceiling = Child(name, argv, env=env, cwd=REPO, log_dir=self.workdir)
        with self.child(ceiling):
            wait_http_ready(ceiling, f"http://{HOST}:{port}/readyz")
            result = self.wrk(port, "join.lua", [JOIN_EVENT])
            self.record(name, name, result, client=client)

    def execute(self) -> None:
        redis_child, self.redis_port = start_redis(self.workdir)
        with self.child(redis_child):
            self.client = redis.Redis(host=HOST, port=self.redis_port, socket_timeout=120)
            try:
                self.preload_queues()
                self.side_memory()
                self.run_gateway()
                self.run_ceilings()
                self.memory["used_memory_end"] = preload.used_memory(self.redis)
            finally:
                self.client.close()


def summarize(
    plan: Plan, run: Run, started: datetime, argv: list[str], info: dict[str, object]
) -> dict[str, Any]:
    results = run.results
    ratios: dict[str, float] = {}

    def rps(name: str) -> float | None:
        return float(results[name]["rps"]) if name in results else None

    join, small, large = rps("join"), rps("status-small"), rps("status-large")
    for base in CEILINGS:
        ceiling = rps(base)
        if not ceiling:
            continue
        for name, value in (("join", join), ("status-small", small), ("status-large", large)):
            if value is not None:
                ratios[f"{name}/{base}"] = round(value / ceiling, 3)
    if small and large is not None:
        ratios["status-large/status-small"] = round(large / small, 3)
    info["loadavg_end"] = machine.load_average()
    summary: dict[str, Any] = {
        "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.run" + (" " + shlex.join(argv) if argv else ""),
        "git": machine.git_state(),
        "machine": info,
        "plan": {
            "scenarios": list(plan.scenarios),
            "workers": plan.workers,
            "wrk_threads": plan.threads,
            "wrk_connections": plan.connections,
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "preload_small": plan.preload_small,
            "preload_large": plan.preload_large,
            "token_sample": plan.token_sample,
            "quick": plan.quick,
        },
        "gateway_env": run.gateway_env_shown,
        "scenarios": results,
        "memory": run.memory,
        "ratios": ratios,
        "problems": run.problems,
        "note": plan.note,
    }
    summary["goals"] = report.goals(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plan = parse_args(argv)
    _unwind_on_signals()
    started = datetime.now(UTC)
    info = machine.describe()
    workdir = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    run = Run(plan, workdir)
    keep = plan.keep_logs
    try:
        run.execute()
    except (ChildFailed, WrkFailed, redis.RedisError, OSError) as exc:
        keep = True
        report.console.print(f"[red]benchmark failed:[/red] {exc}")
        report.console.print(f"logs kept in {workdir}")
        return 1
    except (KeyboardInterrupt, SystemExit) as exc:
        report.console.print("[yellow]interrupted; child processes stopped[/yellow]")
        return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(plan, run, started, argv, info)
    report.print_summary(summary)
    plan.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = plan.results_dir / f"{stamp}{'-quick' if plan.quick else ''}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    shown = str(out.relative_to(REPO) if out.is_relative_to(REPO) else out)
    report.console.print(f"results: {shown}")
    if plan.record:
        report.update_docs(plan.docs, summary, shown)
        report.console.print(f"recorded in {plan.docs}")
    if plan.keep_logs:
        report.console.print(f"logs and tokens kept in {workdir}")
    return 2 if run.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
