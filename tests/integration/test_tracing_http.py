"""Tracing end to end: the wired app (create_app, embedded reference services on real gRPC
sockets, real HTTP socket) exporting to the SDK's in-memory exporter.

Spans are read after the gateway stopped: the shutdown hook flushes the batch processor, so
these tests also pin that nothing is lost at shutdown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.backends.booking_gateway import RESERVATIONS, admitted, reserve
from tests.http_server import serve
from tests.integration.conftest import JOIN, as_user, assert_envelope, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.observability import tracing
from ticketgate.observability.instruments import build_instruments
from ticketgate.observability.settings import LogSettings, TracingSettings
from ticketgate.observability.tracing import RedisTracer, RequestTracer, RpcTracer
from ticketgate.services.inventory import DEMO_EVENT_ID

RESERVE_ROUTE = f"POST {RESERVATIONS}"


@contextlib.asynccontextmanager
async def traced_gateway(
    exporter: InMemorySpanExporter, sample_rate: str = "1", **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        dev_env(OBSERVABILITY_TRACING_ENABLED="true", OBSERVABILITY_SAMPLE_RATE=sample_rate, **env)
    )
    settings = dataclasses.replace(
        settings, tracing=dataclasses.replace(settings.tracing, exporter=exporter)
    )
    async with serve(create_app(settings)) as client:
        yield client
    assert not tracing.is_active()  # shut down with the app


def hex_id(value: int, width: int = 32) -> str:
    return f"{value:0{width}x}"


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def traceparent(trace_id: str, sampled: bool) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-{'01' if sampled else '00'}"}


async def test_a_reservation_is_one_trace_from_the_gateway_to_the_reservation_service() -> None:
    exporter = InMemorySpanExporter()
    async with traced_gateway(exporter) as http:
        token = await admitted(http, DEMO_EVENT_ID, "tracer-1")
        response = await reserve(http, DEMO_EVENT_ID, "tracer-1", token, os.urandom(8).hex())
        assert response.status_code == 201, response.text
    trace_id = response.headers["x-request-id"]
    spans = [s for s in exporter.get_finished_spans() if hex_id(s.context.trace_id) == trace_id]

    server = one(spans, RESERVE_ROUTE)
    client = one(spans, "reservation/CreateReservation")
    backend = one(spans, "reservation.v1.ReservationService/CreateReservation")
    assert (server.kind, client.kind, backend.kind) == (
        SpanKind.SERVER,
        SpanKind.CLIENT,
        SpanKind.SERVER,
    )
    assert server.parent is None  # no traceparent came in: the gateway starts the trace
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    assert backend.parent is not None
    assert backend.parent.span_id == client.context.span_id
    assert backend.parent.is_remote  # it came over the wire, in the gRPC metadata
    assert server.attributes is not None
    assert client.attributes is not None
    assert dict(server.attributes) == {
        "http.request.method": "POST",
        "http.route": RESERVATIONS,
        "http.response.status_code": 201,
    }
    assert client.attributes["rpc.system"] == "grpc"
    assert client.attributes["rpc.method"] == "CreateReservation"
    assert client.attributes["rpc.grpc.status_code"] == "OK"
    assert server.resource.attributes["service.name"] == "ticketgate"


async def test_a_sampled_caller_trace_is_continued_even_at_sample_rate_zero() -> None:
    exporter = InMemorySpanExporter()
    caller = os.urandom(16).hex()
    headers = {**as_user(1), **traceparent(caller, sampled=True)}
    async with traced_gateway(exporter, sample_rate="0") as http:
        joined = await http.post(JOIN, json={"event_id": "evt_traced"}, headers=headers)
        assert joined.status_code == 202, joined.text
        untraced = await http.post(JOIN, json={"event_id": "evt_traced"}, headers=as_user(2))
        assert untraced.status_code == 202
    assert joined.headers["x-request-id"] == caller
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == [f"POST {JOIN}"]  # the rate-0 root is not kept
    span = spans[0]
    assert hex_id(span.context.trace_id) == caller
    assert span.parent is not None
    assert hex_id(span.parent.span_id, 16) == headers["traceparent"][36:52]


async def test_an_unsampled_caller_trace_records_nothing_down_to_the_backend() -> None:
    exporter = InMemorySpanExporter()
    caller = os.urandom(16).hex()
    async with traced_gateway(exporter, sample_rate="1") as http:
        token = await admitted(http, DEMO_EVENT_ID, "tracer-2")
        response = await http.post(
            RESERVATIONS,
            json={"event_id": DEMO_EVENT_ID, "reservation_token": token, "quantity": 1},
            headers={
                **as_user("tracer-2"),
                "Idempotency-Key": os.urandom(8).hex(),
                **traceparent(caller, sampled=False),
            },
        )
        assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == caller  # the trace id is still the caller's
    traced = {hex_id(span.context.trace_id) for span in exporter.get_finished_spans()}
    assert caller not in traced
    assert len(traced) == 2  # join and enter, sampled at rate 1, are there


async def test_the_error_envelope_names_the_spans_trace() -> None:
    exporter = InMemorySpanExporter()
    async with traced_gateway(exporter) as http:
        refused = await http.post(RESERVATIONS, json={"event_id": 1}, headers=as_user(3))
        body = assert_envelope(refused, 400, "IDEMPOTENCY_REQUIRED")
        missing = await http.get("/no/such/path?token=secret")
        assert_envelope(missing, 404, "NOT_FOUND")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    server = spans[RESERVE_ROUTE]
    assert hex_id(server.context.trace_id) == body["error"]["trace_id"]
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 400
    assert server.status.status_code is StatusCode.UNSET  # a client mistake is no error
    unmatched = spans["GET unmatched"]  # never the raw path (nor its query)
    assert hex_id(unmatched.context.trace_id) == missing.json()["error"]["trace_id"]


async def test_redis_scripts_of_a_sampled_request_are_client_spans(redis_address: str) -> None:
    exporter = InMemorySpanExporter()
    async with traced_gateway(exporter, REDIS_ADDRESS=redis_address) as http:
        joined = await http.post(JOIN, json={"event_id": "evt_redis_traced"}, headers=as_user(4))
        assert joined.status_code == 202, joined.text
    spans = [
        span
        for span in exporter.get_finished_spans()
        if hex_id(span.context.trace_id) == joined.headers["x-request-id"]
    ]
    server = one(spans, f"POST {JOIN}")
    script = one(spans, "join")
    assert script.kind is SpanKind.CLIENT
    assert script.parent is not None
    assert script.parent.span_id == server.context.span_id
    assert script.attributes is not None
    assert dict(script.attributes) == {"db.system": "redis", "db.operation": "join"}


async def test_a_server_fault_marks_the_span_as_an_error() -> None:
    exporter = InMemorySpanExporter()
    # Nothing listens on port 1: the breaker-guarded call ends in a 503 from the gateway.
    async with traced_gateway(
        exporter,
        BACKEND_RESERVATION_API_GRPC_ADDRESS="127.0.0.1:1",
        BACKEND_PAYMENT_API_GRPC_ADDRESS="127.0.0.1:1",
        PAYMENT_WEBHOOK_SECRET="webhook-secret-webhook-secret-webhook!",
    ) as http:
        token = await admitted(http, "evt_down", 5)
        response = await reserve(http, "evt_down", 5, token, os.urandom(8).hex())
    assert response.status_code == 503, response.text
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans[RESERVE_ROUTE].status.status_code is StatusCode.ERROR
    client = spans["reservation/CreateReservation"]
    assert client.status.status_code is StatusCode.ERROR
    assert client.attributes is not None
    assert client.attributes["rpc.grpc.status_code"] != "OK"


async def test_tracing_off_adds_no_observer() -> None:
    settings = load_settings(dev_env())
    app = create_app(settings)
    assert not any(isinstance(o, RequestTracer) for o in app._observers)
    instruments = build_instruments(
        metrics=True, tracing=settings.tracing, log_level="info", logs=LogSettings()
    )
    assert not any(isinstance(o, RedisTracer) for o in instruments.redis)
    assert not any(isinstance(o, RpcTracer) for o in instruments.rpc)
    assert instruments.services == ()
    assert not tracing.is_active()
    assert TracingSettings.from_env({}).enabled is False
