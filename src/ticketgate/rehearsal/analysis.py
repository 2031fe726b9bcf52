"""From what the fans saw to the report's figures: fairness, ETA honesty, ghosts, errors,
latency and seats. Pure functions over the run's records (no HTTP, no plotting), so the
JSON report, the SLO gate and the tests all read the same numbers.

Definitions (also in docs/rehearsal.md):
- A fan "definitely joined before" another when its join answer arrived before the other's
  join request left; overlapping joins have no known order and are never compared.
- An inversion: fan B, who definitely joined after A, was granted entry, and afterwards the
  gateway told A to keep waiting (a status saying not ready, or an enter refused, asked
  after B's grant answer arrived). Only fans who kept polling and saw no error count as A.
- The moment a fan's turn came: the first "ready" answer after the last "wait" answer it
  got (the grant when it entered without one). The fan polls when the gateway says, so this
  is the wait the fan actually lived through, the gateway's own poll hint included. A poll's
  true wait is that moment minus the poll's answer time; its ETA error is
  |eta - true wait| / max(true wait, 1 s).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Any

import numpy as np

from ticketgate.rehearsal.driver import RunResult
from ticketgate.rehearsal.record import ENDPOINTS, FanRecord, is_expected
from ticketgate.rehearsal.scenario import scenario_dict

POSITION_BANDS = ((1, 10), (11, 100), (101, 1_000), (1_001, 10_000), (10_001, 10**9))
TIME_BUCKET_SEC = 30
FIRST_MINUTE_SEC = 60.0
MIN_TRUE_WAIT_SEC = 1.0
LISTED_INVERSIONS = 500
ATTRIBUTED_INVERSIONS = 200_000
HISTOGRAM_BINS = 40

RULE_TEXT = {
    "window_bucket": (
        "admission window + token bucket: inside the window the bucket's tokens go to "
        "whichever ready fan asks first; A was throttled (429) while B got a token"
    ),
    "min_wait_band": (
        "admission window minimum wait: A stood inside the window but had not yet waited "
        "its position band's minimum"
    ),
    "bounded_overtaking": (
        "serving frontier: released capacity beyond the bucket flows to the next places, "
        "so a fan may be overtaken by at most the bucket capacity"
    ),
}


def percentiles(values: Any, points: tuple[float, ...] = (50, 90, 95, 99)) -> dict[str, float]:
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"count": 0}
    out: dict[str, float] = {"count": int(data.size)}
    for point in points:
        out[f"p{point:g}"] = round(float(np.percentile(data, point)), 3)
    out["max"] = round(float(data.max()), 3)
    out["mean"] = round(float(data.mean()), 3)
    return out


def _r(value: float, digits: int = 3) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def decided_rule(result: RunResult) -> str:
    rule = result.scenario.queue.rule
    if rule != "auto":
        return rule
    return "frontier" if result.frontier_seen else "window"


# -- per-fan derived facts --------------------------------------------------------------------


def wait_events(fan: FanRecord) -> list[tuple[float, str, int]]:
    """Every "keep waiting" answer: (request sent, what, position known then), in time
    order. A status that is not ready, or an enter refused."""
    events: list[tuple[float, str, int]] = []
    position = 0
    polls = fan.polls
    refusals = sorted(fan.refusals)
    i = 0
    for poll in polls:
        while i < len(refusals) and refusals[i][0] < poll.sent:
            events.append((refusals[i][0], refusals[i][2], position))
            i += 1
        position = poll.position
        if not poll.ready and poll.status in ("waiting", "ready"):
            events.append((poll.sent, "not_ready", poll.position))
    for sent, _, code in refusals[i:]:
        events.append((sent, code, position))
    return events


def eligible_moment(fan: FanRecord) -> float:
    """When the fan's turn came, as the fan saw it (see the module docstring).

    Not the midpoint between the last "wait" and the first "ready": a gateway whose poll
    hint points at the turn makes the fan ask right when the turn comes, and the midpoint
    would then halve every honest ETA's true wait."""
    first_ready = math.nan
    moments: list[tuple[float, bool]] = [(p.recv, p.ready) for p in fan.polls]
    moments += [(recv, False) for _, recv, _ in fan.refusals]
    for recv, ready in sorted(moments):
        if recv > fan.grant_recv:
            break
        if ready:
            if math.isnan(first_ready):
                first_ready = recv
        else:
            first_ready = math.nan
    return fan.grant_recv if math.isnan(first_ready) else first_ready


def left_queue_at(fan: FanRecord, bound: float, end: float) -> float:
    """When the fan stopped counting toward the queue's depth (its own view)."""
    if fan.granted:
        return fan.grant_recv
    if not math.isnan(fan.silent_at):
        return fan.silent_at + bound
    if fan.outcome in ("unfinished", ""):
        return end
    return fan.polls[-1].recv if fan.polls else fan.join_recv


# -- sections ---------------------------------------------------------------------------------


def timeline(result: RunResult) -> dict[str, list[float]]:
    stats = result.stats
    seconds = max(1, math.ceil(result.duration_sec))
    queue = result.scenario.queue
    bound = queue.heartbeat_ttl_sec + queue.sweep_interval_ms / 1000.0
    depth = np.zeros(seconds + 1)
    joins = np.zeros(seconds + 1)
    for fan in result.records:
        if not fan.joined:
            continue
        start = min(seconds, int(fan.join_recv))
        stop = min(seconds, int(left_queue_at(fan, bound, result.duration_sec)))
        joins[start] += 1
        depth[start] += 1
        depth[stop] -= 1
    depth = np.cumsum(depth)[:seconds]

    def series(values: Any) -> list[float]:
        out = [float(v) for v in list(values)[:seconds]]
        return out + [0.0] * (seconds - len(out))

    return {
        "t_sec": [float(s) for s in range(seconds)],
        "queue_depth": series(depth),
        "joins_per_sec": series(joins),
        "admissions_per_sec": series(stats.grants_per_sec),
        "requests_per_sec": series(stats.requests_per_sec),
        "errors_per_sec": series(stats.errors_per_sec),
        "loop_lag_max_ms": [round(v, 1) for v in series(stats.lag_max_per_sec)],
    }


def time_to_admission(records: list[FanRecord]) -> dict[str, Any]:
    waits = [fan.grant_recv - fan.join_recv for fan in records if fan.granted and fan.joined]
    summary: dict[str, Any] = percentiles(waits)
    summary["unit"] = "s"
    if waits:
        counts, edges = np.histogram(waits, bins=HISTOGRAM_BINS)
        summary["histogram"] = {
            "edges_sec": [round(float(e), 2) for e in edges],
            "counts": [int(c) for c in counts],
        }
    return summary


def eta_samples(records: list[FanRecord]) -> list[tuple[float, int, int, float, float]]:
    """(poll answer time, position, ETA shown, true wait, relative error) for every
    not-ready poll of every admitted fan."""
    samples = []
    for fan in records:
        if not fan.granted or not fan.polls:
            continue
        moment = eligible_moment(fan)
        for poll in fan.polls:
            if poll.ready or poll.status != "waiting" or poll.eta_sec < 0 or poll.recv >= moment:
                continue
            true_wait = moment - poll.recv
            error = abs(poll.eta_sec - true_wait) / max(true_wait, MIN_TRUE_WAIT_SEC)
            samples.append((poll.recv, poll.position, poll.eta_sec, true_wait, error))
    return samples


def eta_accuracy(records: list[FanRecord]) -> dict[str, Any]:
    samples = eta_samples(records)
    grants = [fan.grant_recv for fan in records if fan.granted]
    first_grant = min(grants) if grants else math.nan
    out: dict[str, Any] = {
        "definition": "|eta_sec - true wait| / max(true wait, 1 s), per not-ready poll",
        "samples": len(samples),
        "error": percentiles([s[4] for s in samples], (50, 90, 99)),
        "first_admission_sec": _r(first_grant),
    }
    late = [s for s in samples if s[0] >= first_grant + FIRST_MINUTE_SEC]
    out["after_first_minute"] = {
        "from_sec": _r(first_grant + FIRST_MINUTE_SEC),
        "error": percentiles([s[4] for s in late], (50, 90, 99)),
    }
    bands = {}
    for low, high in POSITION_BANDS:
        chosen = [s[4] for s in samples if low <= s[1] <= high]
        if chosen:
            label = f"{low}-{high}" if high < 10**9 else f"{low}+"
            bands[label] = percentiles(chosen, (50, 90, 99))
    out["by_position_band"] = bands
    buckets: dict[int, list[float]] = {}
    for sample in samples:
        buckets.setdefault(int(sample[0] // TIME_BUCKET_SEC), []).append(sample[4])
    out["by_time_since_open"] = {
        f"{k * TIME_BUCKET_SEC}-{(k + 1) * TIME_BUCKET_SEC}s": percentiles(v, (50, 90, 99))
        for k, v in sorted(buckets.items())
    }
    return out


def fairness(result: RunResult) -> dict[str, Any]:
    """Inversions among fans who kept polling (see the module docstring), attributed to the
    admission rule that allows them, or flagged."""
    scenario = result.scenario
    rule = decided_rule(result)
    records = result.records
    granted = [fan for fan in records if fan.granted and fan.joined]
    keepers = [
        fan
        for fan in records
        if fan.kind == "stay" and fan.joined and not fan.disturbed and fan.polls
    ]
    waits = {fan.n: wait_events(fan) for fan in keepers}
    last_wait = np.array([waits[f.n][-1][0] if waits[f.n] else -1.0 for f in keepers])
    a_join = np.array([f.join_recv for f in keepers])
    b_join = np.array([f.join_sent for f in granted])
    b_grant = np.array([f.grant_recv for f in granted])
    pairs: list[tuple[int, int]] = []
    total = 0
    chunk = 256
    for start in range(0, len(keepers), chunk):
        a_j = a_join[start : start + chunk, None]
        a_w = last_wait[start : start + chunk, None]
        mask = (b_join[None, :] > a_j) & (b_grant[None, :] < a_w)
        rows, cols = np.nonzero(mask)
        total += int(rows.size)
        room = ATTRIBUTED_INVERSIONS - len(pairs)
        if room > 0:
            pairs.extend(zip((rows[:room] + start).tolist(), cols[:room].tolist(), strict=True))
    bound = scenario.queue.heartbeat_ttl_sec + scenario.queue.sweep_interval_ms / 1000.0
    joined_sorted = sorted(
        ((f.join_sent + f.join_recv) / 2.0, left_queue_at(f, bound, result.duration_sec))
        for f in records
        if f.joined
    )
    join_mids = [m for m, _ in joined_sorted]
    attribution: Counter[str] = Counter()
    listed: list[dict[str, Any]] = []
    worst = 0
    for a_index, b_index in pairs:
        a, b = keepers[a_index], granted[b_index]
        event = next(e for e in waits[a.n] if e[0] > b.grant_recv)
        b_position = next((p.position for p in reversed(b.polls) if p.recv <= b.grant_recv), 0)
        places = _places_between(a, b, joined_sorted, join_mids)
        worst = max(worst, places)
        why = _attribute(
            rule, event, places, scenario.queue.admission_window, scenario.queue.bucket_capacity
        )
        attribution[why or "unexplained"] += 1
        if len(listed) < LISTED_INVERSIONS or (why is None and len(listed) < 2 * LISTED_INVERSIONS):
            listed.append(
                {
                    "overtaken_fan": a.n,
                    "overtaking_fan": b.n,
                    "a_joined_sec": round(a.join_recv, 3),
                    "b_joined_sec": round(b.join_sent, 3),
                    "b_granted_sec": round(b.grant_recv, 3),
                    "a_told_to_wait_sec": round(event[0], 3),
                    "a_answer": event[1],
                    "a_position": event[2],
                    "b_position_before_grant": b_position,
                    "places_overtaken": places,
                    "explained_by": why,
                }
            )
    unattributed = total - len(pairs)
    unexplained = attribution.get("unexplained", 0) + unattributed
    return {
        "rule": rule,
        "rules": {k: v for k, v in RULE_TEXT.items() if k in attribution},
        "definition": (
            "B definitely joined after A, was granted, and afterwards the gateway told A "
            "(who kept polling, saw no errors) to keep waiting"
        ),
        "fans_compared": len(keepers),
        "granted": len(granted),
        "inversions": total,
        "explained": {k: v for k, v in attribution.items() if k != "unexplained"},
        "unexplained": unexplained,
        "not_attributed_over_cap": unattributed,
        "max_places_overtaken": worst,
        "listed": listed,
        "listed_truncated": total > len(listed),
        "attentive_fans_expired": sum(
            1 for f in keepers if f.outcome in ("status_expired", "lost:TOKEN_EXPIRED")
        ),
    }


def _places_between(
    a: FanRecord,
    b: FanRecord,
    joined_sorted: list[tuple[float, float]],
    join_mids: list[float],
) -> int:
    """Places B stood behind A when granted: fans who joined between them (by join
    midpoint) and were still in the queue then, plus one."""
    low = bisect.bisect_right(join_mids, (a.join_sent + a.join_recv) / 2.0)
    high = bisect.bisect_left(join_mids, (b.join_sent + b.join_recv) / 2.0)
    moment = b.grant_recv
    return 1 + sum(1 for _, gone in joined_sorted[low:high] if gone > moment)


def _attribute(
    rule: str, event: tuple[float, str, int], places: int, window: int, capacity: int
) -> str | None:
    _, answer, position = event
    if rule == "frontier":
        return "bounded_overtaking" if places <= capacity else None
    if answer == "ADMISSION_THROTTLED" and position <= window:
        return "window_bucket"
    if answer in ("not_ready", "NOT_READY") and 0 < position <= window:
        return "min_wait_band"
    return None


def ghosts(result: RunResult) -> dict[str, Any]:
    """Judged by each ghost's one leave probe (fan.go_silent says why a leave)."""
    queue = result.scenario.queue
    bound = queue.heartbeat_ttl_sec + queue.sweep_interval_ms / 1000.0
    silent = [f for f in result.records if not math.isnan(f.silent_at)]
    early = sorted(p for f in silent for p in f.probes if p[0] < 0)
    interval = queue.sweep_interval_ms / 1000.0
    outcomes = Counter(f.outcome for f in silent)
    return {
        "ghosts": sum(1 for f in result.records if f.kind == "ghost"),
        "went_silent": len(silent),
        "bound_sec": bound,
        "definition": (
            "each ghost probes once with a leave (no heartbeat): 'not in the queue' = the "
            "sweeper removed it; most probe at silence + TTL + one sweep interval (+50 ms), "
            "a quarter earlier within the interval"
        ),
        "swept_within_bound": outcomes["ghost_swept"],
        "not_swept_within_bound": outcomes["ghost_not_swept"],
        "deadline_probes": sum(1 for f in silent for p in f.probes if p[0] >= 0),
        "still_there_at_early_probe": outcomes["ghost_removed_by_probe"],
        "unprobed": len(silent)
        - outcomes["ghost_swept"]
        - outcomes["ghost_not_swept"]
        - outcomes["ghost_removed_by_probe"],
        "early_probes": {
            "definition": "probe at TTL + u * sweep interval after silence, u in [0, 1)",
            "offset_after_ttl_sec": [round(p[0] + interval, 3) for p in early],
            "swept": [p[1] for p in early],
            "share_swept": round(sum(1 for p in early if p[1]) / len(early), 3) if early else None,
        },
    }


def errors(result: RunResult) -> dict[str, Any]:
    stats = result.stats
    rows: list[dict[str, Any]] = []
    for (endpoint, status, code), count in stats.answers.most_common():
        rows.append(
            {
                "endpoint": endpoint,
                "status": status,
                "code": code,
                "count": count,
                "error": status == 0 or not is_expected(endpoint, status, code),
            }
        )
    answers = stats.answers
    return {
        "requests": stats.requests,
        "errors": stats.errors,
        "error_rate": round(stats.errors / stats.requests, 6) if stats.requests else 0.0,
        "http_5xx": sum(n for (_, status, _), n in answers.items() if status >= 500),
        "http_5xx_unexpected": sum(
            n
            for (endpoint, status, code), n in answers.items()
            if status >= 500 and not is_expected(endpoint, status, code)
        ),
        "no_answer": sum(n for (_, status, _), n in answers.items() if status == 0),
        "by_endpoint_code": rows,
    }


def latency(result: RunResult) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": "ms"}
    every = []
    for endpoint in ENDPOINTS:
        values = result.stats.latency_ms[endpoint]
        if values:
            out[endpoint] = percentiles(values)
            every.append(np.frombuffer(values, dtype=float))
    out["all"] = percentiles(np.concatenate(every) if every else [])
    return out


def seats(result: RunResult) -> dict[str, Any]:
    booking = result.scenario.booking
    sold = [fan for fan in result.records if fan.sold]
    owners: dict[str, list[int]] = {}
    for fan in sold:
        for seat in fan.seats:
            owners.setdefault(seat, []).append(fan.n)
    twice = {seat: fans for seat, fans in owners.items() if len(fans) > 1}
    outcomes = Counter(fan.payment for fan in result.records if fan.payment)
    service = result.service_check
    return {
        # The service's records when it was reachable, else what the fans saw.
        "checked_by": "reservation service (gRPC GetReservation of every reservation)"
        if service is not None
        else "the fans' own confirmed reservations (GET reservation = CONFIRMED)",
        "sold_twice_anywhere": max(len(twice), service["sold_twice"] if service else 0),
        "service": service,
        "capacity": booking.capacity or None,
        "sold": sum(len(fan.seats) for fan in sold),
        "orders": len(sold),
        "sold_twice": len(twice),
        "sold_twice_seats": dict(sorted(twice.items())[:100]),
        "sold_out_fans": sum(1 for fan in result.records if fan.outcome == "sold_out"),
        "payments_by_scenario": dict(outcomes),
    }


def tool(result: RunResult) -> dict[str, Any]:
    started = sum(1 for fan in result.records if fan.state != "arriving")
    lag = result.stats.lag_ms
    cpu = result.cpu_sec
    return {
        "client": result.scenario.client.library,
        "duration_sec": round(result.duration_sec, 2),
        "cpu_sec": round(cpu, 2),
        "fans_started": started,
        "fans_per_cpu_sec": round(started / cpu, 1) if cpu > 0 else None,
        "requests_per_cpu_sec": round(result.stats.requests / cpu, 1) if cpu > 0 else None,
        "peak_active_fans": result.peak_active_fans,
        "loop_lag_ms": percentiles(lag, (50, 99)),
        "gc_full_collections_ms": percentiles(result.stats.gc_full_ms, (50, 99)),
        "interrupted": result.interrupted,
    }


def analyse(result: RunResult) -> dict[str, Any]:
    records = result.records
    return {
        "report": "ticketgate rehearsal",
        "started_at": result.started_at,
        "scenario": scenario_dict(result.scenario),
        "tool": tool(result),
        "fans": {
            "total": len(records),
            "by_kind": dict(Counter(fan.kind for fan in records)),
            "by_outcome": dict(Counter(fan.outcome for fan in records).most_common()),
        },
        "timeline": timeline(result),
        "time_to_admission_sec": time_to_admission(records),
        "eta": eta_accuracy(records),
        "fairness": fairness(result),
        "ghosts": ghosts(result),
        "errors": errors(result),
        "latency": latency(result),
        "seats": seats(result),
    }


def fairness_points(records: list[FanRecord]) -> list[tuple[int, int, bool]]:
    """(join rank, admission rank, kept polling) of every admitted fan, for the plot."""
    granted = [fan for fan in records if fan.granted and fan.joined]
    by_join = sorted(granted, key=lambda fan: fan.join_recv)
    admission_rank = {
        fan.n: rank for rank, fan in enumerate(sorted(granted, key=lambda f: f.grant_recv))
    }
    return [
        (rank, admission_rank[fan.n], fan.kind == "stay" and not fan.disturbed)
        for rank, fan in enumerate(by_join)
    ]
