"""The fast OTLP encoding builds exactly the SDK encoder's request, and really exports it.

The comparison is on the protobuf messages (field by field), for the spans the gateway
makes and for the shapes that take the library's own path (events, links, trace state,
sequence attributes); the export goes over a real gRPC socket to a collector started here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from tests.redis_server import free_port
from ticketgate.observability.otlp_export import (
    FastEncodingOTLPSpanExporter,
    encode_spans_by_identity,
)
from ticketgate.observability.tracing import build_resource


def finished_spans(resource: Resource, shapes: str = "ours") -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("ticketgate", "1.0")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    for status in (200, 503):
        server = tracer.start_span(
            "GET /api/v1/queue/status",
            context=set_span_in_context(NonRecordingSpan(remote)),
            kind=SpanKind.SERVER,
        )
        child = tracer.start_span(
            "status",
            context=set_span_in_context(server),
            kind=SpanKind.CLIENT,
            attributes={"db.system": "redis", "db.operation": "status"},
        )
        child.end()
        server.set_attributes(
            {
                "http.request.method": "GET",
                "http.route": "/api/v1/queue/status",
                "http.response.status_code": status,
                "sampled.ratio": 0.1,
                "retried": False,
            }
        )
        if status >= 500:
            server.set_status(Status(StatusCode.ERROR, "upstream down"))
        server.end()
    tracer.start_span("root without parent").end()
    if shapes == "all":
        stated = SpanContext(
            0x1234, 0x5678, is_remote=True, trace_state=TraceState([("vendor", "x")])
        )
        odd = tracer.start_span(
            "odd",
            context=set_span_in_context(NonRecordingSpan(stated)),
            links=[Link(remote, {"link.kind": "follows"})],
            attributes={"tags": ("a", "b"), "ports": (1, 2)},
        )
        odd.add_event("retry", {"attempt": 2})
        odd.end()
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("shapes", ["ours", "all"])
def test_the_request_equals_the_sdk_encoders(shapes: str) -> None:
    spans = finished_spans(build_resource(), shapes)
    ours = encode_spans_by_identity(spans)
    assert ours == encode_spans(spans)
    assert ours.SerializeToString(deterministic=True) == encode_spans(spans).SerializeToString(
        deterministic=True
    )
    assert sum(len(s.spans) for r in ours.resource_spans for s in r.scope_spans) == len(spans)


def test_spans_of_two_providers_keep_their_own_resources() -> None:
    first = finished_spans(Resource({"service.name": "gateway"}))
    second = finished_spans(Resource({"service.name": "reservation"}))
    mixed = [span for pair in zip(first, second, strict=True) for span in pair]
    ours = encode_spans_by_identity(mixed)
    assert ours == encode_spans(mixed)
    names = [r.resource.attributes[0].value.string_value for r in ours.resource_spans]
    assert names == ["gateway", "reservation"]


def test_repeated_attribute_values_do_not_leak_between_spans() -> None:
    spans = finished_spans(build_resource())
    encoded = encode_spans_by_identity(spans).resource_spans[0].scope_spans[0].spans
    statuses = [
        kv.value.int_value
        for span in encoded
        for kv in span.attributes
        if kv.key == "http.response.status_code"
    ]
    assert statuses == [200, 503]


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


def test_the_exporter_sends_the_spans_to_a_collector(collector: tuple[Collector, int]) -> None:
    sink, port = collector
    spans = finished_spans(build_resource())
    exporter = FastEncodingOTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert sink.received.wait(5)
    assert sink.requests == [encode_spans(spans)]


def test_a_retried_batch_is_not_encoded_again() -> None:
    exporter = FastEncodingOTLPSpanExporter(endpoint=f"http://127.0.0.1:{free_port()}")
    try:
        batch = finished_spans(build_resource())
        first = exporter._translate_data(batch)
        assert exporter._translate_data(batch) is first
        again = exporter._translate_data(list(batch))  # a new batch, equal spans
        assert again is not first
        assert again == first
    finally:
        exporter.shutdown()
