"""The buffered recorders write exactly what per-observation prometheus_client calls would.

The recorders count into plain Python structures and `flush` writes the deltas into the
metric children, for histograms through prometheus_client internals (`_add_observations`).
These tests render real metrics (a private registry, and a child process in multi-process
mode, whose values are mmap'd files) and compare them with the same values observed one by
one, so an upgrade of prometheus-client that changes those internals fails here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest

from ticketgate.edge.request import Request
from ticketgate.observability.metrics import LATENCY_BUCKETS
from ticketgate.observability.prometheus import (
    Flusher,
    HttpMetrics,
    QueueMetrics,
    RedisMetrics,
    _add_observations,
    _Observations,
    flush,
)

# Zero, every bound exactly (a value equal to a bound belongs to that bucket), values
# between bounds, and values above the last finite bound (+Inf only).
VALUES = [0.0, *LATENCY_BUCKETS, 0.0003, 0.0007, 0.004, 0.3, 0.3, 4.9, 7.5, 120.0]


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("h_seconds", "h", ["op"], buckets=LATENCY_BUCKETS, registry=registry)


def test_buffered_observations_render_exactly_like_observe_calls() -> None:
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    observed = histogram(direct).labels("status")
    pending = _Observations(histogram(buffered).labels("status"))
    for value in VALUES:
        observed.observe(value)
        pending.observe(value)
    _add_observations(pending.child, pending.counts, pending.sum)
    # Same buckets, counts and sum (the sum is added in the same order, so exactly equal).
    assert generate_latest(buffered) == generate_latest(direct)
    assert b'h_seconds_bucket{le="0.0005",op="status"} 3.0' in generate_latest(direct)


def test_the_multiprocess_files_hold_the_same_histogram(tmp_path: Path) -> None:
    """In multi-process mode the children are mmap'd values; the merged rendering of the
    buffered histogram equals that of the observed one."""
    script = textwrap.dedent(
        f"""
        from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
        from ticketgate.observability.prometheus import _Observations, _add_observations

        bounds = {LATENCY_BUCKETS!r}
        observed = Histogram("direct_seconds", "h", ["op"], buckets=bounds).labels("x")
        buffered = Histogram("buffered_seconds", "h", ["op"], buckets=bounds).labels("x")
        pending = _Observations(buffered)
        for value in {VALUES!r}:
            observed.observe(value)
            pending.observe(value)
        _add_observations(buffered, pending.counts, pending.sum)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry).decode()
        lines = sorted(line for line in text.splitlines() if not line.startswith("#"))
        direct = [line for line in lines if line.startswith("direct_")]
        mine = [line.replace("buffered_", "direct_", 1) for line in lines
                if line.startswith("buffered_")]
        assert len(direct) == len({LATENCY_BUCKETS!r}) + 3, direct
        assert mine == direct, (mine, direct)
        print("same")
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_recorders_buffer_until_flushed_then_every_count_arrives() -> None:
    flush()  # what earlier tests in this process left pending
    http, redis_metrics, queue = HttpMetrics(), RedisMetrics(), QueueMetrics()
    route = "/test/buffered"
    request = Request("POST", route, b"", {}, "0" * 32)
    labels = {"method": "POST", "route": route}
    before = (
        sample("http_server_requests_total", **labels, status_code="202"),
        sample("http_server_requests_duration_seconds_count", **labels),
        sample("http_server_requests_duration_seconds_bucket", **labels, le="0.001"),
        sample("redis_operation_duration_seconds_count", operation="test_buffered"),
        sample("queue_operations_total", operation="test_buffered", status="ok"),
        sample("queue_wait_time_seconds_count"),
    )
    for _ in range(3):
        http.end(request, None, route, 202, 0.0008)
        redis_metrics.end("test_buffered", None, 0.0002, None)
        queue.operation("test_buffered", "ok")
    http.end(request, None, route, 202, 0.02)
    queue.admitted(1500)

    def now() -> tuple[float, ...]:
        return (
            sample("http_server_requests_total", **labels, status_code="202"),
            sample("http_server_requests_duration_seconds_count", **labels),
            sample("http_server_requests_duration_seconds_bucket", **labels, le="0.001"),
            sample("redis_operation_duration_seconds_count", operation="test_buffered"),
            sample("queue_operations_total", operation="test_buffered", status="ok"),
            sample("queue_wait_time_seconds_count"),
        )

    assert now() == before  # nothing written per request
    flush()
    assert [a - b for a, b in zip(now(), before, strict=True)] == [4, 4, 3, 3, 3, 1]
    assert sample("http_server_requests_duration_seconds_sum", **labels) >= 0.0224 - 1e-9
    flush()  # nothing pending: nothing added twice
    assert [a - b for a, b in zip(now(), before, strict=True)] == [4, 4, 3, 3, 3, 1]


async def test_the_flusher_writes_periodically_and_once_more_when_stopped() -> None:
    flush()
    queue = QueueMetrics()
    before = sample("queue_operations_total", operation="test_flusher", status="ok")
    flusher = Flusher(interval_sec=0.05)
    await flusher.start()
    try:
        queue.operation("test_flusher", "ok")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if sample("queue_operations_total", operation="test_flusher", status="ok") > before:
                break
        assert sample("queue_operations_total", operation="test_flusher", status="ok") == before + 1
        queue.operation("test_flusher", "ok")
    finally:
        await flusher.stop()
    assert sample("queue_operations_total", operation="test_flusher", status="ok") == before + 2
