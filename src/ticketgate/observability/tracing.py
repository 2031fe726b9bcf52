"""OpenTelemetry tracing: settings, the per-worker tracer provider, and the span observers.

Spans are made in four places, each cheap to skip: the HTTP edge (a SERVER span per request,
`RequestTracer`), every gRPC call to a backend (a CLIENT span whose context travels as
`traceparent`, `client_span`), the reference services (a SERVER span per RPC,
`TracingServerInterceptor`) and Redis scripts run for a sampled request (`RedisTracer`).

The provider is built in the worker process by the app's start-up hook, never at import: the
export thread of a provider made in uvicorn's parent would not survive the fork into a
worker. It lives in this module (`active_tracer`), not in OpenTelemetry's global, which may be
set only once per process while tests build many apps in one.

Sampling is `ParentBased(TraceIdRatioBased(rate))`: a caller's `traceparent` decides for the
whole trace (sampled: recorded here too; not sampled: nothing recorded), and only requests
without one are sampled at `OBSERVABILITY_SAMPLE_RATE`.

Settings and their precedence (README "Tracing"):
- OBSERVABILITY_TRACING_ENABLED (default false); OTEL_SDK_DISABLED=true also turns it off.
- OBSERVABILITY_SAMPLE_RATE in [0, 1], default 0.1; when unset, OTEL_TRACES_SAMPLER_ARG.
- OBSERVABILITY_OTLP_ENDPOINT (gRPC, e.g. http://collector:4317) wins over
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, which wins over OTEL_EXPORTER_OTLP_ENDPOINT (the SDK
  reads those two, and OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,COMPRESSION,CERTIFICATE,INSECURE}
  and their _TRACES_ forms); the SDK's default is localhost:4317.
- Resource: OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else
  "ticketgate"; every other OTEL_RESOURCE_ATTRIBUTES pair is added as given.
- OTEL_BSP_* tune the batch span processor (queue size, delay, export timeout).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from random import getrandbits
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from ticketgate import __version__
from ticketgate.config import ConfigError, env_bool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ticketgate.http.core import Request

DEFAULT_SERVICE_NAME = "ticketgate"
DEFAULT_SAMPLE_RATE = 0.1
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_ODD_HEX = frozenset(b"13579bdf")  # a flags byte whose last hex digit is odd: "sampled"
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
# What str.strip() removes from a latin-1 decoded header, for the same answer on the bytes.
_LATIN1_SPACE = bytes(c for c in range(256) if chr(c).isspace())
_DROP = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# True while a sampled request is served (its span is then also OpenTelemetry's current one):
# the Redis and backend observers read this one variable instead of OpenTelemetry's context.
_IN_SAMPLED: ContextVar[bool] = ContextVar("ticketgate_in_sampled_request", default=False)
_ROOT = otel_context.Context()  # an empty context: a span started in it is a root span
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


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What `from_env` read; `exporter` is never read from the environment: None means OTLP
    over gRPC, and tests hand in the SDK's in-memory exporter instead."""

    enabled: bool = False
    otlp_endpoint: str = ""
    sample_rate: float = DEFAULT_SAMPLE_RATE
    exporter: SpanExporter | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TracingSettings:
        enabled = env_bool(env, "OBSERVABILITY_TRACING_ENABLED", False)
        if env_bool(env, "OTEL_SDK_DISABLED", False):
            enabled = False
        name, raw = "OBSERVABILITY_SAMPLE_RATE", env.get("OBSERVABILITY_SAMPLE_RATE", "").strip()
        if not raw:
            name, raw = "OTEL_TRACES_SAMPLER_ARG", env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        rate = DEFAULT_SAMPLE_RATE
        if raw:
            try:
                rate = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {raw}")
        endpoint = env.get("OBSERVABILITY_OTLP_ENDPOINT", "").strip()
        if endpoint and "://" not in endpoint and ":" not in endpoint:
            raise ConfigError(
                f"OBSERVABILITY_OTLP_ENDPOINT must be host:port or a URL, got {endpoint!r}"
            )
        return cls(enabled=enabled, otlp_endpoint=endpoint, sample_rate=rate)


class _RequestIdGenerator(RandomIdGenerator):
    """Random ids, except that a root span started for an HTTP request takes the trace id the
    edge already chose for it (and put in X-Request-ID before observers run).

    `prime` and the `start_span` that consumes the id run back to back in one thread; the
    value is thread-local so a span started meanwhile in another thread cannot take it.
    """

    def __init__(self) -> None:
        self._primed = threading.local()

    def prime(self, trace_id: int) -> None:
        self._primed.value = trace_id

    def generate_trace_id(self) -> int:
        value: int = getattr(self._primed, "value", 0)
        if value:
            self._primed.value = 0
            return value
        return super().generate_trace_id()


@dataclass(slots=True)
class _Active:
    provider: TracerProvider
    tracer: trace.Tracer
    ids: _RequestIdGenerator
    bound: int  # TraceIdRatioBased's: a root trace is sampled when its low 64 bits are below


_active: _Active | None = None


@dataclass(slots=True)
class _Sampled:
    """A sampled request's state between `begin` and `end`."""

    span: Span
    token: Token[otel_context.Context]
    mark: Token[bool]


def active_tracer() -> trace.Tracer | None:
    """The worker's tracer, or None while tracing is off (callers then skip all span work)."""
    return _active.tracer if _active is not None else None


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
) -> TracerProvider:
    """Build this process's provider and make it the active one (a previous one is shut
    down). Call in the process that will make the spans: the worker, after the fork."""
    global _active
    ids = _RequestIdGenerator()
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(settings.sample_rate)),
        resource=build_resource(default_service_name),
        id_generator=ids,
    )
    exporter = settings.exporter
    if exporter is None:
        from ticketgate.observability.otlp_export import FastEncodingOTLPSpanExporter

        exporter = FastEncodingOTLPSpanExporter(endpoint=settings.otlp_endpoint or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    bound = TraceIdRatioBased.get_bound_for_rate(settings.sample_rate)
    previous = _active
    _active = _Active(provider, provider.get_tracer("ticketgate"), ids, bound)
    if previous is not None:
        previous.provider.shutdown()
    return provider


def stop_tracing(provider: TracerProvider) -> None:
    """Flush pending spans and stop the export thread (blocking: run it off the event loop)."""
    global _active
    if _active is not None and _active.provider is provider:
        _active = None
    provider.shutdown()


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
    malformed."""
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
    dictionary lookup and an integer comparison: `begin` takes the decision the provider's
    `ParentBased(TraceIdRatioBased(rate))` would take (the caller's flag wins; else a new
    trace is kept when its id's low 64 bits are below the rate's bound; pinned to the SDK's
    sampler by a unit test), and only a sampled request enters the SDK. An unsampled one
    makes no span and touches no context; its backend calls still carry its trace id,
    flagged "not sampled" (`client_span`).
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
            trace_id = int(request.trace_id, 16)
            active.ids.prime(trace_id)
            parent = _ROOT
        else:
            request.trace_id = caller[3:35].decode()
            if caller[54] not in _ODD_HEX:  # the caller's "not sampled" flag
                return None
            remote = SpanContext(
                int(caller[3:35], 16), int(caller[36:52], 16), is_remote=True, trace_flags=_SAMPLED
            )
            parent = trace.set_span_in_context(NonRecordingSpan(remote), _ROOT)
        span = active.tracer.start_span(
            request.method, context=parent, kind=SpanKind.SERVER, record_exception=False
        )
        active.ids.prime(0)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return _Sampled(span, token, _IN_SAMPLED.set(True))

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None:
        if state is None:
            return
        kept: _Sampled = state  # type: ignore[assignment]
        span = kept.span
        _IN_SAMPLED.reset(kept.mark)
        otel_context.detach(kept.token)
        span.update_name(f"{request.method} {route}")
        span.set_attributes(
            {
                "http.request.method": request.method,
                "http.route": route,
                "http.response.status_code": status,
            }
        )
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class RedisTracer:
    """OperationObserver: a CLIENT span per Redis script, only inside a sampled trace.

    Scripts run outside a request (the sweeper, rate-limit sync) would otherwise start traces
    of their own at the sample rate; an unsampled request costs one context-variable read.
    """

    def begin(self, operation: str) -> object:
        active = _active
        if active is None or not _IN_SAMPLED.get():
            return None
        return active.tracer.start_span(
            operation,
            kind=SpanKind.CLIENT,
            attributes={"db.system": "redis", "db.operation": operation},
            record_exception=False,
        )

    def end(
        self, operation: str, state: object, duration_s: float, error: BaseException | None
    ) -> None:
        if state is None:
            return
        span: Span = state  # type: ignore[assignment]
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def client_span(
    service: str, method: str, address: str, trace_id: str
) -> tuple[Span | None, str] | None:
    """A CLIENT span for one backend RPC and the `traceparent` that carries it; None when
    tracing is off (the caller keeps its own traceparent).

    Inside a sampled request the span is a child of the request's; otherwise (an unsampled
    request: backend calls are made only while serving one) there is no span and the
    traceparent names `trace_id`, the request's, with a new span id and the "not sampled"
    flag, so the backends record nothing either."""
    active = _active
    if active is None:
        return None
    if not _IN_SAMPLED.get():
        return None, f"00-{trace_id}-{getrandbits(64) or 1:016x}-00"
    span = active.tracer.start_span(
        f"{service}/{method}",
        kind=SpanKind.CLIENT,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
            "server.address": address,
        },
    )
    return span, format_traceparent(span.get_span_context())


def end_client_span(span: Span | None, status: str) -> None:
    """`status`: OK, a gRPC status name, or a gateway-side refusal such as BREAKER_OPEN."""
    if span is None:
        return
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", status)
        if status != "OK":
            span.set_status(Status(StatusCode.ERROR, status))
    span.end()


# Generic only in the stubs.
if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class TracingServerInterceptor(_Interceptor):
    """A SERVER span per unary RPC of the reference services, continuing the caller's
    `traceparent` from the metadata. Add it only while tracing is on: it costs a wrapper
    per call."""

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
        traceparent = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "traceparent":
                traceparent = value if isinstance(value, str) else value.decode("latin-1")
                break

        # A grpc.aio.ServicerContext; the stubs type a handler's as the sync one.
        async def traced(request: Any, context: Any) -> Any:
            active = _active
            if active is None:
                return await behaviour(request, context)
            caller = parse_traceparent(traceparent) if traceparent else None
            if caller is not None and not caller.trace_flags.sampled:
                return await behaviour(request, context)  # the caller's decision: no span
            parent = trace.set_span_in_context(NonRecordingSpan(caller), _ROOT) if caller else _ROOT
            span = active.tracer.start_span(
                f"{service}/{method}",
                context=parent,
                kind=SpanKind.SERVER,
                record_exception=False,
                set_status_on_exception=False,
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            mark = _IN_SAMPLED.set(span.is_recording())
            try:
                return await behaviour(request, context)
            finally:
                _IN_SAMPLED.reset(mark)
                otel_context.detach(token)
                if span.is_recording():
                    code = context.code()
                    if isinstance(code, grpc.StatusCode):
                        span.set_attribute("rpc.grpc.status_code", code.value[0])
                        if code in _SERVER_FAULTS:
                            span.set_status(Status(StatusCode.ERROR, code.name))
                    span.set_attributes(
                        {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
                    )
                span.end()

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
