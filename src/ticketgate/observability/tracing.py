"""OpenTelemetry tracing: settings, the per-worker span pipeline, and the span observers.

Spans are made in four places, each cheap to skip: the HTTP edge (a SERVER span per request,
`RequestTracer`), every gRPC call to a backend (a CLIENT span whose context travels as
`traceparent`, `client_span`), the reference services (a SERVER span per RPC,
`TracingServerInterceptor`) and Redis scripts run for a sampled request (`RedisTracer`).

The spans are our own records (`spans.SpanRecord`), not SDK spans, and are batched, encoded
and shipped on the worker's event loop (`otlp_export`): the SDK's span and export thread
cost a sampled request ~127 µs of the worker's CPU where these cost ~8 µs (served gateway,
docs/benchmarks.md "Observability cost"). What leaves the process is standard OTLP, sent
by the SDK's own OTLP exporter, so collectors and the OTEL_* variables see no difference.

The pipeline is built in the worker process by the app's start-up hook, never at import:
the shipping task belongs to the worker's loop. It lives in this module (`_active`), not in
a global of OpenTelemetry's, so tests can build many apps in one process.

Sampling is `ParentBased(TraceIdRatioBased(rate))`, decided here: a caller's `traceparent`
decides for the whole trace (sampled: recorded here too; not sampled: nothing recorded), and
only requests without one are sampled at `OBSERVABILITY_SAMPLE_RATE` (by the trace id's low
64 bits, as the SDK's sampler does; a unit test pins the two decisions equal).

Settings and their precedence (README "Tracing"):
- OBSERVABILITY_TRACING_ENABLED (default false); OTEL_SDK_DISABLED=true also turns it off.
- OBSERVABILITY_SAMPLE_RATE in [0, 1], default 0.1; when unset, OTEL_TRACES_SAMPLER_ARG.
- OBSERVABILITY_OTLP_ENDPOINT (gRPC, e.g. http://collector:4317) wins over
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which wins over OTEL_EXPORTER_OTLP_ENDPOINT (the SDK's
  exporter reads those two, and OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,
  INSECURE} and their _TRACES_ forms); the default is localhost:4317.
- Resource: OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else
  "ticketgate"; every other OTEL_RESOURCE_ATTRIBUTES pair is added as given.
- OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE and
  OTEL_BSP_EXPORT_TIMEOUT (milliseconds, spans) tune the batching as they tune the SDK's.
"""

from __future__ import annotations

import asyncio
import re
from contextvars import ContextVar
from random import getrandbits
from time import time_ns
from typing import TYPE_CHECKING, Any, cast

import grpc
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from ticketgate import __version__
from ticketgate.observability.otlp_export import (
    OtlpEncoder,
    OtlpSender,
    PreEncodedOTLPSpanExporter,
    SdkSender,
    SpanShipper,
)
from ticketgate.observability.settings import TracingSettings
from ticketgate.observability.spans import KIND_CLIENT, KIND_SERVER, SpanRecord, new_span_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from contextvars import Token

    from ticketgate.edge.request import Request

DEFAULT_SERVICE_NAME = "ticketgate"
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ODD_HEX = frozenset(b"13579bdf")  # a flags byte whose last hex digit is odd: "sampled"
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
# What str.strip() removes from a latin-1 decoded header, for the same answer on the bytes.
_LATIN1_SPACE = bytes(c for c in range(256) if chr(c).isspace())
_DROP = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_LOW_64 = (1 << 64) - 1
# The span of the sampled request (or RPC) being served, None otherwise: the parent of the
# Redis and backend spans made meanwhile, and the trace id log records are stamped with.
_CURRENT: ContextVar[SpanRecord | None] = ContextVar("ticketgate_current_span", default=None)
# gRPC codes that are the server's fault (OpenTelemetry's rule for SERVER spans).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class Tracing:
    """This process's span pipeline: the sampling bound and the shipper spans go to."""

    def __init__(self, bound: int, shipper: SpanShipper, close: Callable[[], None]) -> None:
        self.bound = bound  # a root trace is sampled when its id's low 64 bits are below
        self.shipper = shipper
        self._close = close

    def start(self) -> None:
        """Begin shipping from the running loop (the worker's)."""
        self.shipper.start()

    async def stop(self) -> None:
        """Stop recording, send what is waiting, release the exporter."""
        deactivate(self)
        await self.shipper.stop()
        await asyncio.to_thread(self._close)  # the SDK exporter's shutdown may block


_active: Tracing | None = None


def is_active() -> bool:
    """Whether this process traces now (callers skip all span work otherwise)."""
    return _active is not None


def build_resource(default_service_name: str = DEFAULT_SERVICE_NAME) -> Resource:
    """The SDK's detected resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, telemetry.sdk.*)
    over our defaults: only a service name the SDK had to invent is replaced."""
    detected = Resource.create()
    attributes: dict[str, Any] = {
        SERVICE_NAME: default_service_name,
        SERVICE_VERSION: __version__,
    }
    for key, value in detected.attributes.items():
        if key == SERVICE_NAME and str(value).startswith("unknown_service"):
            continue
        attributes[key] = value
    return Resource(attributes, detected.schema_url)


def start_tracing(
    settings: TracingSettings, default_service_name: str = DEFAULT_SERVICE_NAME
) -> Tracing:
    """Build this process's pipeline and make it the active one (replacing any other).
    Call in the process that makes the spans, then `start()` it on that process's loop."""
    global _active
    resource = build_resource(default_service_name)
    scope = InstrumentationScope("ticketgate", __version__)
    sender: SdkSender | OtlpSender
    if settings.exporter is not None:
        sender = SdkSender(settings.exporter, resource, scope)
    else:
        exporter = PreEncodedOTLPSpanExporter(endpoint=settings.otlp_endpoint or None)
        sender = OtlpSender(OtlpEncoder(resource, scope), exporter)
    shipper = SpanShipper(
        sender,
        max_queue=settings.max_queue_size,
        batch_size=settings.max_export_batch_size,
        delay_sec=settings.schedule_delay_ms / 1000,
        export_timeout_sec=settings.export_timeout_ms / 1000,
    )
    bound = TraceIdRatioBased.get_bound_for_rate(settings.sample_rate)
    _active = Tracing(bound, shipper, sender.close)
    return _active


def deactivate(tracing: Tracing) -> None:
    """Stop recording new spans through `tracing` (what is waiting is not sent; see stop)."""
    global _active
    if _active is tracing:
        _active = None


def current_trace_id() -> str | None:
    """The trace id of the sampled request being served, as 32 hex digits, else None."""
    span = _CURRENT.get()
    return f"{span.trace_id:032x}" if span is not None else None


def _parse_traceparent(header: bytes) -> bytes | None:
    """A W3C `traceparent` cut to its version 00 layout (55 bytes: version, trace id, span
    id, flags), or None when malformed. On the raw header bytes with one small regex: the
    propagator's carrier plumbing, or a SpanContext, cost more than the whole unsampled
    request's tracing should."""
    value = header.strip(_LATIN1_SPACE)
    if len(value) != 55:  # a later version may append "-" and fields of its own
        if len(value) < 55 or value[55] != 45 or value.startswith(b"00"):  # 45: "-"
            return None
        value = value[:55]
    if _TRACEPARENT.fullmatch(value) is None or value.startswith(b"ff"):
        return None
    if value.startswith(_ZERO_TRACE, 3) or value.startswith(_ZERO_SPAN, 36):
        return None
    return value


def parse_traceparent(value: str) -> SpanContext | None:
    """A remote parent from a W3C `traceparent` (version 00 layout), or None when absent or
    malformed (for callers holding a str; the observers parse the header bytes)."""
    parsed = _parse_traceparent(value.encode("latin-1", "replace"))
    if parsed is None:
        return None
    return SpanContext(
        int(parsed[3:35], 16),
        int(parsed[36:52], 16),
        is_remote=True,
        trace_flags=_SAMPLED if parsed[54] in _ODD_HEX else _DROP,
    )


def format_traceparent(span_context: SpanContext) -> str:
    flags = "01" if span_context.trace_flags.sampled else "00"
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags}"


class RequestTracer:
    """RequestObserver: one SERVER span per sampled HTTP request, current while it runs.

    The span continues the caller's `traceparent` (and its sampling decision); without one it
    is a root span with the trace id the edge chose, so the error envelope, X-Request-ID and
    the trace agree. Attributes: method, route template, status; never the path's query,
    headers or tokens.

    Most requests are not sampled (9 in 10 at the default rate), and for them this costs a
    dictionary lookup and an integer comparison; an unsampled request's backend calls still
    carry its trace id, flagged "not sampled" (`client_span`).
    """

    def begin(self, request: Request) -> object:
        active = _active
        if active is None:  # tracing stopped (shutdown) while requests were in flight
            return None
        header = request.headers.get(b"traceparent")
        caller = _parse_traceparent(header) if header else None
        if caller is None:
            if int(request.trace_id[16:], 16) >= active.bound:  # the ratio rule, low 64 bits
                return None
            span = SpanRecord(int(request.trace_id, 16), 0, False, request.method, KIND_SERVER)
        else:
            request.trace_id = caller[3:35].decode()
            if caller[54] not in _ODD_HEX:  # the caller's "not sampled" flag
                return None
            span = SpanRecord(
                int(caller[3:35], 16), int(caller[36:52], 16), True, request.method, KIND_SERVER
            )
        return span, _CURRENT.set(span)

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None:
        if state is None:
            return
        span, token = cast("tuple[SpanRecord, Token[SpanRecord | None]]", state)
        _CURRENT.reset(token)
        span.end_ns = time_ns()
        span.name = f"{request.method} {route}"
        span.attributes = {
            "http.request.method": request.method,
            "http.route": route,
            "http.response.status_code": status,
        }
        if status >= 500:
            span.fail()
        _ship(span)


def _ship(span: SpanRecord) -> None:
    active = _active
    if active is not None:
        active.shipper.add(span)


class RedisTracer:
    """OperationObserver: a CLIENT span per Redis script, only inside a sampled trace.

    Scripts run outside a request (the sweeper, rate-limit sync) would otherwise start traces
    of their own; an unsampled request costs one context-variable read.
    """

    def begin(self, operation: str) -> object:
        parent = _CURRENT.get()
        if parent is None:
            return None
        return SpanRecord(
            parent.trace_id,
            parent.span_id,
            False,
            operation,
            KIND_CLIENT,
            {"db.system": "redis", "db.operation": operation},
        )

    def end(
        self, operation: str, state: object, duration_s: float, error: BaseException | None
    ) -> None:
        if state is None:
            return
        span: SpanRecord = state  # type: ignore[assignment]
        span.end_ns = time_ns()
        if error is not None:
            span.attributes["error.type"] = type(error).__qualname__
            span.fail()
        _ship(span)


class RpcTracer:
    """RpcObserver: a CLIENT span per backend RPC inside a sampled request, and the
    `traceparent` that carries the trace to the backend (see `client_span`)."""

    def begin(self, service: str, method: str, address: str, trace_id: str) -> tuple[object, str]:
        traced = client_span(service, method, address, trace_id)
        return (None, "") if traced is None else traced

    def end(self, service: str, method: str, state: object, status: str, duration_s: float) -> None:
        if state is not None:
            end_client_span(state, status)  # type: ignore[arg-type]


def client_span(
    service: str, method: str, address: str, trace_id: str
) -> tuple[SpanRecord | None, str] | None:
    """A CLIENT span for one backend RPC and the `traceparent` that carries it; None when
    tracing is off (the caller keeps its own traceparent).

    Inside a sampled request the span is a child of the request's; otherwise (an unsampled
    request: backend calls are made only while serving one) there is no span and the
    traceparent names `trace_id`, the request's, with a new span id and the "not sampled"
    flag, so the backends record nothing either."""
    if _active is None:
        return None
    parent = _CURRENT.get()
    if parent is None:
        return None, f"00-{trace_id}-{new_span_id():016x}-00"
    span = SpanRecord(
        parent.trace_id,
        parent.span_id,
        False,
        f"{service}/{method}",
        KIND_CLIENT,
        {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "server.address": address,
        },
    )
    return span, span.traceparent()


def end_client_span(span: SpanRecord | None, status: str) -> None:
    """`status`: OK, a gRPC status name, or a gateway-side refusal such as BREAKER_OPEN."""
    if span is None:
        return
    span.end_ns = time_ns()
    span.attributes["rpc.grpc.status_code"] = status
    if status != "OK":
        span.fail(status)
    _ship(span)


# Generic only in the stubs.
if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class TracingServerInterceptor(_Interceptor):
    """A SERVER span per unary RPC of the reference services, continuing the caller's
    `traceparent` from the metadata (a call without one is sampled at the rate, as a new
    trace). Add it only while tracing is on: it costs a wrapper per call."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary
        full_method: str = handler_call_details.method  # "/pkg.Service/Method"
        service, _, method = full_method.lstrip("/").partition("/")
        traceparent = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "traceparent":
                traceparent = (
                    value.encode("latin-1", "replace") if isinstance(value, str) else value
                )
                break

        # A grpc.aio.ServicerContext; the stubs type a handler's as the sync one.
        async def traced(request: Any, context: Any) -> Any:
            active = _active
            if active is None:
                return await behaviour(request, context)
            caller = _parse_traceparent(traceparent) if traceparent else None
            if caller is not None:
                if caller[54] not in _ODD_HEX:
                    return await behaviour(request, context)  # the caller's decision: no span
                trace_id, parent_id = int(caller[3:35], 16), int(caller[36:52], 16)
            else:
                trace_id, parent_id = getrandbits(128) or 1, 0
                if trace_id & _LOW_64 >= active.bound:
                    return await behaviour(request, context)
            span = SpanRecord(
                trace_id, parent_id, bool(parent_id), full_method.lstrip("/"), KIND_SERVER
            )
            token = _CURRENT.set(span)
            try:
                return await behaviour(request, context)
            finally:
                _CURRENT.reset(token)
                span.end_ns = time_ns()
                code = context.code()
                if isinstance(code, grpc.StatusCode):
                    span.attributes["rpc.grpc.status_code"] = code.value[0]
                    if code in _SERVER_FAULTS:
                        span.fail(code.name)
                span.attributes.update(
                    {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
                )
                _ship(span)

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
