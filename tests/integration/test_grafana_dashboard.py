"""deploy/grafana/ticketgate.json: a loadable dashboard whose queries name real metrics.

A dashboard querying a misspelt metric shows "No data" on the day of an on-sale; so every
metric name in every panel query must be one the gateway's `/metrics` really exposes, with
the type the query assumes (`_bucket` of a histogram, `_total` of a counter), and every
label the query groups or filters by must exist on the metrics it reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.http_server import serve
from tests.integration.conftest import dev_env
from tests.scrape import SCHEMA, Scrape, scrape
from ticketgate.app import create_app
from ticketgate.config import load_settings

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ticketgate.json"
PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "and",
    "or",
    "unless",
    "bool",
    "on",
    "ignoring",
}
SUFFIX_TYPES = (
    ("_total", "counter"),
    ("_bucket", "histogram"),
    ("_count", "histogram"),
    ("_sum", "histogram"),
)


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def queries(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """Identifiers left once selectors, ranges, groupings and strings are taken out."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)) - PROMQL_WORDS
    return names


def label_names(expr: str) -> set[str]:
    """Labels a query groups by or matches on."""
    grouped = {
        label.strip()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
    }
    matched = {
        name
        for selector in re.findall(r"\{([^}]*)\}", expr)
        for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", selector)
    }
    return (grouped | matched) - {"", "le"}


def family_of(name: str, scraped: Scrape) -> tuple[str, set[str]]:
    """The exposed family a sample name belongs to and its label names (fails if none)."""
    if name in SCHEMA:  # a gauge: sample name and family name are one
        assert name in scraped, f"{name} is not exposed"
        assert scraped[name].type == SCHEMA[name][0] == "gauge", name
        return name, SCHEMA[name][1]
    for suffix, kind in SUFFIX_TYPES:
        if name.endswith(suffix):
            family = name.removesuffix(suffix)
            assert family in scraped, f"{name}: {family} is not exposed"
            assert scraped[family].type == kind, f"{name}: {family} is no {kind}"
            return family, SCHEMA[family][1]
    raise AssertionError(f"{name}: not a sample name the gateway exposes")


@pytest.fixture(scope="module")
def scraped() -> Scrape:
    """The families a freshly built app exposes (their label names are pinned by SCHEMA,
    which test_metrics_http.py checks against recorded series)."""
    import asyncio

    async def run() -> Scrape:
        async with serve(create_app(load_settings(dev_env()))) as client:
            return await scrape(client)

    return asyncio.run(run())


def test_the_dashboard_is_a_grafana_model_with_a_prometheus_datasource_variable() -> None:
    dashboard = load()
    assert dashboard["title"] == "ticketgate"
    assert dashboard["uid"] == "ticketgate"
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_the_dashboard_covers_what_operators_watch_during_an_on_sale() -> None:
    titles = " | ".join(panel["title"].lower() for panel in load()["panels"])
    for topic in (
        "queue depth",
        "admissions per minute",
        "eta",
        "request rate by route",
        "latency p50",
        "latency p95",
        "latency p99",
        "backend latency",
        "429",
        "idempotency",
        "redis",
    ):
        assert topic in titles, topic


def test_every_query_names_exposed_metrics_and_their_labels(scraped: Scrape) -> None:
    used: set[str] = set()
    for expr in queries(load()):
        names = metric_names(expr)
        assert names, expr
        labels: set[str] = set()
        for name in names:
            family, family_labels = family_of(name, scraped)
            used.add(family)
            labels |= family_labels
        assert label_names(expr) <= labels, expr
    # Each metric of the issue appears somewhere on the dashboard.
    assert used >= {
        "http_server_requests",
        "http_server_requests_duration_seconds",
        "backend_call_duration_seconds",
        "queue_operations",
        "queue_wait_time_seconds",
        "redis_operation_duration_seconds",
        "ratelimit_dropped",
        "idempotency_hits",
        "queue_waiting_users",
        "queue_admission_rate",
    }
