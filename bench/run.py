"""Benchmark harness: `python -m bench.run [--quick]` (usage and results: docs/benchmarks.md).

One run owns everything it measures: a private redis-server, the gateway with N workers on
the Redis store, the ceiling app on the same uvicorn stack, and wrk. Waiters are preloaded
through the gateway's own join script, status is driven with tokens signed by the gateway's
own signer, and every child process is stopped on exit, Ctrl-C or error.

`--edge` decides how the gateway's edge (auth, rate limiting) is set up. `off` is the
foundation's measurement: rate limiting disabled, anonymous requests with the foundation's
exact bytes. `on` is the gateway as deployed: rate limiting at its defaults behind a trusted
proxy, every request from one of many client addresses (X-Forwarded-For), plus a join by
signed-in users carrying RS256 JWTs the gateway really validates. `both` (the default) runs
an `off` and an `on` gateway side by side and measures each scenario on one, then at once on
the other, so the on/off ratio of issue 3 comes from one session on one machine state.
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
import statistics
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

from bench import jwts, machine, preload, report
from bench.processes import (
    HOST,
    Child,
    ChildFailed,
    free_port,
    process_group_cpu,
    start_redis,
    wait_http_ready,
)
from bench.wrkrun import WrkFailed, WrkResult, missing_tools_line, run_wrk
from ticketgate.accounts.settings import AccountSettings
from ticketgate.envparse import ConfigError
from ticketgate.middleware.settings import RateLimitSettings

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("join", "status-small", "status-large", "join-jwt", "ceiling", "ceiling-batched")
GATEWAY_SCENARIOS = ("join", "status-small", "status-large", "join-jwt")
CEILINGS = {"ceiling": "redis-py", "ceiling-batched": "batched"}
EDGE_MODES = ("off", "on")
EDGE_ONLY = frozenset({"join-jwt"})  # a JWT is the edge; there is no "off" version of it
JOIN_EVENT = "bench-join"
JOIN_EDGE_EVENT = "bench-join-edge"
JWT_EVENT_PREFIX = "bench-jwt"
SMALL_EVENT = "bench-status-small"
LARGE_EVENT = "bench-status-large"
HEARTBEAT_TTL_SEC = 3600
# The load balancer in front of the `on` gateway: wrk connects from here.
TRUSTED_PROXY = HOST
# Settings the harness decides per mode; `--gateway-env` may not override them.
_OWNED_ENV = frozenset(
    {
        "RATE_LIMIT_ENABLED",
        "RATE_LIMIT_TRUSTED_PROXIES",
        "AUTH_SIGNING_KEY",
        "AUTH_SIGNING_KEY_FILE",
        "DATABASE_PATH",
        "QUEUE_TOKEN_SECRET",
    }
)
# Gateway settings the caller's shell might carry; the run decides them, not the shell.
GATEWAY_ENV_PREFIXES = (
    "SERVER_",
    "REDIS_",
    "QUEUE_",
    "AUTH_",
    "RATE_LIMIT_",
    "JWT_",
    "BACKEND_",
    "OBSERVABILITY_",
    "DATABASE_",
    "IDEMPOTENCY_",
    "LOG_LEVEL",
)


def result_key(name: str, mode: str) -> str:
    """Results of the `off` gateway keep the foundation's names; `on` results get `:on`."""
    return name if mode == "off" else f"{name}:on"


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
    edge_modes: tuple[str, ...]
    clients: int
    jwt_users: int
    rounds: int
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
        description="Measure join, status (small and large queue) and the ceiling app with wrk; "
        "with the gateway's edge (auth, rate limiting) off, on, or both for the on/off ratio.",
    )
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--edge",
        choices=("off", "on", "both"),
        default="both",
        help="gateway edge: off = rate limiting disabled, anonymous requests (the foundation's "
        "measurement); on = rate limiting at its defaults, many client addresses, JWT join; "
        "both = each gateway scenario on both, back to back (default)",
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=65_536,
        help="distinct client addresses (X-Forwarded-For) with the edge on (65536)",
    )
    parser.add_argument(
        "--jwt-users", type=int, help="signed-in users minted for join-jwt (20000; quick 4000)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every scenario this many times, the edge modes alternating and the "
        "ceilings following the gateway within each round; figures are the median round, "
        "on/off and gateway/ceiling ratios the median of the rounds' paired ratios "
        "(default 1)",
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
        help="extra environment for both gateways (repeatable), e.g. RATE_LIMIT_BURST=80",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--keep-logs", action="store_true", help="keep child logs and tokens")
    args = parser.parse_args(argv)

    edge_modes = EDGE_MODES if args.edge == "both" else (args.edge,)
    if args.scenarios is None:
        scenarios = tuple(s for s in SCENARIOS if "on" in edge_modes or s not in EDGE_ONLY)
    else:
        scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if "on" not in edge_modes and EDGE_ONLY & set(scenarios):
        parser.error(f"{', '.join(sorted(EDGE_ONLY & set(scenarios)))} needs --edge on or both")
    extra_env: dict[str, str] = {}
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--gateway-env wants NAME=VALUE, got {item!r}")
        if name in _OWNED_ENV:
            parser.error(f"{name} is set by the harness (see --edge), not by --gateway-env")
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
        edge_modes=edge_modes,
        clients=args.clients,
        jwt_users=_pick(args.jwt_users, quick, 20_000, 4_000),
        rounds=args.rounds,
        results_dir=args.results_dir,
        docs=args.docs,
        keep_logs=bool(args.keep_logs),
    )
    for name in ("workers", "threads", "connections", "duration", "token_sample", "rounds"):
        if getattr(plan, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not plan.threads <= plan.clients < 2**24 - 1:
        parser.error("--clients must be at least --threads and below 16,777,215")
    if plan.jwt_users < plan.threads:
        parser.error("--jwt-users must be at least --threads")
    try:
        RateLimitSettings.from_env(extra_env)
        AccountSettings.from_env(extra_env)
    except ConfigError as exc:
        parser.error(f"--gateway-env: {exc}")
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
        # Every round's result per scenario key, when --rounds measures more than one.
        self.rounds: dict[str, list[dict[str, Any]]] = {}
        self.round_index = 0
        self.memory: dict[str, Any] = {}
        self.problems: list[str] = []
        self.token_files: dict[str, Path] = {}
        self.preloaded: dict[str, int] = {}
        self.gateway_env_shown: dict[str, dict[str, str]] = {}
        # What the `on` gateway limits with (defaults unless --gateway-env changed them).
        self.limits = RateLimitSettings.from_env(plan.gateway_env)
        self.accounts = AccountSettings.from_env(plan.gateway_env)
        self.signing_pem, self.signing_key = jwts.new_key()
        self.jwt_file: Path | None = None
        self.edge: dict[str, Any] = {}
        # Port -> process group of the server listening there (CPU per request).
        self.server_groups: dict[int, int] = {}

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
        self,
        port: int,
        script: str,
        args: list[str],
        on_measure: Callable[[], None] | None = None,
        warmup_args: list[str] | None = None,
    ) -> tuple[WrkResult | None, WrkResult]:
        """Warm up (connections, pools, caches), then the measured run; `on_measure` runs in
        between, after the warm-up's last requests have drained.

        The warm-up counts every response's status (the measured run does not: that costs
        wrk CPU per response), so a scenario answered with 429 or 409 is caught by name."""
        url = f"http://{HOST}:{port}"
        plan = self.plan
        warmup: WrkResult | None = None
        if plan.warmup > 0:
            warmup = run_wrk(
                url,
                script,
                warmup_args if warmup_args is not None else args,
                threads=plan.threads,
                connections=plan.connections,
                duration_s=plan.warmup,
                count_statuses=True,
            )
            time.sleep(0.5)
        if on_measure is not None:
            on_measure()
        self.redis.config_resetstat()
        cpu_before = self._redis_cpu()
        group = self.server_groups.get(port)
        server_before = process_group_cpu(group) if group is not None else 0.0
        idle = [other for other_port, other in self.server_groups.items() if other_port != port]
        idle_before = sum(process_group_cpu(other) for other in idle)
        result = run_wrk(
            url,
            script,
            args,
            threads=plan.threads,
            connections=plan.connections,
            duration_s=plan.duration,
        )
        result.redis = self._redis_stats(result, self._redis_cpu() - cpu_before)
        if group is not None:
            used = process_group_cpu(group) - server_before
            idle_used = sum(process_group_cpu(other) for other in idle) - idle_before
            result.server = {
                "cpu_us_per_request": round(used / max(1, result.requests) * 1e6, 1),
                "cpu_share": round(used / max(result.duration_s, 1e-9), 3),
                "idle_servers_cpu_share": round(idle_used / max(result.duration_s, 1e-9), 4),
            }
        return warmup, result

    def _redis_cpu(self) -> float:
        cpu = self.redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def _redis_stats(self, result: WrkResult, cpu_seconds: float) -> dict[str, Any]:
        """Scripts Redis ran per request (the one-round-trip rule) and how busy it was.

        Redis counts the commands a script calls in commandstats too, so the round-trip
        figure is EVALSHA+EVAL per request; `commands` keeps the full breakdown. Counted from
        CONFIG RESETSTAT after the warm-up; it includes the sweeper's calls, the rate
        limiter's background sync (edge on) and the requests in flight when wrk stopped, so
        slightly above 1.00 is expected.
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

    def record(
        self, name: str, label: str, warmup: WrkResult | None, result: WrkResult, **extra: Any
    ) -> None:
        seen = ""
        if warmup is not None:
            odd = warmup.unexpected_statuses()
            sockets = {k: v for k, v in warmup.errors.items() if k != "status" and v}
            seen = ", ".join(f"HTTP {code} × {n:,}" for code, n in odd.items())
            if odd or sockets:
                detail = ", ".join([seen, *(f"{k} {v}" for k, v in sockets.items())])
                self.problems.append(f"{label} warm-up: {detail.strip(', ')}")
            extra["warmup"] = {
                "requests": warmup.requests,
                "duration_s": round(warmup.duration_s, 3),
                "errors": warmup.errors,
                "status_counts": warmup.status_counts,
            }
        if result.error_count:
            detail = ", ".join(f"{k} {v}" for k, v in result.errors.items() if v)
            hint = f"; the warm-up saw {seen}" if seen else ""
            self.problems.append(f"{label}: {result.error_count} errors ({detail}){hint}")
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

    def mint_jwts(self) -> None:
        """RS256 access tokens for `--jwt-users` distinct users, signed with the key the `on`
        gateway is given, with the issuer and audience it checks."""
        if "join-jwt" not in self.plan.scenarios or "on" not in self.plan.edge_modes:
            return
        users = self.plan.jwt_users
        self.log(f"minting {users:,} RS256 access tokens (kid {self.signing_key.kid})")
        self.jwt_file = self.workdir / "jwts.txt"
        seconds = jwts.mint(
            self.jwt_file,
            self.signing_key,
            users,
            issuer=self.accounts.issuer,
            audience=self.accounts.audience,
        )
        self.edge["jwt"] = {
            "users": users,
            "kid": self.signing_key.kid,
            "issuer": self.accounts.issuer,
            "audience": self.accounts.audience,
            "mint_seconds": round(seconds, 2),
        }

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

    def gateway_env(self, mode: str) -> dict[str, str]:
        """Both gateways get the same settings except the rate limiter (and the trusted proxy
        it reads X-Forwarded-For from); secrets and temp paths are not shown in the docs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(GATEWAY_ENV_PREFIXES)}
        shown = {
            "REDIS_ADDRESS": f"{HOST}:{self.redis_port}",
            "SERVER_ENVIRONMENT": "production",
            "BACKEND_EMBEDDED": "true",  # one gateway per side: its own reference services
            "LOG_LEVEL": "warning",
            "QUEUE_HEARTBEAT_TTL_SEC": str(HEARTBEAT_TTL_SEC),
            "QUEUE_AUTO_CREATE_EVENTS": "true",  # the load joins made-up events
            **self.plan.gateway_env,
            "RATE_LIMIT_ENABLED": "true" if mode == "on" else "false",
        }
        if mode == "on":
            shown["RATE_LIMIT_TRUSTED_PROXIES"] = TRUSTED_PROXY
        env.update(shown)
        env["QUEUE_TOKEN_SECRET"] = self.secret
        env["AUTH_SIGNING_KEY"] = self.signing_pem.decode("ascii")
        env["DATABASE_PATH"] = str(self.workdir / f"accounts-{mode}.db")
        self.gateway_env_shown[mode] = {
            **shown,
            "QUEUE_TOKEN_SECRET": "(random)",
            "AUTH_SIGNING_KEY": f"(bench RSA key, kid {self.signing_key.kid})",
            "DATABASE_PATH": "(temp file)",
        }
        return env

    def run_servers(self) -> None:
        """Start one gateway per edge mode and the ceiling apps, side by side, then measure
        round by round: each scenario on every mode back to back, then the ceilings. Drift
        of the machine then hits both sides of a ratio alike, and with --rounds every
        gateway/ceiling ratio pairs runs of the same round. A server waits idle while
        another is measured; what the idle ones burn is recorded with each run
        (`idle_servers_cpu_share`)."""
        plan = self.plan
        wanted = [s for s in GATEWAY_SCENARIOS if s in plan.scenarios]
        ceilings = [(name, client) for name, client in CEILINGS.items() if name in plan.scenarios]
        with contextlib.ExitStack() as stack:
            gateways = self._start_gateways(stack) if wanted else {}
            ceiling_ports = {
                name: self._start_ceiling(stack, name, client) for name, client in ceilings
            }
            for self.round_index in range(plan.rounds):
                for name in wanted:
                    for mode, (_, port) in gateways.items():
                        if mode == "off" and name in EDGE_ONLY:
                            continue
                        self.run_scenario(name, mode, port)
                        key = result_key(name, mode)
                        self.rounds.setdefault(key, []).append(self.results[key])
                for name, client in ceilings:
                    warmup, result = self.wrk(ceiling_ports[name], "join.lua", [JOIN_EVENT])
                    self.record(name, name, warmup, result, client=client)
                    self.rounds.setdefault(name, []).append(self.results[name])
            if plan.rounds > 1:
                self._keep_median_rounds()
            for mode, (gateway, _) in gateways.items():
                if not gateway.alive():
                    self.problems.append(f"gateway (edge {mode}) exited during the run")

    def _start_gateways(self, stack: contextlib.ExitStack) -> dict[str, tuple[Child, int]]:
        plan = self.plan
        binary = Path(sys.executable).with_name("ticketgate")
        gateways: dict[str, tuple[Child, int]] = {}
        for mode in plan.edge_modes:
            port = free_port()
            argv = [str(binary), "serve", "--workers", str(plan.workers), "--port", str(port)]
            self.log(f"starting gateway (edge {mode}): {' '.join(argv)}")
            gateway = Child(
                f"gateway-{mode}",
                argv,
                env=self.gateway_env(mode),
                cwd=REPO,
                log_dir=self.workdir,
            )
            stack.callback(gateway.stop)
            gateways[mode] = (gateway, port)
            self.server_groups[port] = gateway.process.pid
        for gateway, port in gateways.values():
            wait_http_ready(gateway, f"http://{HOST}:{port}/readyz")
        if "on" in gateways:
            self.preflight_edge(gateways["on"][1])
        return gateways

    def _keep_median_rounds(self) -> None:
        """Each scenario's figures become those of its median round (by req/s), with every
        round's req/s alongside; the ratios are paired per round in `summarize`."""
        for key, runs in self.rounds.items():
            ordered = sorted(runs, key=lambda run: float(run["rps"]))
            self.results[key] = {
                **ordered[(len(ordered) - 1) // 2],
                "rounds_rps": [round(float(run["rps"]), 1) for run in runs],
            }

    def run_scenario(self, name: str, mode: str, port: int) -> None:
        key = result_key(name, mode)
        on = mode == "on"
        suffix = " (edge on)" if on else ""
        if name == "join":
            event_id = JOIN_EDGE_EVENT if on else JOIN_EVENT
            script, args = (
                ("join_clients.lua", [event_id, str(self.plan.clients), str(self.plan.threads)])
                if on
                else ("join.lua", [event_id])
            )
            before: list[int] = []
            warmup, result = self.wrk(
                port, script, args, lambda: before.append(preload.last_seq(self.redis, event_id))
            )
            time.sleep(0.5)
            joined = preload.last_seq(self.redis, event_id) - before[0]
            self._check_joins(f"join{suffix}", result, joined)
            extra = self._client_rate(f"join{suffix}", result, self.plan.clients) if on else {}
            self.record(key, f"join{suffix}", warmup, result, server_joins=joined, **extra)
        elif name == "join-jwt":
            self.run_join_jwt(key, port)
        else:
            event_id = SMALL_EVENT if name == "status-small" else LARGE_EVENT
            label = f"status@{count_label(self.preloaded[event_id])}{suffix}"
            tokens = self.token_files[name]
            clients = min(self.plan.clients, self.plan.token_sample)
            warmup, result = self.wrk(
                port, "status.lua", [str(tokens), *([str(clients)] if on else [])]
            )
            checks = self.check_status(port, name, event_id, label, on)
            extra = self._client_rate(label, result, clients) if on else {}
            self.record(
                key,
                label,
                warmup,
                result,
                waiters=self.preloaded[event_id],
                checks=checks,
                **extra,
            )
        if on:
            self.results[key]["ratelimit_keys_in_redis"] = self._ratelimit_keys()

    def run_join_jwt(self, key: str, port: int) -> None:
        """Signed-in users join, each at most once per event: every pass over the users goes
        to a fresh event (join_jwt.lua), the warm-up and the measured run to different ones.
        Afterwards Redis must hold one waiter and one users-HASH entry per 202."""
        assert self.jwt_file is not None
        label = "join JWT (edge on)"
        users = self.plan.jwt_users

        def args(prefix: str) -> list[str]:
            return [str(self.jwt_file), prefix, str(self.plan.threads), str(self.plan.clients)]

        # Fresh events every round too: a user never joins one event twice.
        measured = f"{JWT_EVENT_PREFIX}-m{self.round_index}"
        warmup, result = self.wrk(
            port,
            "join_jwt.lua",
            args(measured),
            warmup_args=args(f"{JWT_EVENT_PREFIX}-w{self.round_index}"),
        )
        time.sleep(0.5)
        events = preload.events_with_prefix(self.redis, f"{measured}-")
        joined = sum(preload.last_seq(self.redis, event) for event in events)
        signed_in = sum(preload.users_count(self.redis, event) for event in events)
        self._check_joins(label, result, joined)
        if signed_in != joined:
            self.problems.append(
                f"{label}: {joined} waiters but {signed_in} users recorded (a join was anonymous)"
            )
        self.record(
            key,
            label,
            warmup,
            result,
            server_joins=joined,
            users_recorded=signed_in,
            events=len(events),
            **self._client_rate(label, result, users),
        )

    def _check_joins(self, label: str, result: WrkResult, joined: int) -> None:
        """One waiter per successful response; requests still in flight when wrk stopped may
        have joined too (at most one per connection)."""
        ok = result.requests - result.errors["status"]
        if not ok <= joined <= result.requests + self.plan.connections:
            self.problems.append(f"{label}: {joined} waiters created for {ok} successful responses")

    def _client_rate(self, label: str, result: WrkResult, clients: int) -> dict[str, Any]:
        """Each client's share of the load: must stay far below the limit, or a refusal would
        be the scenario's fault rather than the gateway's."""
        per_client = result.rps / clients
        if per_client > self.limits.rps / 2:
            self.problems.append(
                f"{label}: {clients:,} clients at {result.rps:,.0f} req/s is "
                f"{per_client:.1f} req/s each, too close to the limit of {self.limits.rps:g}/s"
            )
        return {"clients": clients, "per_client_rps": round(per_client, 3)}

    def _ratelimit_keys(self) -> int:
        """Rate-limit keys the gateways' background sync has written to Redis so far."""
        return sum(1 for _ in self.redis.scan_iter(match="rl:*", count=10_000))

    def preflight_edge(self, port: int) -> None:
        """Before measuring, prove the `on` gateway is set up as claimed: the limiter is on
        and keyed by the X-Forwarded-For address, and the bench's JWTs are accepted (a
        second join by the same user is refused as a duplicate; a forged one is 401)."""
        found: dict[str, Any] = {}
        path = "/api/v1/queue/join"
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5) as http:
            same = [
                http.post(
                    path,
                    json={"event_id": "bench-preflight"},
                    headers={"X-Forwarded-For": "192.0.2.1"},
                )
                for _ in range(5)
            ]
            other = http.post(
                path, json={"event_id": "bench-preflight"}, headers={"X-Forwarded-For": "192.0.2.2"}
            )
            limit = other.headers.get("ratelimit-policy")
            remaining_same = _remaining(same[-1])
            remaining_other = _remaining(other)
            found["rate_limit"] = {
                "statuses": [r.status_code for r in [*same, other]],
                "ratelimit_policy": limit,
                "remaining_after_5_same_client": remaining_same,
                "remaining_first_other_client": remaining_other,
            }
            if limit is None or any(r.status_code != 202 for r in [*same, other]):
                self.problems.append(f"edge on: rate limiter not answering as expected: {found}")
            elif not remaining_same < remaining_other:
                self.problems.append(
                    "edge on: X-Forwarded-For does not pick the rate-limit key "
                    f"(remaining {remaining_same} vs {remaining_other})"
                )
            if self.jwt_file is not None:
                token = self.jwt_file.read_text().split("\n", 1)[0]
                event = {"event_id": "bench-preflight-jwt"}
                bearer = {"Authorization": f"Bearer {token}"}
                first = http.post(path, json=event, headers=bearer)
                again = http.post(path, json=event, headers=bearer)
                forged = token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
                bad = http.post(path, json=event, headers={"Authorization": f"Bearer {forged}"})
                codes = [_code(again), _code(bad)]
                found["jwt"] = {
                    "statuses": [first.status_code, again.status_code, bad.status_code],
                    "codes": codes,
                }
                expected = ([202, 409, 401], ["DUPLICATE_REQUEST", "INVALID_TOKEN"])
                if (found["jwt"]["statuses"], codes) != expected:
                    self.problems.append(f"edge on: JWT check failed: {found['jwt']}")
        self.edge["preflight"] = found

    def check_status(
        self, port: int, name: str, event_id: str, label: str, on: bool
    ) -> dict[str, Any]:
        """After the run: nobody was swept, and sampled tokens still answer `waiting`."""
        left = preload.waiting(self.redis, event_id)
        expected = self.preloaded[event_id]
        if left != expected:
            self.problems.append(f"{label}: {expected - left} preloaded waiters disappeared")
        tokens = self.token_files[name].read_text().split()[:20]
        seen: dict[str, int] = {}
        # Edge on: from a client of its own, so 2 x 20 checks never meet the limit.
        headers = {"X-Forwarded-For": "192.0.2.10"} if on else {}
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5, headers=headers) as http:
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

    def _start_ceiling(self, stack: contextlib.ExitStack, name: str, client: str) -> int:
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
        stack.callback(ceiling.stop)
        self.server_groups[port] = ceiling.process.pid
        wait_http_ready(ceiling, f"http://{HOST}:{port}/readyz")
        return port

    def execute(self) -> None:
        redis_child, self.redis_port = start_redis(self.workdir)
        with self.child(redis_child):
            self.client = redis.Redis(host=HOST, port=self.redis_port, socket_timeout=120)
            try:
                self.preload_queues()
                self.side_memory()
                self.mint_jwts()
                self.run_servers()
                self.memory["used_memory_end"] = preload.used_memory(self.redis)
            finally:
                self.client.close()


def _remaining(response: httpx.Response) -> int:
    """`r` of the IETF `RateLimit: "default";r=<remaining>;t=<reset>` header, -1 if absent."""
    for part in response.headers.get("ratelimit", "").split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "r" and value.strip().isdigit():
            return int(value)
    return -1


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


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
    paired: dict[str, list[float]] = {}

    def pair_rounds(top: str, bottom: str) -> None:
        """top/bottom per round (each round measured both minutes apart at most: the on run
        right after its off run, the ceilings after the gateway), the median as the ratio."""
        tops, bottoms = run.rounds.get(top, []), run.rounds.get(bottom, [])
        if plan.rounds > 1 and len(tops) == len(bottoms) == plan.rounds:
            pairs = [float(a["rps"]) / float(b["rps"]) for a, b in zip(tops, bottoms, strict=True)]
            paired[f"{top}/{bottom}"] = [round(value, 3) for value in pairs]
            ratios[f"{top}/{bottom}"] = round(statistics.median(pairs), 3)

    for base in CEILINGS:
        for name in ("join", "status-small", "status-large"):
            pair_rounds(name, base)
    for on, off in report.EDGE_PAIRS:
        on_rps, off_rps = rps(on), rps(off)
        if on_rps is not None and off_rps:
            ratios[f"{on}/{off}"] = round(on_rps / off_rps, 3)
        pair_rounds(on, off)
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
            "edge": list(plan.edge_modes),
            "clients": plan.clients,
            "jwt_users": plan.jwt_users,
            "rounds": plan.rounds,
        },
        "gateway_env": run.gateway_env_shown,
        "edge": {
            **run.edge,
            "rate_limit": {
                "rps": run.limits.rps,
                "burst": run.limits.burst,
                "trusted_proxies": TRUSTED_PROXY,
                "sync_interval_ms": run.limits.sync_interval_ms,
                "max_keys": run.limits.max_keys,
            },
        },
        "scenarios": results,
        "memory": run.memory,
        "ratios": ratios,
        "ratio_rounds": paired,
        "problems": run.problems,
        "note": plan.note,
    }
    summary["goals"] = report.goals(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plan = parse_args(argv)
    missing = missing_tools_line("python -m bench.run")
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
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
