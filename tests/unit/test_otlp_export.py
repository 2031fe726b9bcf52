"""Span shipping: the OTLP encoding equals the SDK encoder's, the SDK's exporter really
sends it to a collector over gRPC, and the shipper batches, drops and flushes as promised.

The comparison is on the protobuf messages, field by field, against the SDK's own
`encode_spans` of the same spans as SDK `ReadableSpan`s.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ticketgate.observability.otlp_export import (
    EncodedBatch,
    OtlpEncoder,
    OtlpSender,
    PreEncodedOTLPSpanExporter,
    SpanShipper,
)
from ticketgate.observability.spans import KIND_CLIENT, KIND_SERVER, SpanRecord, to_readable
from ticketgate.observability.tracing import build_resource

RESOURCE = build_resource()
SCOPE = InstrumentationScope("ticketgate", "1.0")


def records() -> list[SpanRecord]:
    """A gateway's span shapes: a continued server span (remote parent) with a failing
    status, its Redis and backend children, and a root span."""
    server = SpanRecord(0xABC, 0xDEF, True, "POST /api/v1/reservations", KIND_SERVER)
    redis = SpanRecord(
        server.trace_id,
        server.span_id,
        False,
        "join",
        KIND_CLIENT,
        {"db.system": "redis", "db.operation": "join"},
    )
    backend = SpanRecord(
        server.trace_id,
        server.span_id,
        False,
        "reservation/CreateReservation",
        KIND_CLIENT,
        {"rpc.system": "grpc", "rpc.grpc.status_code": "UNAVAILABLE"},
    )
    backend.fail("UNAVAILABLE")
    root = SpanRecord(0x123, 0, False, "GET /api/v1/queue/status", KIND_SERVER)
    for status, span in ((503, server), (200, root)):
        span.attributes = {
            "http.request.method": span.name.split()[0],
            "http.route": span.name.split()[1],
            "http.response.status_code": status,
            "sampled.ratio": 0.1,
            "retried": False,
        }
    server.fail()
    spans = [redis, backend, server, root]
    for span in spans:
        span.end_ns = span.start_ns + 1_000
    return spans


def sdk_request(spans: list[SpanRecord]) -> ExportTraceServiceRequest:
    return encode_spans([to_readable(span, RESOURCE, SCOPE) for span in spans])


def test_the_request_equals_the_sdk_encoders() -> None:
    spans = records()
    ours = OtlpEncoder(RESOURCE, SCOPE).encode(spans)
    assert ours == sdk_request(spans)
    assert ours.SerializeToString(deterministic=True) == sdk_request(spans).SerializeToString(
        deterministic=True
    )


def test_every_attribute_type_encodes_as_the_sdk_encodes_it() -> None:
    """Our encoder is written on the public protobuf types; the SDK's span encoder is the
    reference for every value type a span attribute may carry, and for a resource whose
    attributes hold an array (OTEL_RESOURCE_ATTRIBUTES cannot, but code may)."""
    span = SpanRecord(0xABC, 0, False, "GET /x", KIND_SERVER)
    span.attributes = {
        "s": "text",
        "i": 7,
        "f": 0.5,
        "b": True,
    }
    span.end_ns = span.start_ns + 1
    assert OtlpEncoder(RESOURCE, SCOPE).encode([span]) == sdk_request([span])
    resource = RESOURCE.merge(Resource({"tags": ("a", "b"), "ports": (1, 2), "on": (True,)}))
    ours = OtlpEncoder(resource, InstrumentationScope("x")).encode([span])
    assert ours == encode_spans([to_readable(span, resource, InstrumentationScope("x"))])


def test_the_private_exporter_hooks_we_override_still_exist() -> None:
    """PreEncodedOTLPSpanExporter overrides two private hooks of the SDK's OTLP exporter and
    calls its private `_export`: an upgrade that renames them must fail here, loudly, rather
    than silently sending nothing."""
    for name in ("_translate_data", "_count_data", "_export"):
        assert callable(getattr(OTLPSpanExporter, name, None)), f"OTLPSpanExporter.{name} is gone"
    export_source = inspect.getsource(OTLPSpanExporter._export)
    assert "_translate_data(" in export_source
    assert "_count_data(" in inspect.getsource(OTLPSpanExporter)


def test_repeated_attribute_values_do_not_leak_between_spans() -> None:
    encoder = OtlpEncoder(RESOURCE, SCOPE)
    first, second = records(), records()
    second[2].attributes["http.response.status_code"] = 201
    encoder.encode(first)
    again = encoder.encode(second)
    assert again == sdk_request(second)
    statuses = [
        kv.value.int_value
        for span in again.resource_spans[0].scope_spans[0].spans
        for kv in span.attributes
        if kv.key == "http.response.status_code"
    ]
    assert statuses == [201, 200]


class Collector:
    """A real OTLP/gRPC trace endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.received = threading.Event()

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.requests.append(ExportTraceServiceRequest.FromString(request))
        self.received.set()
        return ExportTraceServiceResponse().SerializeToString()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    sink = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": grpc.unary_unary_rpc_method_handler(sink.export)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield sink, port
    finally:
        server.stop(0).wait()


async def test_the_sender_delivers_big_batches_to_a_collector(
    collector: tuple[Collector, int],
) -> None:
    sink, port = collector
    spans = records() * 50  # 200 spans: encoded in several slices
    exporter = PreEncodedOTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    sender = OtlpSender(OtlpEncoder(RESOURCE, SCOPE), exporter)
    try:
        assert await sender(spans) is True
    finally:
        sender.close()
    assert sink.received.wait(5)
    assert sink.requests == [sdk_request(spans)]


def test_a_dead_collector_is_a_failed_export_not_an_exception() -> None:
    exporter = PreEncodedOTLPSpanExporter(endpoint="http://127.0.0.1:1", insecure=True, timeout=0.5)
    try:
        batch = EncodedBatch(OtlpEncoder(RESOURCE, SCOPE).encode(records()), 4)
        assert exporter.export_encoded(batch) is False
    finally:
        exporter.shutdown()


class Recorder:
    def __init__(self, succeed: bool = True) -> None:
        self.batches: list[list[SpanRecord]] = []
        self.succeed = succeed

    async def __call__(self, batch: list[SpanRecord]) -> bool:
        self.batches.append(batch)
        return self.succeed


def span(n: int) -> SpanRecord:
    return SpanRecord(n + 1, 0, False, f"span {n}", KIND_SERVER)


async def test_a_full_batch_is_sent_without_waiting_for_the_delay() -> None:
    sent = Recorder()
    shipper = SpanShipper(sent, max_queue=100, batch_size=10, delay_sec=60)
    shipper.start()
    try:
        for n in range(25):
            shipper.add(span(n))
        for _ in range(100):
            if len(sent.batches) == 2:
                break
            await asyncio.sleep(0.01)
        assert [len(batch) for batch in sent.batches] == [10, 10]  # 5 wait for the delay
    finally:
        await shipper.stop()
    assert [len(batch) for batch in sent.batches] == [10, 10, 5]  # stop sends the rest
    assert [s.name for batch in sent.batches for s in batch] == [f"span {n}" for n in range(25)]
    assert shipper.sent == 25


async def test_the_delay_sends_a_partial_batch() -> None:
    sent = Recorder()
    shipper = SpanShipper(sent, max_queue=100, batch_size=10, delay_sec=0.05)
    shipper.start()
    try:
        shipper.add(span(1))
        await asyncio.sleep(0.2)
        assert [len(batch) for batch in sent.batches] == [1]
    finally:
        await shipper.stop()


async def test_a_full_queue_drops_and_counts_and_failures_are_counted() -> None:
    refused = Recorder(succeed=False)
    shipper = SpanShipper(refused, max_queue=5, batch_size=5, delay_sec=60)
    for n in range(8):  # not started: nothing is sent meanwhile
        shipper.add(span(n))
    assert shipper.dropped == 3
    await shipper.stop()
    assert [len(batch) for batch in refused.batches] == [5]
    assert (shipper.failed, shipper.sent) == (5, 0)
