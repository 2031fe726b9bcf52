"""Turn a run's summary into the terminal table, the goal check and docs/benchmarks.md rows.

The goals are issue 2's "Done when" figures; a run reports what it reached against them rather
than a bare pass/fail, and any error or lost waiter is listed, never folded into an average.
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


def _label(summary: dict[str, Any], name: str) -> str:
    return str(summary["scenarios"].get(name, {}).get("label", name))


def goals(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of issue 2 that this run has the data for, with the value reached."""
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
    out.append(
        {
            "goal": "no errors, no lost waiters",
            "value": f"{len(summary['problems'])} problems",
            "met": not summary["problems"],
        }
    )
    return out


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
    table.add_column("scripts/req", justify="right")
    table.add_column("redis µs/call", justify="right")
    table.add_column("redis CPU", justify="right")
    for result in scenarios.values():
        lat = result["latency_ms"]
        errors = int(result["error_count"])
        redis = result.get("redis") or {}
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
            f"{redis['scripts_per_request']:.2f}" if redis else "-",
            f"{redis['evalsha_usec_per_call']:.1f}" if redis else "-",
            f"{redis['cpu_share']:.0%}" if redis else "-",
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
    goal_table = Table(title="goals (issue 2)")
    goal_table.add_column("goal")
    goal_table.add_column("reached", justify="right")
    goal_table.add_column("met")
    for goal in summary["goals"]:
        goal_table.add_row(
            goal["goal"], goal["value"], "[green]yes[/green]" if goal["met"] else "[red]no[/red]"
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


def table_row(summary: dict[str, Any]) -> str:
    s = summary["scenarios"]
    r = summary["ratios"]
    plan = summary["plan"]
    large = summary["memory"].get("large")
    setup = (
        f"{plan['workers']} workers, wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']} "
        f"-d{plan['duration_s']}s"
    )
    small_label = _label(summary, "status-small")
    large_label = _label(summary, "status-large")
    status_ratio = f"{_ratio(r, 'status-small/ceiling')}; {_ratio(r, 'status-large/ceiling')}"
    errors = sum(int(v.get("error_count", 0)) for v in s.values())
    cells = [
        summary["date_utc"],
        _commit(summary),
        setup,
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


def run_details(summary: dict[str, Any], json_path: str) -> str:
    m = summary["machine"]
    plan = summary["plan"]
    env = " ".join(f"{k}={v}" for k, v in summary["gateway_env"].items())
    lines = [
        f"### {summary['date_utc']} · {_commit(summary)}",
        "",
        f"- Command (repo root, project venv): `{summary['command']}`",
        f"- Machine: {m['nproc']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, "
        f"Linux {m['kernel']}, Python {m['python']}, redis-server {m['redis_server']}, "
        f"{m['wrk']}; load average {m['loadavg_start']} at start, {m['loadavg_end']} at end",
        f"- Gateway: `ticketgate serve --workers {plan['workers']}` with {env} "
        "QUEUE_TOKEN_SECRET=(random); ceiling: `uvicorn bench.ceiling:app "
        f"--workers {plan['workers']} --loop uvloop --http httptools` with plain redis-py "
        "asyncio (ceiling) or ticketgate's pipelined executor (ceiling-batched), "
        "driven with the same POST as join",
        f"- Load: wrk -t{plan['wrk_threads']} -c{plan['wrk_connections']}, "
        f"{plan['warmup_s']} s warm-up then {plan['duration_s']} s measured per scenario; "
        f"status cycles through {plan['token_sample']:,} tokens spread over the queue",
    ]
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
    met = [f"{'✓' if g['met'] else '✗'} {g['goal']}: {g['value']}" for g in summary["goals"]]
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
    """Append the run's row to the results table and its details to the run log."""
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    text = _insert_before(
        text,
        RESULTS_START,
        RESULTS_END,
        table_row(summary),
        f"## Results\n\n{RESULTS_START}\n{TABLE_HEADER}{RESULTS_END}\n",
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
