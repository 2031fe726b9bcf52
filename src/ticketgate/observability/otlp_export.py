"""Shipping finished spans: batched on the event loop, encoded to OTLP there, sent off it.

Why not the SDK's BatchSpanProcessor: its export thread encodes each batch while holding
the GIL, and a worker's event loop gives up the GIL at every socket read and write, so
the loop keeps waiting for that thread (measured in a served gateway at sample rate 1: the
batch processor and export cost +60 µs per request on top of making the spans). Here:

- `SpanShipper` collects `SpanRecord`s in a list (an append per span) and, every
  OTEL_BSP_SCHEDULE_DELAY or as soon as OTEL_BSP_MAX_EXPORT_BATCH_SIZE are waiting, hands
  a batch to its sender. Beyond OTEL_BSP_MAX_QUEUE_SIZE waiting spans new ones are dropped
  and counted, as the SDK's processor does. `stop` sends what is left.
- `OtlpSender` encodes the batch on the loop, in slices between which requests run, into
  the OTLP messages the SDK's encoder would build (`encode_records`; the resource and scope
  once per process, each attribute `KeyValue` once per distinct value; tests pin equality
  with the SDK's `encode_spans`), then makes the blocking gRPC call in a thread through the
  SDK's own OTLP exporter, so endpoint, TLS, headers, timeout, compression and retries are
  configured by the standard OTEL_EXPORTER_OTLP_* variables exactly as before. That thread
  only waits on the network, without the GIL.
- `SdkSender` hands the batch, as SDK `ReadableSpan`s, to any SDK `SpanExporter` (tests use
  the in-memory one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    InstrumentationScope as ScopeMessage,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceMessage
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ticketgate.background import cancel_and_wait
from ticketgate.observability.spans import SpanRecord, to_readable

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

log = logging.getLogger("ticketgate.tracing")
_HAS_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_ENCODE_SLICE = 64  # spans encoded between two yields to the loop (~0.3 ms)
_MAX_CACHED_ATTRIBUTES = 4096
_FAILURE_LOG_INTERVAL_SEC = 60.0

Sender = Callable[[list[SpanRecord]], Awaitable[bool]]


def encode_value(value: object) -> AnyValue:
    """An attribute value as OTLP's `AnyValue`, by the rules of the SDK's encoder (bool before
    int, since a bool is an int; sequences to arrays, mappings to key-value lists), written
    here on the public protobuf types so an SDK upgrade cannot move it."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[encode_value(v) for v in value]))
    if isinstance(value, Mapping):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[encode_key_value(str(k), v) for k, v in value.items()]
            )
        )
    raise TypeError(f"attribute value of type {type(value).__name__} cannot be sent in OTLP")


def encode_key_value(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=encode_value(value))


def encode_attributes(attributes: Mapping[str, object] | None) -> list[KeyValue]:
    return [encode_key_value(key, value) for key, value in (attributes or {}).items()]


def encode_resource(resource: Resource) -> ResourceMessage:
    return ResourceMessage(attributes=encode_attributes(resource.attributes))


def encode_scope(scope: InstrumentationScope) -> ScopeMessage:
    return ScopeMessage(
        name=scope.name, version=scope.version or "", attributes=encode_attributes(scope.attributes)
    )


class AttributeCache:
    """Encoded `KeyValue`s by (key, type, value): a gateway's attribute values repeat (the
    method, route templates, status codes, service names)."""

    def __init__(self) -> None:
        self._encoded: dict[tuple[str, type, object], KeyValue] = {}

    def get(self, key: str, value: object) -> KeyValue:
        cache_key = (key, type(value), value)
        encoded = self._encoded.get(cache_key)
        if encoded is None:
            if len(self._encoded) >= _MAX_CACHED_ATTRIBUTES:
                self._encoded.clear()
            encoded = self._encoded[cache_key] = encode_key_value(key, value)
        return encoded


class OtlpEncoder:
    """Records of one resource and scope → an ExportTraceServiceRequest, built in place."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self._resource = encode_resource(resource)
        self._resource_schema = resource.schema_url
        self._scope = encode_scope(scope)
        self._scope_schema = scope.schema_url or ""
        self._attributes = AttributeCache()

    def new_request(self) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add(schema_url=self._resource_schema)
        resource_spans.resource.CopyFrom(self._resource)
        scope_spans = resource_spans.scope_spans.add(schema_url=self._scope_schema)
        scope_spans.scope.CopyFrom(self._scope)
        return request

    def add(self, request: ExportTraceServiceRequest, records: Sequence[SpanRecord]) -> None:
        """Append `records` to a request from `new_request`."""
        spans = request.resource_spans[0].scope_spans[0].spans
        attribute = self._attributes.get
        for record in records:
            parent = record.parent_id
            message = spans.add(
                trace_id=record.trace_id.to_bytes(16, "big"),
                span_id=record.span_id.to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"",
                name=record.name,
                kind=record.kind,
                start_time_unix_nano=record.start_ns,
                end_time_unix_nano=record.end_ns,
                flags=_HAS_IS_REMOTE | _IS_REMOTE
                if parent and record.remote_parent
                else _HAS_IS_REMOTE,
            )
            message.attributes.extend(
                [attribute(key, value) for key, value in record.attributes.items()]
            )
            status = message.status
            status.SetInParent()  # the SDK always sends a status, empty when unset
            if record.status:
                status.code = record.status  # type: ignore[assignment]
                if record.status_message:
                    status.message = record.status_message

    def encode(self, records: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
        request = self.new_request()
        self.add(request, records)
        return request


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    request: ExportTraceServiceRequest
    count: int


class PreEncodedOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC exporter (its settings, channel and retries) fed batches that are
    already encoded.

    The one place that leans on a dependency's private API: the exporter has no public way to
    send a request it did not encode itself, and rebuilding its configuration (endpoint, TLS,
    headers, compression, retries from OTEL_EXPORTER_OTLP_*) would be a second copy of it.
    `_translate_data` and `_count_data` are the hooks its `_export` calls in
    opentelemetry-exporter-otlp-proto-grpc 1.45.2; tests/unit/test_otlp_export.py pins them
    (their presence and a real send to a collector), so an upgrade that moves them fails there.
    """

    def _translate_data(self, data: EncodedBatch) -> ExportTraceServiceRequest:  # type: ignore[override]
        return data.request

    def _count_data(self, data: EncodedBatch) -> int:  # type: ignore[override]
        return data.count

    def export_encoded(self, batch: EncodedBatch) -> bool:
        return self._export(batch) is SpanExportResult.SUCCESS  # type: ignore[arg-type]


class OtlpSender:
    """Encode on the loop (in slices), send from a thread (waiting on the network only)."""

    def __init__(self, encoder: OtlpEncoder, exporter: PreEncodedOTLPSpanExporter) -> None:
        self.encoder = encoder
        self.exporter = exporter

    async def __call__(self, records: list[SpanRecord]) -> bool:
        request = self.encoder.new_request()
        for start in range(0, len(records), _ENCODE_SLICE):
            if start:
                await asyncio.sleep(0)  # let requests run between slices
            self.encoder.add(request, records[start : start + _ENCODE_SLICE])
        batch = EncodedBatch(request, len(records))
        return await asyncio.to_thread(self.exporter.export_encoded, batch)

    def close(self) -> None:
        self.exporter.shutdown()


class SdkSender:
    """Any SDK SpanExporter, fed ReadableSpans (made in the thread that exports them)."""

    def __init__(
        self, exporter: SpanExporter, resource: Resource, scope: InstrumentationScope
    ) -> None:
        self.exporter = exporter
        self.resource = resource
        self.scope = scope

    def _export(self, records: list[SpanRecord]) -> bool:
        spans = [to_readable(record, self.resource, self.scope) for record in records]
        return self.exporter.export(spans) is SpanExportResult.SUCCESS

    async def __call__(self, records: list[SpanRecord]) -> bool:
        return await asyncio.to_thread(self._export, records)

    def close(self) -> None:
        self.exporter.shutdown()


class SpanShipper:
    """Finished spans, waiting to be sent in batches by one task on the worker's loop.

    `add` is called on the loop thread (spans are only made there).
    """

    def __init__(
        self,
        send: Sender,
        *,
        max_queue: int = 2048,
        batch_size: int = 512,
        delay_sec: float = 5.0,
        export_timeout_sec: float = 30.0,
    ) -> None:
        self.send = send
        self.max_queue = max_queue
        self.batch_size = min(batch_size, max_queue)
        self.delay_sec = delay_sec
        self.export_timeout_sec = export_timeout_sec
        self.dropped = 0  # spans refused while the queue was full
        self.failed = 0  # spans in batches the sender could not deliver
        self.sent = 0
        self._pending: list[SpanRecord] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_failure_log = -_FAILURE_LOG_INTERVAL_SEC

    def add(self, record: SpanRecord) -> None:
        pending = self._pending
        if len(pending) >= self.max_queue:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) == self.batch_size and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Begin shipping from the running loop (the worker's, after the fork)."""
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task, then send everything still waiting (bounded by the export timeout)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.export_timeout_sec):
                while self._pending:
                    await self._send_batch()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay_sec):
                    await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._send_batch()
                if len(self._pending) < self.batch_size:
                    break  # the rest waits for the next round

    async def _send_batch(self) -> None:
        batch = self._pending[: self.batch_size]
        del self._pending[: self.batch_size]
        try:
            async with asyncio.timeout(self.export_timeout_sec):
                delivered = await self.send(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug must not stop tracing for good
            delivered = False
            log.warning("span export failed: %s", type(exc).__name__)
        if delivered:
            self.sent += len(batch)
            return
        self.failed += len(batch)
        now = time.monotonic()
        if now - self._last_failure_log >= _FAILURE_LOG_INTERVAL_SEC:
            self._last_failure_log = now
            log.warning(
                "could not deliver %d spans to the trace collector (%d undelivered so far)",
                len(batch),
                self.failed,
            )
