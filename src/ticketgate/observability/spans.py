"""Finished-span records: what a sampled request's spans are, kept as plain slotted objects.

The OpenTelemetry SDK's span costs ~25 µs to start and end on this machine (sampler, span
context, bounded attributes behind a lock, processor hooks, a readable copy at the end),
and its batch processor hands them to an export thread that holds the GIL while it encodes
(a gateway worker waits for it between every socket read and write). Measured in a served
gateway at sample rate 1: +53 µs per request to make the two spans of a join with the SDK,
+60 µs more to batch and export them. These records cost a few microseconds, are collected
on the event loop, and are encoded and sent there too (`otlp_export.SpanShipper`), so no
thread competes with request handling.

The wire format stays OpenTelemetry's: records are encoded into the same OTLP messages the
SDK's encoder builds (pinned by tests/unit/test_otlp_export.py), and `to_readable` turns
them into SDK `ReadableSpan`s for any SDK `SpanExporter` (the tests' in-memory exporter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from random import getrandbits
from time import time_ns
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

AttributeValue = str | bool | int | float

# OTLP's Span.SpanKind numbers (opentelemetry.proto.trace.v1.Span.SpanKind).
KIND_SERVER = 2
KIND_CLIENT = 3
# OTLP's Status.StatusCode numbers.
STATUS_UNSET = 0
STATUS_ERROR = 2


def new_span_id() -> int:
    return getrandbits(64) or 1


@dataclass(slots=True, eq=False)
class SpanRecord:
    """One span of a sampled trace. `parent_id` 0 is a root; `remote_parent` says the parent
    came from a caller's traceparent (OTLP's span flags carry it)."""

    trace_id: int
    parent_id: int
    remote_parent: bool
    name: str
    kind: int
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    span_id: int = field(default_factory=new_span_id)
    start_ns: int = field(default_factory=time_ns)
    end_ns: int = 0
    status: int = STATUS_UNSET
    status_message: str = ""

    def traceparent(self) -> str:
        """The W3C header naming this span as the parent, sampled."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def fail(self, message: str = "") -> None:
        self.status = STATUS_ERROR
        self.status_message = message


def to_readable(
    record: SpanRecord, resource: Resource, scope: InstrumentationScope
) -> ReadableSpan:
    """The SDK's view of a record, for SDK exporters (and for comparing encodings)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    sampled = TraceFlags(TraceFlags.SAMPLED)
    parent = None
    if record.parent_id:
        parent = SpanContext(
            record.trace_id, record.parent_id, is_remote=record.remote_parent, trace_flags=sampled
        )
    status = (
        Status(StatusCode.ERROR, record.status_message or None)
        if record.status == STATUS_ERROR
        else Status(StatusCode.UNSET)
    )
    return ReadableSpan(
        name=record.name,
        context=SpanContext(record.trace_id, record.span_id, is_remote=False, trace_flags=sampled),
        parent=parent,
        resource=resource,
        attributes=dict(record.attributes),
        kind=SpanKind.SERVER if record.kind == KIND_SERVER else SpanKind.CLIENT,
        status=status,
        start_time=record.start_ns,
        end_time=record.end_ns,
        instrumentation_scope=scope,
    )
