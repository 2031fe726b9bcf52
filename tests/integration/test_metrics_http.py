"""`/metrics` over real sockets: every metric the issue names, recorded by real traffic.

The gateway is the production app (`create_app`) on a real Redis with the reference gRPC
services embedded, so each series below was written by the code path it describes: the HTTP
observer, the Redis script observer, the waiting room, the gRPC clients, the rate limiter,
the idempotency layer and authentication. In this (single) process the metrics live in
prometheus_client's default registry, shared by every app a test builds, so assertions
compare the scrape before and after the traffic.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from tests.http_server import serve
from tests.integration.conftest import ENTER, JOIN, LEAVE, STATUS, as_user, dev_env, eventually
from tests.scrape import SCHEMA, Scrape, parse, scrape, value
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.http.core import Gateway
from ticketgate.http.metrics import MetricsRoutes
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.observability import prometheus

LIMITED = {
    "RATE_LIMIT_ENABLED": "true",
    "RATE_LIMIT_RPS": "1",
    "RATE_LIMIT_BURST": "20",
    "RATE_LIMIT_TRUSTED_PROXIES": "127.0.0.1",
}


@pytest.fixture
async def gateway(redis_address: str) -> AsyncIterator[httpx.AsyncClient]:
    """The production app on Redis, rate limited, sweeping every 100 ms."""
    env = dev_env(REDIS_ADDRESS=redis_address, QUEUE_SWEEP_INTERVAL_MS="100", **LIMITED)
    async with serve(create_app(load_settings(env))) as client:
        yield client


def delta(before: Scrape, after: Scrape, family: str, sample: str, **labels: str) -> float:
    return value(after, family, sample, **labels) - value(before, family, sample, **labels)


def fresh_ip() -> dict[str, str]:
    return {"x-forwarded-for": f"198.18.{uuid.uuid4().int % 256}.{uuid.uuid4().int % 254 + 1}"}


async def drive_every_metric(client: httpx.AsyncClient, event_id: str) -> None:
    """One request (or a few) for each series the schema test expects to move."""
    joined = await client.post(JOIN, json={"event_id": event_id}, headers=as_user("m1"))
    assert joined.status_code == 202, joined.text
    token = joined.json()["waiting_token"]
    assert (await client.get(STATUS, params={"token": token})).status_code == 200
    assert (await client.get(STATUS)).status_code == 400  # MISSING_TOKEN
    keyed = {**as_user("m1"), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    entered = await client.post(ENTER, json={"waiting_token": token}, headers=keyed)
    assert entered.status_code == 200, entered.text
    replay = await client.post(ENTER, json={"waiting_token": token}, headers=keyed)
    assert replay.headers.get("x-idempotency-cached") == "true"
    reserved = await client.post(
        "/api/v1/reservations",
        json={
            "event_id": event_id,
            "quantity": 1,
            "reservation_token": entered.json()["reservation_token"],
        },
        headers={**as_user("m1"), "Idempotency-Key": f"k-{uuid.uuid4().hex}"},
    )
    assert reserved.status_code < 500 or reserved.status_code == 503, reserved.text
    other = await client.post(JOIN, json={"event_id": event_id}, headers=as_user("m2"))
    left = await client.delete(LEAVE, params={"token": other.json()["waiting_token"]})
    assert left.status_code == 200
    assert (await client.post(ENTER, json={"waiting_token": token})).status_code == 401
    assert (await client.get("/no/such/page")).status_code == 404
    flood = fresh_ip()
    codes = [
        (await client.get(STATUS, params={"token": token}, headers=flood)).status_code
        for _ in range(25)
    ]
    assert 429 in codes


async def test_every_metric_is_recorded_with_its_name_type_and_labels(
    gateway: httpx.AsyncClient, event_id: str
) -> None:
    before = await scrape(gateway)
    await drive_every_metric(gateway, event_id)

    async def swept() -> bool:
        after = await scrape(gateway)
        return (
            delta(before, after, "queue_operations", "queue_operations_total", operation="sweep")
            > 0
        )

    await eventually(swept, within=5.0)
    after = await scrape(gateway)

    for name, (kind, labels) in SCHEMA.items():
        assert name in after, f"{name} missing from /metrics"
        assert after[name].type == kind, name
        assert after[name].label_names() == labels, name

    def moved(family: str, sample: str, **labels: str) -> float:
        return delta(before, after, family, sample, **labels)

    http = "http_server_requests"
    assert moved(http, f"{http}_total", method="POST", route=JOIN, status_code="202") == 2
    assert moved(http, f"{http}_total", method="GET", route=STATUS, status_code="400") == 1
    assert moved(http, f"{http}_total", method="GET", route=STATUS, status_code="429") >= 1
    assert moved(http, f"{http}_total", method="GET", route="unmatched", status_code="404") == 1
    assert moved(http, f"{http}_total", method="GET", route="/metrics", status_code="200") >= 1
    duration = "http_server_requests_duration_seconds"
    assert moved(duration, f"{duration}_count", method="POST", route=ENTER) == 3
    assert moved(duration, f"{duration}_bucket", method="POST", route=ENTER, le="+Inf") == 3
    assert moved(duration, f"{duration}_sum", method="POST", route=ENTER) > 0

    backend = "backend_call_duration_seconds"
    assert (
        moved(backend, f"{backend}_count", service="reservation", method="CreateReservation") == 1
    )

    queue = "queue_operations"
    assert moved(queue, f"{queue}_total", operation="join", status="ok") == 2
    assert moved(queue, f"{queue}_total", operation="status", status="ok") >= 1
    assert moved(queue, f"{queue}_total", operation="status", status="MISSING_TOKEN") == 1
    assert moved(queue, f"{queue}_total", operation="enter", status="ok") == 1
    assert moved(queue, f"{queue}_total", operation="leave", status="ok") == 1
    assert moved(queue, f"{queue}_total", operation="sweep", status="ok") >= 1
    wait = "queue_wait_time_seconds"
    assert moved(wait, f"{wait}_count") == 1
    assert moved(wait, f"{wait}_bucket", le="1.0") == 1  # admitted at once (position 1)

    redis_op = "redis_operation_duration_seconds"
    for script in ("join", "status", "enter", "leave", "sweep"):
        assert moved(redis_op, f"{redis_op}_count", operation=script) >= 1, script
    assert moved(redis_op, f"{redis_op}_count", operation="join") == 2

    # Store-backed gauges: m1 was admitted and m2 left, so nobody waits and one admission
    # in the last minute (the sweeper has registered the event by now).
    listed = {sample.labels["event_id"] for sample in after["queue_waiting_users"].samples}
    assert event_id in listed
    assert value(after, "queue_waiting_users", "queue_waiting_users", event_id=event_id) == 0
    assert value(after, "queue_admission_rate", "queue_admission_rate", event_id=event_id) >= 0
    used = value(after, "queue_frontier_used", "queue_frontier_used", event_id=event_id)
    released = value(after, "queue_frontier_released", "queue_frontier_released", event_id=event_id)
    earmarked = value(
        after, "queue_frontier_earmarked", "queue_frontier_earmarked", event_id=event_id
    )
    assert (used, released) == (1, used + earmarked)
    assert moved("ratelimit_dropped", "ratelimit_dropped_total", key_type="ip") >= 1
    assert moved("idempotency_hits", "idempotency_hits_total", type="replay") == 1
    assert moved("auth_failures", "auth_failures_total", code="MISSING_AUTHORIZATION") == 1


async def test_labels_are_templates_and_known_verbs_never_raw_paths_or_users(
    gateway: httpx.AsyncClient,
) -> None:
    secret_id = f"res-{uuid.uuid4().hex}"
    user = f"u{uuid.uuid4().hex[:8]}"
    before = await scrape(gateway)
    response = await gateway.get(f"/api/v1/reservations/{secret_id}", headers=as_user(user))
    assert response.status_code in {404, 503}  # matched the template, whatever the backend says
    assert (await gateway.get(f"/raw/{secret_id}")).status_code == 404
    assert (await gateway.request("PROPFIND", "/healthz")).status_code == 405
    text = (await gateway.get("/metrics")).text
    after = parse(text)

    assert secret_id not in text
    assert user not in text
    http = "http_server_requests_total"
    template = "/api/v1/reservations/{id}"
    assert delta(before, after, "http_server_requests", http, method="GET", route=template) == 1
    assert delta(before, after, "http_server_requests", http, route="unmatched") == 2
    assert delta(before, after, "http_server_requests", http, method="OTHER") == 1
    methods = {s.labels["method"] for s in after["http_server_requests"].samples}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


async def test_metrics_needs_no_credentials_and_is_never_rate_limited(
    gateway: httpx.AsyncClient,
) -> None:
    one_client = fresh_ip()
    for _ in range(30):  # more than the burst of 20
        response = await gateway.get(
            "/metrics", headers={**one_client, "Authorization": "Bearer not-a-jwt"}
        )
        assert response.status_code == 200
    limited = [(await gateway.get(STATUS, headers=one_client)).status_code for _ in range(25)]
    assert 429 in limited  # the same client is limited on an ordinary route


def recorded(name: str, **labels: str) -> float:
    """The process-wide registry's value, after writing out what the recorders buffered."""
    prometheus.flush()
    return REGISTRY.get_sample_value(name, labels) or 0.0


REDIS_JOIN = ("redis_operation_duration_seconds_count", {"operation": "join"})


def recorded_series() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the gateway's own recorded metrics in the process-wide registry
    (counters and histograms; not prometheus_client's process and GC collectors)."""
    prometheus.flush()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        if family.name in SCHEMA
        for sample in family.samples
    }


async def test_metrics_off_serves_no_route_and_records_nothing(
    redis_address: str, event_id: str
) -> None:
    """The traffic that moves every series with metrics on (the test above), here with them
    off: no series moves, whether recorded at the edge, by a guard (rate limit, idempotency,
    authentication), a Redis script, the waiting room or a backend call."""
    env = dev_env(REDIS_ADDRESS=redis_address, OBSERVABILITY_METRICS_ENABLED="false", **LIMITED)
    app = create_app(load_settings(env))
    before = recorded_series()
    async with serve(app) as client:
        await drive_every_metric(client, event_id)
        response = await client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert recorded_series() == before


async def test_two_apps_in_one_process_each_feed_only_their_own_redis_observers(
    redis_address: str,
) -> None:
    """The metered app is built first: with one process-wide observer list the unmetered app
    built after it would silence it ("the last app built wins")."""
    metered = create_app(load_settings(dev_env(REDIS_ADDRESS=redis_address)))
    unmetered = create_app(
        load_settings(dev_env(REDIS_ADDRESS=redis_address, OBSERVABILITY_METRICS_ENABLED="false"))
    )
    async with serve(metered) as on, serve(unmetered) as off:
        before = recorded(REDIS_JOIN[0], **REDIS_JOIN[1])
        joined = await on.post(JOIN, json={"event_id": "evt_two_apps"}, headers=as_user("a"))
        assert joined.status_code == 202, joined.text
        assert recorded(REDIS_JOIN[0], **REDIS_JOIN[1]) == before + 1
        joined = await off.post(JOIN, json={"event_id": "evt_two_apps"}, headers=as_user("b"))
        assert joined.status_code == 202, joined.text
        assert recorded(REDIS_JOIN[0], **REDIS_JOIN[1]) == before + 1


class CountingSource:
    """A store-backed source in miniature: `refresh` reads a value, `collect` reports it."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.refreshes = 0
        self.delay = delay
        self.fail = fail
        self.reported = 0

    async def refresh(self) -> None:
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("store down")
        self.refreshes += 1
        self.reported = self.refreshes

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            f"test_source_{id(self)}", "refreshes seen at the last scrape", labels=["event_id"]
        )
        gauge.add_metric(["evt_1"], self.reported)
        yield gauge


@pytest.fixture
async def sourced() -> AsyncIterator[tuple[httpx.AsyncClient, list[CountingSource]]]:
    sources = [CountingSource(), CountingSource(delay=5.0), CountingSource(fail=True)]
    metrics = MetricsRoutes(sources, refresh_timeout_sec=0.2)
    app = Gateway(metrics.routes(), DevBypassAuthenticator(False), max_body_bytes=1024)
    async with serve(app) as client:
        yield client, sources


async def test_sources_refresh_before_each_scrape_and_a_slow_or_failing_one_never_fails_it(
    sourced: tuple[httpx.AsyncClient, list[CountingSource]],
) -> None:
    client, (healthy, slow, failing) = sourced
    for expected in (1, 2):
        started = time.perf_counter()
        scraped = await scrape(client)
        took = time.perf_counter() - started
        assert took < 2.0  # bounded by the refresh timeout, not the slow source's 5 s
        family: Any = scraped[f"test_source_{id(healthy)}"]
        assert family.type == "gauge"
        assert family.value(f"test_source_{id(healthy)}", event_id="evt_1") == expected
        # The slow and the failing source keep their last values (none yet), still listed.
        assert scraped[f"test_source_{id(slow)}"].value(f"test_source_{id(slow)}") == 0
        assert scraped[f"test_source_{id(failing)}"].value(f"test_source_{id(failing)}") == 0
    assert "http_server_requests" in scraped  # the process's own metrics come along
