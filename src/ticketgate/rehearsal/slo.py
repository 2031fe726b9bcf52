"""The SLO gate: `--slo 'p99<300ms,errors<0.1%,eta_p50_error<20%,fifo_unexplained=0'`.

Each clause is `<metric><op><number>[unit]`, read from the JSON report, so a deployment
pipeline fails on exactly the numbers the report shows.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_CLAUSE = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|>=|<|>|==|=)\s*([0-9.]+)\s*(ms|s|%)?\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "==": operator.eq,
}


def _latency(point: str) -> Callable[[dict[str, Any]], float | None]:
    def read(report: dict[str, Any]) -> float | None:
        value = report["latency"]["all"].get(point)
        return None if value is None else float(value)

    return read


# metric -> (reader, the unit its value is in: "ms", "ratio" or "count")
METRICS: dict[str, tuple[Callable[[dict[str, Any]], float | None], str]] = {
    "p50": (_latency("p50"), "ms"),
    "p90": (_latency("p90"), "ms"),
    "p95": (_latency("p95"), "ms"),
    "p99": (_latency("p99"), "ms"),
    "errors": (lambda r: float(r["errors"]["error_rate"]), "ratio"),
    "http_5xx": (lambda r: float(r["errors"]["http_5xx"]), "count"),
    "eta_p50_error": (lambda r: r["eta"]["after_first_minute"]["error"].get("p50"), "ratio"),
    "eta_p90_error": (lambda r: r["eta"]["after_first_minute"]["error"].get("p90"), "ratio"),
    "fifo_unexplained": (lambda r: float(r["fairness"]["unexplained"]), "count"),
    "seats_sold_twice": (lambda r: float(r["seats"]["sold_twice_anywhere"]), "count"),
    "ghosts_unswept": (lambda r: float(r["ghosts"]["not_swept_within_bound"]), "count"),
    "loop_lag_p99": (lambda r: r["tool"]["loop_lag_ms"].get("p99"), "ms"),
}


class SloError(ValueError):
    pass


@dataclass(frozen=True)
class Clause:
    text: str
    metric: str
    op: str
    limit: float  # in the metric's own unit


@dataclass(frozen=True)
class Verdict:
    clause: Clause
    value: float | None
    passed: bool


def parse(spec: str) -> list[Clause]:
    clauses = []
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        match = _CLAUSE.match(raw)
        if match is None:
            raise SloError(f"SLO clause {raw!r}: expected <metric><op><number>[ms|s|%]")
        metric, op, number, unit = match.groups()
        if metric not in METRICS:
            raise SloError(f"SLO clause {raw!r}: unknown metric; use {', '.join(METRICS)}")
        kind = METRICS[metric][1]
        limit = float(number)
        if kind == "ms":
            if unit == "%":
                raise SloError(f"SLO clause {raw!r}: a latency takes ms or s")
            limit = limit * 1000.0 if unit == "s" else limit
        elif kind == "ratio":
            if unit in ("ms", "s"):
                raise SloError(f"SLO clause {raw!r}: a ratio takes % or a fraction")
            limit = limit / 100.0 if unit == "%" else limit
        elif unit is not None:
            raise SloError(f"SLO clause {raw!r}: a count takes no unit")
        clauses.append(Clause(raw, metric, op, limit))
    if not clauses:
        raise SloError("empty SLO")
    return clauses


def evaluate(clauses: list[Clause], report: dict[str, Any]) -> list[Verdict]:
    """A metric with no data (e.g. no ETA sample after the first minute) fails its clause:
    a gate must not pass on missing evidence."""
    verdicts = []
    for clause in clauses:
        value = METRICS[clause.metric][0](report)
        passed = value is not None and _OPS[clause.op](value, clause.limit)
        verdicts.append(Verdict(clause, value, passed))
    return verdicts


def as_json(verdicts: list[Verdict]) -> dict[str, Any]:
    return {
        "passed": all(v.passed for v in verdicts),
        "clauses": [
            {
                "clause": v.clause.text,
                "metric": v.clause.metric,
                "value": v.value,
                "limit": v.clause.limit,
                "unit": METRICS[v.clause.metric][1],
                "passed": v.passed,
            }
            for v in verdicts
        ],
    }
