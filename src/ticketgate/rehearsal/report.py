"""The report: one self-contained HTML file (PNG plots embedded as data URIs, the JSON
inside too) next to the JSON itself. matplotlib draws off-screen (Agg), no display needed."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

DPI = 80  # the report stays small (a few hundred KB with six plots)


def _png(figure: Figure) -> str:
    """The figure as a 256-colour PNG (a third of the RGBA size; plots use few colours)."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256)
    small = io.BytesIO()
    image.save(small, format="PNG", optimize=True)
    return base64.b64encode(small.getvalue()).decode("ascii")


def plot_timeline(report: dict[str, Any]) -> Figure:
    line = report["timeline"]
    t = line["t_sec"]
    figure, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    axes[0].plot(t, line["queue_depth"], color="tab:blue")
    axes[0].set_ylabel("fans in queue")
    axes[0].set_title("Queue depth (as the fans saw it)")
    axes[1].bar(t, line["admissions_per_sec"], width=1.0, color="tab:green")
    axes[1].set_ylabel("admissions / s")
    axes[1].set_title("Admissions per second (enter granted)")
    axes[2].plot(t, line["requests_per_sec"], color="tab:gray", label="requests")
    axes[2].plot(t, line["errors_per_sec"], color="tab:red", label="errors")
    axes[2].set_ylabel("requests / s")
    axes[2].set_title("Request rate and errors")
    axes[2].legend(loc="upper right")
    axes[3].plot(t, line["loop_lag_max_ms"], color="tab:purple")
    axes[3].axhline(100, color="tab:red", linestyle="--", linewidth=0.8, label="100 ms")
    axes[3].set_ylabel("max lag (ms)")
    axes[3].set_title("The rehearsal tool's own event-loop lag (a slow tool, not a slow gateway)")
    axes[3].legend(loc="upper right")
    axes[3].set_xlabel("time since doors opened (s)")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_admission(report: dict[str, Any]) -> Figure:
    summary = report["time_to_admission_sec"]
    figure, axis = plt.subplots(figsize=(10, 4))
    histogram = summary.get("histogram")
    if histogram:
        edges, counts = histogram["edges_sec"], histogram["counts"]
        widths = [b - a for a, b in itertools.pairwise(edges)]
        axis.bar(edges[:-1], counts, width=widths, align="edge", color="tab:green")
        for point, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
            if point in summary:
                axis.axvline(
                    summary[point],
                    color="black",
                    linestyle=style,
                    label=f"{point} {summary[point]:.1f} s",
                )
        axis.legend()
    axis.set_xlabel("time from join to admission (s)")
    axis.set_ylabel("fans")
    axis.set_title("Distribution of time to admission")
    axis.grid(alpha=0.3)
    return figure


def plot_eta(report: dict[str, Any], samples: list[tuple[float, int, int, float, float]]) -> Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    if samples:
        shown = [s[2] for s in samples]
        true = [s[3] for s in samples]
        left.scatter(true, shown, s=4, alpha=0.3, color="tab:blue")
        top = max(max(shown), max(true), 1.0)
        left.plot([0, top], [0, top], color="black", linewidth=0.8, label="perfect ETA")
        left.legend(loc="upper left")
    left.set_xlabel("true wait that followed (s)")
    left.set_ylabel("ETA shown to the fan (s)")
    left.set_title("ETA shown vs the wait that followed (every poll)")
    left.grid(alpha=0.3)
    bands = report["eta"]["by_position_band"]
    labels = list(bands)
    p50 = [bands[b].get("p50", 0) * 100 for b in labels]
    p90 = [bands[b].get("p90", 0) * 100 for b in labels]
    x = range(len(labels))
    right.bar([i - 0.2 for i in x], p50, width=0.4, label="median", color="tab:blue")
    right.bar([i + 0.2 for i in x], p90, width=0.4, label="p90", color="tab:orange")
    right.axhline(20, color="tab:red", linestyle="--", linewidth=0.8, label="20 %")
    right.set_xticks(list(x), [f"{b}\n(n={bands[b]['count']})" for b in labels])
    right.set_xlabel("position in queue when polled")
    right.set_ylabel("ETA error (% of true wait)")
    right.set_title("ETA error by position band")
    right.legend()
    right.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    return figure


def plot_eta_over_time(report: dict[str, Any]) -> Figure:
    buckets = report["eta"]["by_time_since_open"]
    figure, axis = plt.subplots(figsize=(10, 4))
    labels = list(buckets)
    axis.plot(labels, [buckets[b].get("p50", 0) * 100 for b in labels], marker="o", label="median")
    axis.plot(labels, [buckets[b].get("p90", 0) * 100 for b in labels], marker="o", label="p90")
    axis.axhline(20, color="tab:red", linestyle="--", linewidth=0.8, label="20 %")
    axis.set_xlabel("time since doors opened when polled")
    axis.set_ylabel("ETA error (% of true wait)")
    axis.set_title("ETA error by time since doors opened")
    axis.legend()
    axis.grid(alpha=0.3)
    axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    return figure


def plot_fairness(fair_points: list[tuple[int, int, bool]], report: dict[str, Any]) -> Figure:
    """Places gained or lost against strict FIFO, per admitted fan in join order: FIFO is
    the zero line, a fan above it was admitted later than its turn."""
    figure, axis = plt.subplots(figsize=(10, 4))
    for flag, color, label in (
        (True, "tab:blue", "kept polling, no errors"),
        (False, "tab:orange", "others (saw an error)"),
    ):
        xs = [p[0] for p in fair_points if p[2] is flag]
        ys = [p[1] - p[0] for p in fair_points if p[2] is flag]
        if xs:
            axis.scatter(xs, ys, s=4, alpha=0.5, color=color, label=label)
    axis.axhline(0, color="black", linewidth=0.8, label="strict FIFO")
    fairness = report["fairness"]
    axis.set_xlabel("join order (rank among admitted fans)")
    axis.set_ylabel("admission rank − join rank (places)")
    axis.set_title(
        f"Admission order against join order — {fairness['inversions']} inversions, "
        f"{fairness['unexplained']} unexplained (rule: {fairness['rule']})"
    )
    axis.legend(loc="upper right")
    axis.grid(alpha=0.3)
    return figure


def plot_ghosts(report: dict[str, Any]) -> Figure:
    """Early probes: how long after the heartbeat TTL each looked, and whether the ghost
    was already gone (the sweep must be done by TTL + one interval)."""
    ghosts = report["ghosts"]
    early = ghosts["early_probes"]
    interval = ghosts["bound_sec"] - report["scenario"]["queue"]["heartbeat_ttl_sec"]
    figure, axis = plt.subplots(figsize=(10, 3.5))
    offsets = early["offset_after_ttl_sec"]
    bins = [interval * i / 10 for i in range(11)] if interval > 0 else 10
    swept = [o for o, gone in zip(offsets, early["swept"], strict=True) if gone]
    still = [o for o, gone in zip(offsets, early["swept"], strict=True) if not gone]
    axis.hist(
        [swept, still],
        bins=bins,
        stacked=True,
        color=["tab:green", "tab:red"],
        label=["already swept", "still in the queue"],
    )
    axis.axvline(
        interval,
        color="black",
        linestyle="--",
        linewidth=0.8,
        label="deadline: TTL + one sweep interval",
    )
    axis.set_xlabel("early probe's time after the heartbeat TTL ran out (s)")
    axis.set_ylabel("ghosts probed early")
    axis.set_title(
        f"Ghosts: {ghosts['deadline_probes'] - ghosts['not_swept_within_bound']} of "
        f"{ghosts['deadline_probes']} gone at the deadline; early probes: "
        f"{len(swept)} of {len(offsets)} already swept"
    )
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    axis.grid(alpha=0.3)
    return figure


def plot_latency(report: dict[str, Any]) -> Figure:
    latency = report["latency"]
    names = [k for k in latency if k not in ("unit", "all") and latency[k].get("count")]
    figure, axis = plt.subplots(figsize=(10, 4))
    x = range(len(names))
    for offset, point, color in (
        (-0.25, "p50", "tab:blue"),
        (0.0, "p90", "tab:orange"),
        (0.25, "p99", "tab:red"),
    ):
        axis.bar(
            [i + offset for i in x],
            [latency[n][point] for n in names],
            width=0.25,
            label=point,
            color=color,
        )
    axis.set_xticks(list(x), [f"{n}\n(n={latency[n]['count']})" for n in names])
    axis.set_ylabel("latency (ms)")
    axis.set_title("Latency percentiles per endpoint (measured by the fans)")
    axis.legend()
    axis.grid(alpha=0.3, axis="y")
    return figure


def _table(rows: list[list[Any]], head: list[str]) -> str:
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(report: dict[str, Any], plots: dict[str, str]) -> str:
    tool, fair, eta, ghosts = report["tool"], report["fairness"], report["eta"], report["ghosts"]
    errors, seats = report["errors"], report["seats"]
    slo = report.get("slo")
    scenario = report["scenario"]
    headline = [
        ["target", scenario["base_url"]],
        ["event", scenario["event_id"]],
        ["fans", f"{report['fans']['total']} ({report['fans']['by_kind']})"],
        ["outcomes", report["fans"]["by_outcome"]],
        [
            "time to admission p50 / p90",
            f"{report['time_to_admission_sec'].get('p50')} s / "
            f"{report['time_to_admission_sec'].get('p90')} s",
        ],
        ["ETA median error after the first minute", eta["after_first_minute"]["error"].get("p50")],
        ["FIFO inversions (unexplained)", f"{fair['inversions']} ({fair['unexplained']})"],
        [
            "ghosts gone at TTL + one sweep interval",
            f"{ghosts['deadline_probes'] - ghosts['not_swept_within_bound']} of "
            f"{ghosts['deadline_probes']} probed then ({ghosts['went_silent']} went silent; "
            f"{ghosts['still_there_at_early_probe']} still there at an earlier probe)",
        ],
        [
            "requests / errors",
            f"{errors['requests']} / {errors['errors']} ({errors['error_rate'] * 100:.3f} %)",
        ],
        [
            "seats sold / capacity / sold twice",
            f"{seats['sold']} / {seats['capacity']} / {seats['sold_twice']}",
        ],
        [
            "tool: fans per CPU-second, loop lag p99 / max",
            f"{tool['fans_per_cpu_sec']}, {tool['loop_lag_ms'].get('p99')} ms / "
            f"{tool['loop_lag_ms'].get('max')} ms",
        ],
    ]
    if slo:
        headline.append(["SLO", "PASSED" if slo["passed"] else "FAILED"])
    sections = [
        f"<h1>ticketgate rehearsal — {html.escape(report['started_at'])}</h1>",
        _table(headline, ["", ""]),
    ]
    if slo:
        sections += [
            "<h2>SLO gate</h2>",
            _table(
                [
                    [
                        c["clause"],
                        c["value"],
                        c["limit"],
                        c["unit"],
                        "pass" if c["passed"] else "FAIL",
                    ]
                    for c in slo["clauses"]
                ],
                ["clause", "value", "limit", "unit", "verdict"],
            ),
        ]
    for title, key, text in (
        ("Timeline", "timeline", "Queue depth, admissions, requests and the tool's own lag."),
        ("Time to admission", "admission", "From the join answer to the enter grant."),
        ("ETA accuracy", "eta", eta["definition"]),
        ("ETA accuracy over time", "eta_time", "Median and p90 per 30 s of the on-sale."),
        ("Fairness", "fairness", fair["definition"]),
        ("Ghosts", "ghosts", ghosts["definition"]),
        ("Latency", "latency", "Percentiles per endpoint, in milliseconds."),
    ):
        sections.append(f"<h2>{title}</h2><p>{html.escape(text)}</p>")
        sections.append(f'<img alt="{title}" src="data:image/png;base64,{plots[key]}">')
    sections.append("<h2>Fairness: inversions</h2>")
    sections.append(
        _table(
            [[k, v, fair["rules"].get(k, "")] for k, v in fair["explained"].items()]
            + [["unexplained", fair["unexplained"], "flagged"]],
            ["explained by", "count", "rule"],
        )
    )
    if fair["listed"]:
        keys = list(fair["listed"][0])
        sections.append(_table([[i[k] for k in keys] for i in fair["listed"][:200]], keys))
    sections.append("<h2>Ghosts: figures</h2>")
    sections.append(
        _table(
            [[k, v] for k, v in ghosts.items() if k != "early_probes"]
            + [["early probes: share already swept", ghosts["early_probes"]["share_swept"]]],
            ["", ""],
        )
    )
    sections.append("<h2>Answers by endpoint and code</h2>")
    sections.append(
        _table(
            [
                [r["endpoint"], r["status"], r["code"], r["count"], "error" if r["error"] else ""]
                for r in errors["by_endpoint_code"]
            ],
            ["endpoint", "status", "code", "count", ""],
        )
    )
    sections.append("<h2>Seats</h2>")
    sections.append(_table([[k, v] for k, v in seats.items()], ["", ""]))
    sections.append("<h2>The rehearsal tool</h2>")
    sections.append(_table([[k, v] for k, v in tool.items()], ["", ""]))
    data = json.dumps(report).replace("</", "<\\/")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:left}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>ticketgate rehearsal</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}"
        f'<script type="application/json" id="report">{data}</script></body></html>'
    )


def make_plots(
    report: dict[str, Any],
    eta_samples: list[tuple[float, int, int, float, float]],
    fair_points: list[tuple[int, int, bool]],
) -> dict[str, str]:
    return {
        "timeline": _png(plot_timeline(report)),
        "admission": _png(plot_admission(report)),
        "eta": _png(plot_eta(report, eta_samples)),
        "eta_time": _png(plot_eta_over_time(report)),
        "fairness": _png(plot_fairness(fair_points, report)),
        "ghosts": _png(plot_ghosts(report)),
        "latency": _png(plot_latency(report)),
    }


def write_report(
    report: dict[str, Any],
    prefix: Path,
    eta_samples: list[tuple[float, int, int, float, float]],
    fair_points: list[tuple[int, int, bool]],
    *,
    png_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Write `<prefix>.json` and `<prefix>.html`; with `png_dir`, the PNGs as files too."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_suffix(".json")
    html_path = prefix.with_suffix(".html")
    json_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    plots = make_plots(report, eta_samples, fair_points)
    html_path.write_text(render_html(report, plots), encoding="utf-8")
    if png_dir is not None:
        png_dir.mkdir(parents=True, exist_ok=True)
        for name, data in plots.items():
            (png_dir / f"{name}.png").write_bytes(base64.b64decode(data))
    return json_path, html_path
