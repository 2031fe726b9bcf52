"""Turn a run's summary into the terminal table, the goal check and docs/benchmarks.md rows.

The goals are issue 2's "Done when" figures (measured on the gateway with its edge off, as in
the foundation) and issue 3's (each scenario with the edge on within 10% of the same scenario
with it off, in the same session); a run reports what it reached against them rather than a
bare pass/fail, and any error or lost waiter is listed, never folded into an average.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

RESULTS_START = "<!-- bench:results:start -->"
RESULTS_END = "<!-- bench:results:end -->"
RUNS_START = "<!-- bench:runs:start -->"
RUNS_END = "<!-- bench:runs:end -->"
EDGE_START = "<!-- bench:edge:start -->"
EDGE_END = "<!-- bench:edge:end -->"
TABLE_HEADER = (
    "| Date | Commit | Setup | join | status (small) | status (large) | ceiling "
    "| ceiling (batched) | join / ceiling | status / ceiling | large / small "
    "| join / batched ceiling | Redis B per waiter | Errors |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)
MIN_SHARE_OF_CEILING = 0.6
MAX_STATUS_DROP = 0.1
MAX_P99_MS = 25.0
MAX_BYTES_PER_WAITER = 256.0
EDGE_TABLE_HEADER = (
    "| Date | Commit | Setup | join: off → on | status (small): off → on "
    "| status (large): off → on | join JWT (on) vs join (off) | Limiter | Errors |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)
MIN_EDGE_SHARE = 0.9
# (edge-on result, edge-off result it is compared with): a signed-in join is held to the
# anonymous join's figure, since that is the "previous req/s" issue 3 speaks of.
EDGE_PAIRS = (
    ("join:on", "join"),
    ("status-small:on", "status-small"),
    ("status-large:on", "status-large"),
    ("join-jwt:on", "join"),
)
FOUNDATION = ("join", "status-small", "status-large", "ceiling", "ceiling-batched")


def _label(summary: dict[str, Any], name: str) -> str:
    return str(summary["scenarios"].get(name, {}).get("label", name))


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issues 2 and 3 that this run has the data for, with the value reached."""
    out = [{"issue": 2, **goal} for goal in _foundation_goals(summary)]
    ratios: dict[str, float] = summary["ratios"]
    for on, off in EDGE_PAIRS:
        key = f"{on}/{off}"
        if key in ratios:
            out.append(
                {
                    "issue": 3,
                    "goal": f"{_label(summary, on)} ≥ 90% of {_label(summary, off)} req/s",
                    "value": f"{ratios[key]:.0%}",
                    "met": ratios[key] >= MIN_EDGE_SHARE,
                }
            )
    out.append(
        {
            "issue": "all",
            "goal": "no errors, no lost waiters",
            "value": f"{len(summary['problems'])} problems",
            "met": not summary["problems"],
        }
    )
    return out


def _foundation_goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    scenarios: dict[str, dict[str, Any]] = summary["scenarios"]
    ratios: dict[str, float] = summary["ratios"]
    out: list[dict[str, Any]] = []
    for name in ("join", "status-small", "status-large"):
        key = f"{name}/ceiling"
        if key in ratios:
            out.append(
                {
                    "goal": f"{_label(summary, name)} ≥ 60% of ceiling req/s",
                    "value": f"{ratios[key]:.0%}",
                    "met": ratios[key] >= MIN_SHARE_OF_CEILING,
                }
            )
    if "status-large/status-small" in ratios:
        ratio = ratios["status-large/status-small"]
        out.append(
            {
                "goal": f"{_label(summary, 'status-large')} within 10% of "
                f"{_label(summary, 'status-small')} req/s",
                "value": f"{ratio:.0%}",
                "met": ratio >= 1 - MAX_STATUS_DROP,
            }
        )
    for name in ("join", "status-small", "status-large"):
        if name in scenarios:
            p99 = float(scenarios[name]["latency_ms"]["p99"])
            out.append(
                {
                    "goal": f"{_label(summary, name)} p99 ≤ 25 ms",
                    "value": f"{p99:.1f} ms",
                    "met": p99 <= MAX_P99_MS,
                }
            )
    large = summary["memory"].get("large")
    if large:
        per = float(large["bytes_per_waiter"])
        out.append(
            {
                "goal": f"Redis ≤ 256 B per waiting user (at {large['waiters']:,})",
                "value": f"{per:.0f} B",
                "met": per <= MAX_BYTES_PER_WAITER,
            }
        )
    return out


def _edge_ratio(summary: dict[str, Any], name: str) -> float | None:
    ratios: dict[str, float] = summary["ratios"]
    for on, off in EDGE_PAIRS:
        if on == name:
            return ratios.get(f"{on}/{off}")
    return None


def print_summary(summary: dict[str, Any]) -> None:
    scenarios: dict[str, dict[str, Any]] = summary["scenarios"]
    ceiling = scenarios.get("ceiling", {}).get("rps")
    plan = summary["plan"]
    table = Table(
        title=f"ticketgate bench · {plan['workers']} workers · wrk -t{plan['wrk_threads']} "
        f"-c{plan['wrk_connections']} -d{plan['duration_s']}s · {summary['date_utc']}"
    )
    for column in ("scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    table.add_column("errors", justify="right")
    table.add_column("× ceiling", justify="right")
    table.add_column("on / off", justify="right")
    table.add_column("scripts/req", justify="right")
    table.add_column("redis µs/call", justify="right")
    table.add_column("redis CPU", justify="right")
    table.add_column("server µs CPU/req", justify="right")
    table.add_column("wrk µs CPU/req", justify="right")
    for name, result in scenarios.items():
        edge = _edge_ratio(summary, name)
        lat = result["latency_ms"]
        errors = int(result["error_count"])
        redis = result.get("redis") or {}
        server = result.get("server") or {}
        table.add_row(
            result["label"],
            f"{result['rps']:,.0f}",
            f"{lat['p50']:.2f}",
            f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}",
            f"{lat['p999']:.2f}",
            f"{lat['max']:.1f}",
            f"[red]{errors}[/red]" if errors else "0",
            f"{result['rps'] / ceiling:.2f}" if ceiling else "-",
            "-" if edge is None else f"[{'green' if edge >= MIN_EDGE_SHARE else 'red'}]{edge:.0%}",
            f"{redis['scripts_per_request']:.2f}" if redis else "-",
            f"{redis['evalsha_usec_per_call']:.1f}" if redis else "-",
            f"{redis['cpu_share']:.0%}" if redis else "-",
            f"{server['cpu_us_per_request']:.0f}" if server else "-",
            f"{result['client_cpu_us_per_request']:.0f}"
            if "client_cpu_us_per_request" in result
            else "-",
        )
    console.print(table)
    memory = summary["memory"]
    if "large" in memory:
        large = memory["large"]
        console.print(
            f"Redis memory at {large['waiters']:,} anonymous waiters: "
            f"{large['bytes_per_waiter']:.1f} B per waiter (used_memory delta), "
            f"{large['key_bytes_per_waiter']:.1f} B in the two ZSETs (MEMORY USAGE)"
        )
    if "side" in memory:
        side = memory["side"]
        console.print(
            f"At {side['waiters']:,} joins: anonymous {side['anonymous_bytes_per_waiter']} B, "
            f"authenticated {side['authenticated_bytes_per_waiter']} B "
            f"(+{side['user_hash_bytes_per_user']} B users HASH field), "
            f"with Idempotency-Key {side['idempotency_bytes_per_waiter']} B "
            f"(+{side['idempotency_key_bytes_per_join']} B per key)"
        )
    edge = summary.get("edge", {})
    if "preflight" in edge or "jwt" in edge:
        console.print(_edge_text(summary))
    rounds = _rounds_text(summary)
    if rounds:
        console.print(rounds)
    goal_table = Table(title="goals")
    goal_table.add_column("issue")
    goal_table.add_column("goal")
    goal_table.add_column("reached", justify="right")
    goal_table.add_column("met")
    for goal in summary["goals"]:
        goal_table.add_row(
            str(goal["issue"]),
            goal["goal"],
            goal["value"],
            "[green]yes[/green]" if goal["met"] else "[red]no[/red]",
        )
    console.print(goal_table)
    for problem in summary["problems"]:
        console.print(f"[red]problem:[/red] {problem}")


def _cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "–"
    lat = result["latency_ms"]
    return f"{result['rps']:,.0f} · {lat['p50']:.1f} / {lat['p99']:.1f}"


def _ratio(ratios: dict[str, float], key: str) -> str:
    return f"{ratios[key]:.0%}" if key in ratios else "–"


def _commit(summary: dict[str, Any]) -> str:
    git = summary["git"]
    dirty = int(git.get("src_uncommitted_files", 0))
    return f"`{git['short']}`" + (f" +{dirty} uncommitted src files" if dirty else "")


def _setup(summary: dict[str, Any]) -> str:
    plan = summary["plan"]
    return (
        f"{plan['workers']} workers, wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']} "
        f"-d{plan['duration_s']}s"
    )


def table_row(summary: dict[str, Any]) -> str:
    s = summary["scenarios"]
    r = summary["ratios"]
    large = summary["memory"].get("large")
    small_label = _label(summary, "status-small")
    large_label = _label(summary, "status-large")
    status_ratio = f"{_ratio(r, 'status-small/ceiling')}; {_ratio(r, 'status-large/ceiling')}"
    errors = sum(int(v.get("error_count", 0)) for k, v in s.items() if k in FOUNDATION)
    cells = [
        summary["date_utc"],
        _commit(summary),
        _setup(summary),
        _cell(s.get("join")),
        f"{small_label}: {_cell(s.get('status-small'))}",
        f"{large_label}: {_cell(s.get('status-large'))}",
        _cell(s.get("ceiling")),
        _cell(s.get("ceiling-batched")),
        _ratio(r, "join/ceiling"),
        status_ratio,
        _ratio(r, "status-large/status-small"),
        _ratio(r, "join/ceiling-batched"),
        f"{large['bytes_per_waiter']:.0f}" if large else "–",
        f"**{errors}**" if errors or summary["problems"] else "0",
    ]
    return "| " + " | ".join(cells) + " |\n"


def _pair_cell(summary: dict[str, Any], on: str, off: str) -> str:
    """`off → on req/s = ratio · p99 off → on ms` for one scenario."""
    s = summary["scenarios"]
    a, b = s.get(off), s.get(on)
    if not a or not b:
        return _cell(b) if b else "–"
    ratio = _ratio(summary["ratios"], f"{on}/{off}")
    return (
        f"{a['rps']:,.0f} → {b['rps']:,.0f} = **{ratio}** · p99 "
        f"{a['latency_ms']['p99']:.1f} → {b['latency_ms']['p99']:.1f}"
    )


def edge_row(summary: dict[str, Any]) -> str:
    """The issue-3 comparison: every gateway scenario with the edge off, then on."""
    s = summary["scenarios"]
    plan = summary["plan"]
    limits = summary["edge"]["rate_limit"]
    setup = f"{_setup(summary)}; {plan['clients']:,} client addresses"
    if "join-jwt:on" in s:
        setup += f", {plan['jwt_users']:,} JWT users"
    errors = sum(int(v.get("error_count", 0)) for v in s.values())
    jwt = s.get("join-jwt:on")
    cells = [
        summary["date_utc"],
        _commit(summary),
        setup,
        _pair_cell(summary, "join:on", "join"),
        _pair_cell(summary, "status-small:on", "status-small"),
        _pair_cell(summary, "status-large:on", "status-large"),
        _pair_cell(summary, "join-jwt:on", "join") if jwt else "–",
        f"{limits['rps']:g}/s, burst {limits['burst']}",
        f"**{errors}**" if errors or summary["problems"] else "0",
    ]
    return "| " + " | ".join(cells) + " |\n"


def _edge_text(summary: dict[str, Any]) -> str:
    """How the edge-on gateway was driven, and what the preflight saw."""
    edge = summary["edge"]
    plan = summary["plan"]
    s = summary["scenarios"]
    limits = edge["rate_limit"]
    parts = [
        f"rate limiting at {limits['rps']:g}/s, burst {limits['burst']} per client key, "
        f"X-Forwarded-For trusted from {limits['trusted_proxies']}; anonymous requests from "
        f"{plan['clients']:,} addresses (status: one address per token)"
    ]
    jwt = edge.get("jwt")
    if jwt:
        text = (
            f"join JWT: {jwt['users']:,} users with RS256 tokens (kid {jwt['kid']}, "
            f"iss {jwt['issuer']}, aud {jwt['audience']}, minted in {jwt['mint_seconds']} s)"
        )
        if "join-jwt:on" in s:
            text += f", each joining once per event, {s['join-jwt:on'].get('events', 0)} events"
        parts.append(text)
    busiest = [
        f"{v['label']} {v['per_client_rps']:g}/s" for v in s.values() if "per_client_rps" in v
    ]
    if busiest:
        parts.append("load per client: " + ", ".join(busiest))
    pre = edge.get("preflight", {})
    if "rate_limit" in pre:
        rl = pre["rate_limit"]
        parts.append(
            f"preflight: remaining {rl['remaining_after_5_same_client']} after 5 joins from one "
            f"address vs {rl['remaining_first_other_client']} for the next address"
        )
    if "jwt" in pre:
        statuses = " → ".join(str(code) for code in pre["jwt"]["statuses"])
        parts.append(f"JWT join, same user again, forged signature: {statuses}")
    keys = [v["ratelimit_keys_in_redis"] for v in s.values() if "ratelimit_keys_in_redis" in v]
    if keys:
        parts.append(f"rate-limit keys synced to Redis by the end: {keys[-1]:,}")
    return "Edge on: " + "; ".join(parts)


def _rounds_text(summary: dict[str, Any]) -> str:
    """Every round's req/s and paired on/off ratio, when the run measured several rounds."""
    count = int(summary["plan"].get("rounds", 1))
    if count < 2:
        return ""
    s = summary["scenarios"]
    parts = []
    for on, off in EDGE_PAIRS:
        pairs = summary.get("ratio_rounds", {}).get(f"{on}/{off}")
        if not pairs or on not in s or off not in s:
            continue
        rounds = ", ".join(
            f"{a:,.0f} → {b:,.0f} ({r:.0%})"
            for a, b, r in zip(s[off]["rounds_rps"], s[on]["rounds_rps"], pairs, strict=True)
        )
        parts.append(f"{s[off]['label']} → {s[on]['label']}: {rounds}")
    for key, pairs in summary.get("ratio_rounds", {}).items():
        name, _, base = key.partition("/")
        if base in ("ceiling", "ceiling-batched") and name in s:
            ratios = ", ".join(f"{r:.1%}" for r in pairs)
            parts.append(f"{s[name]['label']} / {base} per round: {ratios}")
    lone = [
        f"{v['label']}: {', '.join(f'{x:,.0f}' for x in v['rounds_rps'])}"
        for k, v in s.items()
        if "rounds_rps" in v and not any(k in pair for pair in EDGE_PAIRS)
    ]
    return (
        f"Rounds: {count}, edge modes alternating and the ceilings last within each; figures "
        "above are the median round, each on/off and gateway/ceiling ratio the median of the "
        "rounds' paired ratios. " + "; ".join(parts + lone)
    )


def _env_text(env: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items())


def run_details(summary: dict[str, Any], json_path: str) -> str:
    m = summary["machine"]
    plan = summary["plan"]
    envs: dict[str, dict[str, str]] = summary["gateway_env"]
    shared = {
        k: v
        for k, v in next(iter(envs.values()), {}).items()
        if all(env.get(k) == v for env in envs.values())
    }
    gateway = f"`ticketgate serve --workers {plan['workers']}` with {_env_text(shared)}"
    for mode, env in envs.items():
        only = {k: v for k, v in env.items() if k not in shared}
        gateway += f"; edge {mode}: {_env_text(only)}"
    lines = [
        f"### {summary['date_utc']} · {_commit(summary)}",
        "",
        f"- Command (repo root, project venv): `{summary['command']}`",
        f"- Machine: {m['nproc']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, redis-server {m['redis_server']}, "
        f"{m['wrk']}; load average {m['loadavg_start']} at start, {m['loadavg_end']} at end",
        f"- Gateway: {gateway}; ceiling: `uvicorn bench.ceiling:app "
        f"--workers {plan['workers']} --loop uvloop --http httptools` with plain redis-py "
        "asyncio (ceiling) or ticketgate's pipelined executor (ceiling-batched), "
        "driven with the same POST as join",
        f"- Load: wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']}, "
        f"{plan['warmup_s']} s warm-up then {plan['duration_s']} s measured per scenario; "
        f"status cycles through {plan['token_sample']:,} tokens spread over the queue",
    ]
    if any(k.endswith(":on") for k in summary["scenarios"]):
        lines.append(f"- {_edge_text(summary)}")
    rounds = _rounds_text(summary)
    if rounds:
        lines.append(f"- {rounds}")
    memory = summary["memory"]
    if "large" in memory:
        large = memory["large"]
        text = (
            f"- Memory: {large['waiters']:,} anonymous waiters (no users HASH field, no "
            f"Idempotency-Key) cost {large['bytes_per_waiter']:.1f} B each (INFO used_memory "
            f"delta); the two ZSETs hold {large['key_bytes_per_waiter']:.1f} B per waiter "
            f"(MEMORY USAGE); preload {large['preload_seconds']} s"
        )
        if "side" in memory:
            side = memory["side"]
            text += (
                f". At {side['waiters']:,} joins: authenticated joins add "
                f"{side['user_hash_bytes_per_user']} B per user (users HASH field), an "
                f"Idempotency-Key adds {side['idempotency_key_bytes_per_join']} B per join "
                "(string key, 24 h TTL)"
            )
        lines.append(text)
    met = [
        f"{'✓' if g['met'] else '✗'} {g['goal']}: {g['value']}"
        + ("" if g["issue"] == "all" else f" (issue {g['issue']})")
        for g in summary["goals"]
    ]
    lines.append("- Goals: " + "; ".join(met))
    for problem in summary["problems"]:
        lines.append(f"- **Problem:** {problem}")
    if summary["note"]:
        lines.append(f"- Note: {summary['note']}")
    lines.append(f"- Raw figures: `{json_path}`")
    return "\n".join(lines) + "\n\n"


def _insert_before(text: str, start: str, end: str, block: str, scaffold: str) -> str:
    if start not in text or end not in text:
        text = text.rstrip("\n") + "\n\n" + scaffold
    head, _, tail = text.partition(end)
    return head + block + end + tail


def update_docs(docs: Path, summary: dict[str, Any], json_path: str) -> None:
    """Append the run's rows to the results tables (foundation, edge on/off: each only when
    the run measured something for it) and its details to the run log."""
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    scenarios = summary["scenarios"]
    if any(name in scenarios for name in FOUNDATION):
        text = _insert_before(
            text,
            RESULTS_START,
            RESULTS_END,
            table_row(summary),
            f"## Results\n\n{RESULTS_START}\n{TABLE_HEADER}{RESULTS_END}\n",
        )
    if any(name.endswith(":on") for name in scenarios):
        text = _insert_before(
            text,
            EDGE_START,
            EDGE_END,
            edge_row(summary),
            f"## Edge on vs off\n\n{EDGE_START}\n{EDGE_TABLE_HEADER}{EDGE_END}\n",
        )
    text = _insert_before(
        text,
        RUNS_START,
        RUNS_END,
        run_details(summary, json_path),
        f"## Runs\n\n{RUNS_START}\n{RUNS_END}\n",
    )
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)
