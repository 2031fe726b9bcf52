"""Structured logs: one renderer for every logger, and one access line per request.

`configure_logging` routes the standard library's records (uvicorn, ticketgate.*, anything
else) and structlog's through one structlog formatter, so each line is one JSON object with
`timestamp`, `level`, `logger`, `event` and the record's `extra=` fields as keys (audit
records on `ticketgate.audit` carry theirs that way), or a readable console line in
development. Call it in each process that logs: the CLI parent and every uvicorn worker.

The access line is on the hot path (thousands of requests per second per worker), so in
JSON mode it skips the logging machinery: one bytes template filled in (the per-route part
encoded once), appended to a buffer of whole lines, written with one `os.write` per ≤ 4 KiB
(atomic on a pipe that several workers share) and at most `FLUSH_DELAY_SEC` after a line
arrived. It names the request (trace id, request id, method, route template, status,
latency, peer address) and never its query string (the waiting token travels there),
headers, tokens or body.

Settings (observability/settings.py): LOG_LEVEL, LOG_FORMAT=json|console
(default console in development, json elsewhere), LOG_ACCESS=true|false (default true; access
lines are INFO, so a LOG_LEVEL above info drops them too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

import msgspec
import structlog

from ticketgate.edge.request_id import request_id_from
from ticketgate.observability.settings import LogSettings
from ticketgate.observability.tracing import current_trace_id

if TYPE_CHECKING:
    from ticketgate.edge.request import Request

ACCESS_LOGGER = "ticketgate.access"
CHUNK_BYTES = 4096  # PIPE_BUF on Linux: a write up to this size is never interleaved
FLUSH_DELAY_SEC = 0.2
# Loggers that uvicorn (or a library) may have given handlers of their own: theirs go, so
# their records reach the root handler and its renderer like everyone else's.
_ADOPTED = ("uvicorn", "uvicorn.error", "ticketgate")
# uvicorn's access line carries the raw target, query string included (the waiting token
# travels there): always silenced, ours replaces it.
_SILENCED = ("uvicorn.access",)
# One INFO line per outgoing HTTP request with its full URL (JWKS fetches, webhooks): noise at
# info, and a URL may carry a query worth keeping out of logs. Warnings still show.
_QUIETED = ("httpx", "httpcore")


_json_encoder = msgspec.json.Encoder(enc_hook=repr)
_stream: TextIO | None = None  # where configure_logging sent the logs; stderr until then


def _serialize(event: Any, **_: Any) -> str:
    return _json_encoder.encode(event).decode()


def _drop_color_message(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """uvicorn passes an ANSI-coloured copy of its message as an extra field."""
    event_dict.pop("color_message", None)
    return event_dict


def _add_trace_id(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A record made while a sampled request runs names its trace (when it has none).
    Unsampled requests make no span and set no context (that is most of their tracing cost
    saved), so their records carry no trace id, as with tracing off."""
    if "trace_id" not in event_dict:
        trace_id = current_trace_id()
        if trace_id is not None:
            event_dict["trace_id"] = trace_id
    return event_dict


def configure_logging(level: str, settings: LogSettings, stream: TextIO | None = None) -> None:
    """Install the one root handler (replacing any) and configure structlog to match.

    `stream` defaults to standard error; tests hand in a StringIO.
    """
    global _stream
    _stream = stream = stream if stream is not None else sys.stderr
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    pre_chain: list[Any] = [
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        timestamper,
        _add_trace_id,
    ]
    renderer: Any
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_serialize)
        tail: list[Any] = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_is_tty(stream))
        tail = [renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _ADOPTED:
        adopted = logging.getLogger(name)
        for old in list(adopted.handlers):
            adopted.removeHandler(old)
        adopted.propagate = True
    for name in _QUIETED:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in _SILENCED:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False
        silenced.disabled = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            *pre_chain[:2],
            timestamper,
            _add_trace_id,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineWriter:
    """Whole lines out in ≤ CHUNK_BYTES writes, at most FLUSH_DELAY_SEC late.

    Lines gather in one bytearray; a line that would overflow the chunk sends the chunk first.
    One timer per delay flushes the rest (a chunk sent meanwhile leaves it running, so a busy
    worker schedules a timer a few times a second, not per chunk). A file descriptor gets
    `os.write` (one syscall per chunk, no text layer); a stream without one (a test's
    StringIO) gets `write`.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def write(self, line: bytes) -> None:
        pending = self._pending
        if len(pending) + len(line) > CHUNK_BYTES and pending:
            self._send()
        pending += line
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a script, a test): write now
                self._send()
                return
            self._timer = loop.call_later(FLUSH_DELAY_SEC, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._send()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send()

    def _send(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
        if self._fd is None:
            self._stream.write(data.decode())
            self._stream.flush()
            return
        self._stream.flush()  # whatever the logging handler left in the text layer first
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


# Bytes that may stand inside a JSON string as they are: printable ASCII but '"' and '\\'.
_PLAIN = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
# What request_id_from accepts from X-Request-ID (1 to 128 of these): plain, as above.
_REQUEST_ID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
_MAX_CACHED = 1024  # fragments and client addresses remembered (then forgotten, and again)
_LINE = (
    b'{"timestamp":"%s.%06dZ","level":"info","logger":"' + ACCESS_LOGGER.encode() + b'",'
    b'"event":"request","trace_id":"%s","request_id":"%s",%s%.3f,"client":"%s"}\n'
)


def _json_inner(text: str) -> bytes:
    """`text` as the inside of a JSON string: as it is when nothing in it needs escaping (ids,
    addresses), else escaped by msgspec."""
    raw = text.encode()
    if raw.translate(None, _PLAIN):
        return msgspec.json.encode(text)[1:-1]
    return raw


class JsonAccessLog:
    """RequestObserver: the access line as one JSON object, straight to the log stream.

    The keys are fixed, so the line is one bytes template. The method/route/status part is
    encoded once per triple and the client address once per address (both remembered); ids
    go in as they are when they hold nothing JSON must escape (trace ids are hex, request ids
    are checked against request_id_from's alphabet). The timestamp is ISO 8601 UTC like
    structlog's, its part up to the second made once a second; the latency has three
    decimals, like the console line's.
    """

    def __init__(self, writer: LineWriter) -> None:
        self.writer = writer
        self._second = -1
        self._prefix = b""
        self._fragments: dict[tuple[str, str, int], bytes] = {}
        self._clients: dict[str, bytes] = {}

    def begin(self, request: Request) -> object:
        return None

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None:
        trace_id = _json_inner(request.trace_id)
        header = request.headers.get(b"x-request-id")
        if not header:
            request_id = trace_id
        elif len(header) <= 128 and not header.translate(None, _REQUEST_ID_CHARS):
            request_id = header
        else:  # refused by request_id_from: the trace id stands in
            request_id = _json_inner(request_id_from(header.decode("latin-1"), request.trace_id))
        fragment = self._fragments.get((request.method, route, status))
        if fragment is None:
            fragment = self._fragment(request.method, route, status)
        client = self._clients.get(request.client)
        if client is None:
            client = self._client(request.client)
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        self.writer.write(
            _LINE
            % (
                self._prefix,
                int((now - second) * 1_000_000),
                trace_id,
                request_id,
                fragment,
                duration_s * 1000,
                client,
            )
        )

    def _fragment(self, method: str, route: str, status: int) -> bytes:
        fragment = b'"method":%s,"route":%s,"status":%d,"latency_ms":' % (
            msgspec.json.encode(method),
            msgspec.json.encode(route),
            status,
        )
        if len(self._fragments) >= _MAX_CACHED:  # unknown methods cannot grow it for ever
            self._fragments.clear()
        self._fragments[(method, route, status)] = fragment
        return fragment

    def _client(self, address: str) -> bytes:
        client = _json_inner(address)
        if len(self._clients) >= _MAX_CACHED:
            self._clients.clear()
        self._clients[address] = client
        return client

    def flush(self) -> None:
        self.writer.flush()


class ConsoleAccessLog:
    """RequestObserver for LOG_FORMAT=console: the same fields through the logging handler
    (slower, readable; development only)."""

    def __init__(self) -> None:
        self._log = logging.getLogger(ACCESS_LOGGER)

    def begin(self, request: Request) -> object:
        return None

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None:
        header = request.headers.get(b"x-request-id")
        self._log.info(
            "request",
            extra={
                "trace_id": request.trace_id,
                "request_id": request_id_from(header.decode("latin-1"), request.trace_id)
                if header
                else request.trace_id,
                "method": request.method,
                "route": route,
                "status": status,
                "latency_ms": round(duration_s * 1000, 3),
                "client": request.client,
            },
        )

    def flush(self) -> None:
        return None


def access_log(level: str, settings: LogSettings) -> JsonAccessLog | ConsoleAccessLog | None:
    """The access-line observer for these settings; None when LOG_ACCESS=false or the level
    is above info (then no per-request cost at all)."""
    if not settings.access or logging.getLevelName(level.upper()) > logging.INFO:
        return None
    if settings.format == "console":
        return ConsoleAccessLog()
    return JsonAccessLog(LineWriter(_stream if _stream is not None else sys.stderr))
