"""The SLO gate reads the report's numbers in the clause's unit and fails on missing data."""

from __future__ import annotations

from typing import Any

import pytest

from ticketgate.rehearsal.slo import SloError, as_json, evaluate, parse


def report(p99: float = 250.0, eta: float | None = 0.12, unexplained: int = 0) -> dict[str, Any]:
    return {
        "latency": {"all": {"p50": 10.0, "p90": 50.0, "p95": 80.0, "p99": p99}},
        "errors": {"error_rate": 0.0005, "http_5xx": 0},
        "eta": {"after_first_minute": {"error": {} if eta is None else {"p50": eta}}},
        "fairness": {"unexplained": unexplained},
        "seats": {"sold_twice": 0},
        "ghosts": {"not_swept_within_bound": 0},
        "tool": {"loop_lag_ms": {"p99": 4.0}},
    }


SPEC = "p99<300ms,errors<0.1%,eta_p50_error<20%,fifo_unexplained=0"


def test_the_issue_example_passes_and_fails_on_each_clause() -> None:
    clauses = parse(SPEC)
    assert [c.limit for c in clauses] == [300.0, 0.001, 0.2, 0.0]
    assert as_json(evaluate(clauses, report()))["passed"]
    for bad in (report(p99=301), report(eta=0.25), report(unexplained=1)):
        verdict = as_json(evaluate(clauses, bad))
        assert not verdict["passed"]
        assert sum(not c["passed"] for c in verdict["clauses"]) == 1


def test_seconds_and_fractions_convert() -> None:
    (latency, errors) = parse("p99<=0.3s, errors<0.001")
    assert latency.limit == 300.0
    assert errors.limit == 0.001


def test_a_metric_without_data_fails() -> None:
    (clause,) = parse("eta_p50_error<20%")
    (verdict,) = evaluate([clause], report(eta=None))
    assert verdict.value is None
    assert not verdict.passed


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("p99 300ms", "expected"),
        ("latency<3ms", "unknown metric"),
        ("p99<3%", "latency takes"),
        ("errors<3ms", "ratio takes"),
        ("fifo_unexplained=0%", "count takes no unit"),
        ("", "empty"),
    ],
)
def test_bad_clauses_say_why(spec: str, why: str) -> None:
    with pytest.raises(SloError, match=why):
        parse(spec)
