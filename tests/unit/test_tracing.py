"""Tracing settings, the resource's precedence rules, the traceparent parser, and the
sampling decision the request observer takes without the SDK."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan

from ticketgate.edge.request import Request
from ticketgate.envparse import ConfigError
from ticketgate.observability.settings import TracingSettings
from ticketgate.observability.spans import SpanRecord
from ticketgate.observability.tracing import (
    RedisTracer,
    RequestTracer,
    Tracing,
    build_resource,
    client_span,
    current_trace_id,
    deactivate,
    end_client_span,
    format_traceparent,
    parse_traceparent,
    start_tracing,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def test_defaults_are_off_at_one_in_ten() -> None:
    settings = TracingSettings.from_env({})
    assert (settings.enabled, settings.sample_rate, settings.otlp_endpoint) == (False, 0.1, "")


def test_the_project_variables_are_read() -> None:
    settings = TracingSettings.from_env(
        {
            "OBSERVABILITY_TRACING_ENABLED": "true",
            "OBSERVABILITY_SAMPLE_RATE": "0.25",
            "OBSERVABILITY_OTLP_ENDPOINT": "http://collector:4317",
        }
    )
    assert (settings.enabled, settings.sample_rate, settings.otlp_endpoint) == (
        True,
        0.25,
        "http://collector:4317",
    )


def test_otel_variables_fill_in_and_switch_off() -> None:
    assert TracingSettings.from_env({"OTEL_TRACES_SAMPLER_ARG": "0.5"}).sample_rate == 0.5
    both = {"OBSERVABILITY_SAMPLE_RATE": "0.2", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    assert TracingSettings.from_env(both).sample_rate == 0.2
    disabled = {"OBSERVABILITY_TRACING_ENABLED": "true", "OTEL_SDK_DISABLED": "true"}
    assert TracingSettings.from_env(disabled).enabled is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OBSERVABILITY_SAMPLE_RATE": "1.5"}, "OBSERVABILITY_SAMPLE_RATE must be between"),
        ({"OBSERVABILITY_SAMPLE_RATE": "often"}, "OBSERVABILITY_SAMPLE_RATE must be a number"),
        ({"OTEL_TRACES_SAMPLER_ARG": "-1"}, "OTEL_TRACES_SAMPLER_ARG must be between"),
        ({"OBSERVABILITY_TRACING_ENABLED": "maybe"}, "OBSERVABILITY_TRACING_ENABLED"),
        ({"OBSERVABILITY_OTLP_ENDPOINT": "collector"}, "OBSERVABILITY_OTLP_ENDPOINT"),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TracingSettings.from_env(env)


def test_service_name_defaults_to_ticketgate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    attributes = build_resource().attributes
    assert attributes["service.name"] == "ticketgate"
    assert attributes["deployment.environment"] == "staging"


def test_otel_service_name_wins_over_resource_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert build_resource().attributes["service.name"] == "from-attributes"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    assert build_resource().attributes["service.name"] == "gateway-eu"


def test_traceparent_round_trip() -> None:
    parent = parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert parent is not None
    assert parent.is_remote
    assert parent.trace_flags.sampled
    assert format_traceparent(parent) == f"00-{TRACE}-{SPAN}-01"
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None
    assert not unsampled.trace_flags.sampled
    # A future version may append fields; its known prefix is still honoured.
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-extra") is not None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case is invalid
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE}x{SPAN}-01",
    ],
)
def test_malformed_traceparents_are_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.fixture
def tracing_at() -> Iterator[Callable[[float], None]]:
    """Start the worker's tracing at a sample rate (an in-memory exporter); stop it after."""
    started: list[Tracing] = []

    def start(rate: float) -> None:
        settings = TracingSettings(True, "", rate, InMemorySpanExporter())
        started.append(start_tracing(settings))

    yield start
    for tracing in started:
        deactivate(tracing)


def _request(trace_id: int, caller: str = "") -> Request:
    headers = {b"traceparent": caller.encode()} if caller else {}
    return Request("GET", "/api/v1/queue/status", b"", headers, f"{trace_id:032x}", "127.0.0.1")


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.999, 1.0])
def test_the_sampling_decision_is_the_sdks(
    rate: float, tracing_at: Callable[[float], None]
) -> None:
    """RequestTracer decides without the SDK; ParentBased(TraceIdRatioBased(rate)) is the
    reference, over random trace ids, ids at the rate's bound, and caller flags."""
    tracing_at(rate)
    sdk = ParentBased(TraceIdRatioBased(rate))
    bound = TraceIdRatioBased.get_bound_for_rate(rate)
    rng = random.Random(rate)
    edges = [bound - 1, bound, bound + 1, 0, 1, 2**64 - 1]
    ids = [rng.getrandbits(128) or 1 for _ in range(1500)]
    ids += [(rng.getrandbits(64) << 64) | (edge % 2**64) or 1 for edge in edges]
    tracer = RequestTracer()
    for trace_id in ids:
        for flag in (None, "00", "01", "03", "02"):
            span_hex = f"{rng.getrandbits(64) or 1:016x}"
            caller = f"00-{trace_id:032x}-{span_hex}-{flag}" if flag else ""
            parent = None
            if caller:
                remote = parse_traceparent(caller)
                assert remote is not None
                parent = trace.set_span_in_context(NonRecordingSpan(remote))
            decision = sdk.should_sample(parent, trace_id, "GET").decision
            expected = decision is Decision.RECORD_AND_SAMPLE
            request = _request(rng.getrandbits(128) if caller else trace_id, caller)
            state = tracer.begin(request)
            tracer.end(request, state, "/api/v1/queue/status", 200, 0.001)
            assert (state is not None) == expected, (rate, f"{trace_id:032x}", flag)
            assert request.trace_id == f"{trace_id:032x}"


def test_an_unsampled_request_touches_no_context_and_tells_the_backends(
    tracing_at: Callable[[float], None],
) -> None:
    tracing_at(1.0)
    tracer = RequestTracer()
    request = _request(0xABC, f"00-{TRACE}-{SPAN}-00")
    assert tracer.begin(request) is None
    assert current_trace_id() is None
    assert RedisTracer().begin("status") is None
    traced = client_span("reservation", "CreateReservation", "127.0.0.1:1", request.trace_id)
    assert traced is not None
    span, traceparent = traced
    assert span is None
    assert traceparent[:36] == f"00-{TRACE}-"
    assert traceparent.endswith("-00")
    assert parse_traceparent(traceparent) is not None


def test_a_sampled_request_is_the_parent_of_its_redis_and_backend_spans(
    tracing_at: Callable[[float], None],
) -> None:
    tracing_at(0.0)
    tracer = RequestTracer()
    request = _request(0xABC, f"00-{TRACE}-{SPAN}-01")
    state = tracer.begin(request)
    assert state is not None
    assert isinstance(state, tuple)
    server = state[0]
    assert isinstance(server, SpanRecord)
    assert current_trace_id() == TRACE
    assert (server.parent_id, server.remote_parent) == (int(SPAN, 16), True)
    redis_span = RedisTracer().begin("status")
    assert isinstance(redis_span, SpanRecord)
    traced = client_span("reservation", "CreateReservation", "127.0.0.1:1", request.trace_id)
    assert traced is not None
    client, traceparent = traced
    assert client is not None
    assert traceparent == f"00-{TRACE}-{client.span_id:016x}-01"
    for child in (redis_span, client):
        assert child.trace_id == int(TRACE, 16)
        assert child.parent_id == server.span_id
        assert not child.remote_parent
    end_client_span(client, "OK")
    RedisTracer().end("status", redis_span, 0.0, None)
    tracer.end(request, state, "/api/v1/queue/status", 200, 0.001)
    assert current_trace_id() is None
    assert RedisTracer().begin("status") is None
