"""Concurrent A/B: what a setting costs, as two gateways loaded at the same moment.

Why (docs/benchmarks.md, "A/B at the same moment"): on this shared 2-core box the throughput
of one configuration swings by 20-40% between back-to-back runs (the host's noise, not the
gateway's), so an on/off ratio from two runs taken one after the other says little about a
10% goal. Here gateway A and gateway B, identical but for the settings under test, run side by
side on one Redis and are driven *at the same time* by two wrk processes sending the same
requests. Whatever the machine does then hits both alike; both compete for the same cores, so
the ratio of their request counts is the inverse ratio of their CPU cost per request. Every
round's ratio is kept; the median is the figure.

Presets (`--preset`):

- `edge`: A has rate limiting off, B on at its defaults with X-Forwarded-For trusted from
  127.0.0.1 (issue 3). Both get the same requests: every one from one of 65,536 client
  addresses, as behind a load balancer.
- `observability`: both with rate limiting off (the foundation's gateway, as issue 5's
  earlier figures); A has metrics, the access line and tracing off; B has metrics on and
  tracing sampled at 0.1, exporting to a live OTLP sink (`bench/otlp_sink.py`), access line
  off (issue 5's setting); `observability-defaults` is B with the access line on as well.

- `defaults`: both sides at the production defaults (rate limiting and metrics on, the
  65,536 X-Forwarded-For clients believed from 127.0.0.1); with
  `--a-tree` it compares two versions of the code rather than two settings.

`--a-tree PATH` runs gateway A from another checkout of this repository (with its own
`.venv`, e.g. `git worktree add --detach ../base <commit> && ../base/scripts/bootstrap.sh`):
the cost of a change, measured at the same moment as the code before it. Each side then has
its own Redis (the two versions may lay out their keys differently), and the status queue of
each side is filled by that side's own `bench.preload`.

Scenarios: `join` and `status` send the same requests to both sides; `join-jwt` sends A the
anonymous join and B a join by one of 20,000 signed-in users (RS256 tokens from the gateways'
own signing key, as bench/run.py's join JWT), so with `--preset edge` it measures what a
signed-in fan's join costs against the anonymous join with the edge off.

Run (repo root, project venv; needs wrk and redis-server):
  .venv/bin/python -m bench.ab --preset edge --scenario status
  .venv/bin/python -m bench.ab --preset observability --scenario join --rounds 5
  .venv/bin/python -m bench.ab --preset defaults --scenario status --a-tree ../base

Results are printed and written to bench/results/ab-<UTC stamp>.json; they are not added to
docs/benchmarks.md automatically (copy the printed line and the command).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import jwts, machine
from bench.processes import HOST, Child, free_port, start_redis, wait_http_ready
from bench.run import GATEWAY_ENV_PREFIXES
from bench.wrkrun import WrkResult, missing_tools_line, run_wrk
from ticketgate.accounts.settings import AccountSettings

REPO = Path(__file__).resolve().parent.parent
STATUS_EVENT = "ab-status"
JWT_USERS = 20_000
CLIENTS = 65_536
# The observability presets measure on the foundation's gateway: rate limiting off.
_OFF = {
    "RATE_LIMIT_ENABLED": "false",
    "OBSERVABILITY_METRICS_ENABLED": "false",
    "LOG_ACCESS": "false",
}
PRESETS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "defaults": (
        {"RATE_LIMIT_TRUSTED_PROXIES": HOST},
        {"RATE_LIMIT_TRUSTED_PROXIES": HOST},
    ),
    "edge": (
        {"RATE_LIMIT_ENABLED": "false"},
        {"RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_TRUSTED_PROXIES": HOST},
    ),
    "observability": (
        {**_OFF, "OBSERVABILITY_TRACING_ENABLED": "false"},
        {
            "RATE_LIMIT_ENABLED": "false",
            "OBSERVABILITY_METRICS_ENABLED": "true",
            "LOG_ACCESS": "false",
            "OBSERVABILITY_TRACING_ENABLED": "true",
            "OBSERVABILITY_SAMPLE_RATE": "0.1",
        },
    ),
    "observability-defaults": (
        {**_OFF, "OBSERVABILITY_TRACING_ENABLED": "false"},
        {
            "RATE_LIMIT_ENABLED": "false",
            "OBSERVABILITY_METRICS_ENABLED": "true",
            "LOG_ACCESS": "true",
            "OBSERVABILITY_TRACING_ENABLED": "true",
            "OBSERVABILITY_SAMPLE_RATE": "0.1",
        },
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--scenario", choices=("join", "status", "join-jwt"), required=True)
    parser.add_argument(
        "--b-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change or add a setting of gateway B only (repeatable), e.g. to split a preset: "
        "--preset observability --b-env OBSERVABILITY_TRACING_ENABLED=false",
    )
    parser.add_argument(
        "--a-tree",
        type=Path,
        default=None,
        metavar="PATH",
        help="run gateway A from this checkout (its .venv) to compare two versions of the code",
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (5)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round (10)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (3)")
    parser.add_argument("--workers", type=int, default=1, help="workers per gateway (1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c per gateway (32)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.workers, args.connections) < 1:
        parser.error("--rounds, --duration, --workers and --connections must be at least 1")
    for item in args.b_env:
        name, sep, _ = item.partition("=")
        if not sep or not name:
            parser.error(f"--b-env wants NAME=VALUE, got {item!r}")
    if args.a_tree is not None:
        args.a_tree = args.a_tree.resolve()
        if not (args.a_tree / ".venv" / "bin" / "ticketgate").is_file():
            parser.error(f"--a-tree {args.a_tree}: no .venv/bin/ticketgate (bootstrap it first)")
    return args


# Run in each side's own tree (cwd), so its own join script and key layout fill the queue.
_PRELOAD = """
import sys
from pathlib import Path
import redis
from bench import preload
port, event, tokens, secret = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
client = redis.Redis(host="127.0.0.1", port=int(port), socket_timeout=120)
done = preload.preload(client, event, 10_000, sample=50_000)
preload.write_tokens(tokens, secret.encode(), event, done.sample)
"""


def preload_status(tree: Path, redis_port: int, tokens: Path, secret: str) -> None:
    """Fill the status event in one side's Redis with that side's own preload code."""
    subprocess.run(
        [
            str(tree / ".venv" / "bin" / "python"),
            "-c",
            _PRELOAD,
            str(redis_port),
            STATUS_EVENT,
            str(tokens),
            secret,
        ],
        cwd=tree,
        check=True,
    )


def gateway_env(
    redis_port: int, secret: str, workdir: Path, side: str, extra: dict[str, str]
) -> dict[str, str]:
    """The bench harness's production settings (bench/run.py), plus the side's own; the
    shell's gateway settings are dropped as bench/run.py drops them, and its OTEL_* and LOG_*
    too, which the observability presets decide."""
    prefixes = (*GATEWAY_ENV_PREFIXES, "OTEL_", "LOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "REDIS_ADDRESS": f"{HOST}:{redis_port}",
            "SERVER_ENVIRONMENT": "production",
            "BACKEND_EMBEDDED": "true",  # one gateway per side: its own reference services
            "LOG_LEVEL": "warning",
            "QUEUE_HEARTBEAT_TTL_SEC": "3600",
            "QUEUE_AUTO_CREATE_EVENTS": "true",  # the load joins made-up events
            "QUEUE_TOKEN_SECRET": secret,
            "DATABASE_PATH": str(workdir / f"accounts-{side}.db"),
            **extra,
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    missing = missing_tools_line("python -m bench.ab")
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    env_a, env_b = PRESETS[args.preset]
    env_b = {**env_b, **dict(item.partition("=")[::2] for item in args.b_env)}
    started = datetime.now(UTC)
    info = machine.describe()
    workdir = Path(tempfile.mkdtemp(prefix="tg-ab-"))
    secret = secrets.token_urlsafe(36)
    signing_pem, signing_key = jwts.new_key()
    rounds: list[dict[str, Any]] = []
    trees = {"a": args.a_tree or REPO, "b": REPO}
    with contextlib.ExitStack() as stack:
        redis_ports: dict[str, int] = {}
        for side in ("a", "b") if args.a_tree else ("a",):
            redis_child, redis_ports[side] = start_redis(workdir, f"redis-{side}")
            stack.callback(redis_child.stop)
        redis_ports.setdefault("b", redis_ports["a"])
        if env_b.get("OBSERVABILITY_TRACING_ENABLED") == "true":
            sink_port = free_port()
            sink = Child(
                "otlp-sink",
                [
                    sys.executable,
                    "-m",
                    "bench.otlp_sink",
                    "--port",
                    str(sink_port),
                    "--seconds",
                    "3600",
                ],
                cwd=REPO,
                log_dir=workdir,
            )
            stack.callback(sink.stop)
            env_b = {**env_b, "OBSERVABILITY_OTLP_ENDPOINT": f"http://{HOST}:{sink_port}"}
        anonymous_join = ("join_clients.lua", ["ab-join", str(CLIENTS), "1"])
        load: dict[str, Callable[[str], tuple[str, list[str]]]] = {
            "a": lambda _: anonymous_join,
            "b": lambda _: anonymous_join,
        }
        if args.scenario == "status":
            for side in sorted(set(redis_ports)) if args.a_tree else ("a",):
                preload_status(
                    trees[side], redis_ports[side], workdir / f"tokens-{side}.txt", secret
                )
            status_a = ("status.lua", [str(workdir / "tokens-a.txt"), str(CLIENTS)])
            status_b = (
                "status.lua",
                [str(workdir / f"tokens-{'b' if args.a_tree else 'a'}.txt"), str(CLIENTS)],
            )
            load = {"a": lambda _: status_a, "b": lambda _: status_b}
        elif args.scenario == "join-jwt":
            # B's fans are signed in (bench/run.py's join JWT): each user joins an event once,
            # every pass over the users and every round to a fresh event (join_jwt.lua).
            accounts = AccountSettings.from_env({})
            jwt_file = workdir / "jwts.txt"
            jwts.mint(
                jwt_file, signing_key, JWT_USERS, issuer=accounts.issuer, audience=accounts.audience
            )
            load["b"] = lambda label: (
                "join_jwt.lua",
                [str(jwt_file), f"ab-jwt-{label}", "1", str(CLIENTS)],
            )
        ports: dict[str, int] = {}
        for side, extra in (("a", env_a), ("b", env_b)):
            port = free_port()
            binary = trees[side] / ".venv" / "bin" / "ticketgate"
            child = Child(
                f"gateway-{side}",
                [str(binary), "serve", "--workers", str(args.workers), "--port", str(port)],
                env={
                    **gateway_env(redis_ports[side], secret, workdir, side, extra),
                    "AUTH_SIGNING_KEY": signing_pem.decode("ascii"),
                },
                cwd=trees[side],
                log_dir=workdir,
            )
            stack.callback(child.stop)
            wait_http_ready(child, f"http://{HOST}:{port}/readyz")
            ports[side] = port

        def both(seconds: int, label: str) -> tuple[WrkResult, WrkResult]:
            with ThreadPoolExecutor(2) as pool:
                a, b = (
                    pool.submit(
                        run_wrk,
                        f"http://{HOST}:{ports[side]}",
                        *load[side](label),
                        threads=1,
                        connections=args.connections,
                        duration_s=seconds,
                    )
                    for side in ("a", "b")
                )
                return a.result(), b.result()

        both(args.warmup, "w")
        for index in range(args.rounds):
            a, b = both(args.duration, str(index))
            ratio = b.requests / max(1, a.requests)
            rounds.append(
                {
                    "a": {
                        "rps": round(a.rps, 1),
                        "errors": a.error_count,
                        "p99": a.latency_ms["p99"],
                    },
                    "b": {
                        "rps": round(b.rps, 1),
                        "errors": b.error_count,
                        "p99": b.latency_ms["p99"],
                    },
                    "b_over_a": round(ratio, 3),
                }
            )
            print(
                f"{time.strftime('%H:%M:%S')} round {index + 1}: A {a.rps:,.0f} req/s, "
                f"B {b.rps:,.0f} req/s, B/A {ratio:.1%}"
                + (
                    f" (errors A {a.error_count}, B {b.error_count})"
                    if a.error_count or b.error_count
                    else ""
                ),
                flush=True,
            )
    ratios = [r["b_over_a"] for r in rounds]
    errors = sum(r["a"]["errors"] + r["b"]["errors"] for r in rounds)
    summary = {
        "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.ab " + " ".join(sys.argv[1:] if argv is None else argv),
        "git": machine.git_state(),
        "machine": {**info, "loadavg_end": machine.load_average()},
        "preset": args.preset,
        "a_tree": str(args.a_tree) if args.a_tree else None,
        "scenario": args.scenario,
        "env_a": env_a,
        "env_b": env_b,
        "workers": args.workers,
        "connections_each": args.connections,
        "duration_s": args.duration,
        "rounds": rounds,
        "median_b_over_a": statistics.median(ratios),
        "errors": errors,
    }
    out = REPO / "bench" / "results" / f"ab-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.preset} · {args.scenario} · {args.workers} worker(s) each · "
        f"B/A per round {', '.join(f'{r:.0%}' for r in ratios)} · median "
        f"{statistics.median(ratios):.1%} · errors {errors} · {out.relative_to(REPO)}"
    )
    return 0 if errors == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
