"""What tracing and the access line cost per request, in microseconds (a stopwatch, not a test).

Each observer is called the way the gateway calls it (begin, then end, in one task), in a
tight loop inside a running event loop:

- RequestTracer, unsampled: sample rate 0, no traceparent (the 9 in 10 requests at 0.1), and
  with an unsampled caller traceparent;
- RequestTracer, sampled: rate 1, spans made and queued for shipping (encoding and sending
  happen per batch, measured by tests/unit/test_otlp_export.py's encoder and the served
  runs in docs/benchmarks.md);
- RedisTracer inside an unsampled request (one context lookup);
- the JSON access line: msgspec-encoded, buffered, written to /dev/null in 4 KiB chunks.

Run: .venv/bin/python -m bench.observability_cost
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ticketgate.edge.request import Request
from ticketgate.observability import tracing
from ticketgate.observability.logs import JsonAccessLog, LineWriter
from ticketgate.observability.settings import TracingSettings
from ticketgate.observability.tracing import RedisTracer, RequestTracer

ROUNDS = 7
CALLS = 50_000
ROUTE = "/api/v1/queue/status"


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _median_us(fn: Callable[[], None]) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            fn()
        samples.append((time.perf_counter() - started) / CALLS * 1e6)
    return statistics.median(samples)


def _request(traceparent: str = "") -> Request:
    headers = {b"authorization": b"Bearer x", b"user-agent": b"bench"}
    if traceparent:
        headers[b"traceparent"] = traceparent.encode()
    return Request("GET", ROUTE, b"token=x", headers, os.urandom(16).hex(), "127.0.0.1")


def _started(rate: float) -> tracing.Tracing:
    """Tracing whose spans pile up unsent (the shipper's task is not started): the cost
    measured is making and queueing them; encoding and sending happen per batch."""
    started = tracing.start_tracing(TracingSettings(True, "", rate, _Discard()))
    started.shipper.max_queue = 10**7
    return started


def _tracer_cost(rate: float, traceparent: str = "") -> float:
    active = _started(rate)
    observer = RequestTracer()
    request = _request(traceparent)
    trace_id = request.trace_id

    def one() -> None:
        request.trace_id = trace_id
        state = observer.begin(request)
        observer.end(request, state, ROUTE, 200, 0.001)

    try:
        return _median_us(one)
    finally:
        tracing.deactivate(active)


def _redis_cost() -> float:
    active = _started(0.0)
    observer = RedisTracer()

    def one() -> None:
        observer.end("status", observer.begin("status"), 0.0003, None)

    try:
        return _median_us(one)
    finally:
        tracing.deactivate(active)


def _access_cost() -> float:
    with open(os.devnull, "w") as sink:
        observer = JsonAccessLog(LineWriter(sink))
        request = _request()
        request.headers[b"x-request-id"] = b"req-42"
        cost = _median_us(lambda: observer.end(request, None, ROUTE, 200, 0.0012))
        observer.flush()
    return cost


async def main() -> None:
    results = {
        "tracer, unsampled root (rate 0)": _tracer_cost(0.0),
        "tracer, unsampled caller traceparent": _tracer_cost(
            1.0, f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-00"
        ),
        "tracer, sampled (rate 1, span queued)": _tracer_cost(1.0),
        "redis tracer, unsampled request": _redis_cost(),
        "JSON access line (encode + buffered write)": _access_cost(),
    }
    for name, us in results.items():
        print(f"{name:45s} {us:6.2f} us")


if __name__ == "__main__":
    asyncio.run(main())
