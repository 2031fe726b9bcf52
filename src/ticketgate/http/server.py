"""The gateway's HTTP/1.1 protocol: httptools parsing, ASGI to the app, one write per response.

uvicorn runs the processes, sockets, signals, lifespan and graceful shutdown; this class is
what it hands each connection (`uvicorn.run(http=HTTP_PROTOCOL)`, cli.py `serve`). uvicorn's
own httptools protocol is general and pays for it on every request, which on this 2-core box
was a fifth of a served status call (py-spy, docs/benchmarks.md "The served request path"):
an `asyncio.Event` and a response object per request, a wrapper coroutine around the app,
two regular expressions per response header, a keep-alive timer armed and cancelled per
response, and the status line and headers written separately from the body (two `write`
system calls, the costliest thing a request does on loopback). Here:

- a response's head is held until its first body bytes and written with them: one `write`;
- a request waits for its body on a future made only when it must wait;
- the app runs as the task itself and one done-callback does what the wrapper did (an
  unhandled error becomes a plain 500, a response left half-sent closes the connection);
- a head from ASGI messages is checked whole: one scan for control characters and a count
  of line breaks (a CR or LF inside a name or value is a header injection), names against a
  small cache; the gateway's own replies are checked by parts, each distinct header tuple
  and content type once, the rest being the server's own or validated on the way in;
- the keep-alive deadline is one timer per idle period, re-armed lazily when it fires.

The bytes on the wire are the stock protocol's for the same app, pipelining and HEAD
included (tests/unit/test_http_server.py compares them). WebSocket upgrades are not served
(the gateway has none): the request is answered as plain HTTP, as uvicorn does without a
WebSocket library. uvicorn's access log is not written (the gateway writes its own line per
request, observability/access.py).

The contract with uvicorn, which documents `http=` as taking a protocol class but not what
the class is given, is pinned for uvicorn==0.54.0 by tests/unit/test_http_server.py: the
constructor's (config, server_state, app_state, _loop), `server_state.connections`, `tasks`,
`total_requests` and `default_headers`, and `shutdown()` on each connection.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import urllib.parse
from collections import deque
from typing import Any

import httptools

from ticketgate.edge.routes import Headers
from ticketgate.http.core import Gateway, Reply

HTTP_PROTOCOL = "ticketgate.http.server:HttpProtocol"
# Request body bytes a connection buffers before it stops reading from the socket.
HIGH_WATER = 64 * 1024
log = logging.getLogger("uvicorn.error")

# Every byte a head line may hold (control characters other than tab are not): deleting
# them from a head leaves only its line breaks (one C pass, ~0.3 µs; a regex scan ~0.8 µs).
_LINE_BYTES = bytes(b for b in range(256) if b == 9 or 32 <= b != 127)
# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(b"[!#$%&'*+\\-.^_`|~0-9A-Za-z]+")
_NAMES_CACHED = 256
_RENDERED_CACHED = 512
# A gateway reply's head: status line, the three fields every reply has, the rest, blank line.
_REPLY_HEAD = b"%scontent-type: %s\r\ncontent-length: %d\r\nx-request-id: %s\r\n%s\r\n"
_HEAD_METHOD = "HEAD"


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 30\r\nconnection: close\r\n\r\nInvalid HTTP request received."
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 19\r\nconnection: close\r\n\r\nService Unavailable"
)
_SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class _HeadCheck:
    """Whether a response head may go on the wire; the names already seen valid are kept."""

    def __init__(self) -> None:
        self._names: set[bytes] = set()
        self._rendered: dict[Headers, tuple[bytes, bool]] = {}
        self._media: set[bytes] = set()

    def name(self, name: bytes) -> None:
        if name in self._names:
            return
        if _TOKEN.fullmatch(name) is None:
            raise RuntimeError("Invalid HTTP header name.")
        if len(self._names) >= _NAMES_CACHED:
            self._names.clear()
        self._names.add(name)

    @staticmethod
    def block(head: bytes, lines: int) -> None:
        """`lines` CRLF-ended lines and nothing else: a CR or LF inside a value shows as an
        extra line break, any other control character as itself."""
        if head.translate(None, _LINE_BYTES) != b"\r\n" * lines:
            raise RuntimeError("Invalid HTTP header value.")

    def media(self, content_type: bytes) -> None:
        """A reply's content type may go on the wire (no control character: no line break);
        the few distinct ones are checked once."""
        if content_type in self._media:
            return
        self.block(content_type, 0)  # no line of its own: nothing may be left
        if len(self._media) >= _NAMES_CACHED:
            self._media.clear()
        self._media.add(content_type)

    def render(self, headers: Headers) -> tuple[bytes, bool]:
        """Header lines for the gateway's own pairs, and whether they close the connection;
        the few distinct tuples (`cache-control: no-store`, ...) are rendered and checked
        (names and values) once."""
        rendered = self._rendered.get(headers)
        if rendered is None:
            closes = False
            lines = []
            for name, value in headers:
                name = name.lower()
                self.name(name)
                if name == b"connection" and _says_close(value):
                    closes = True
                lines.append(b"%s: %s\r\n" % (name, value))
            text = b"".join(lines)
            self.block(text, len(lines))
            rendered = (text, closes)
            if len(self._rendered) >= _RENDERED_CACHED:
                self._rendered.clear()
            self._rendered[headers] = rendered
        return rendered


def request_target(url: bytes) -> tuple[bytes, bytes]:
    """The path and the query string of a request target. An origin-form target without a
    fragment (every request a browser or load balancer sends: `/path?query`) is split at
    its first '?', which is what httptools.parse_url answers for it (llhttp has already
    refused control, space and non-ASCII bytes); anything else goes to parse_url. ~0.1 µs
    less per status poll, whose query is long (tests/unit/test_request_target.py holds the
    two equal for every byte the parser lets through)."""
    if url.startswith(b"/") and b"#" not in url:
        path, _, query = url.partition(b"?")
        return path, query
    parsed = httptools.parse_url(url)
    return parsed.path, parsed.query or b""


def _says_close(value: bytes) -> bool:
    return b"close" in [token.lower().strip() for token in value.split(b",")]


_check = _HeadCheck()


class _Exchange:
    """One request and its response on a connection (uvicorn's RequestResponseCycle)."""

    __slots__ = (
        "body",
        "body_taken",
        "body_waiter",
        "chunked",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "left_to_send",
        "method",
        "more_body",
        "protocol",
        "request",
        "response_complete",
        "response_started",
        "scope",
    )

    def __init__(
        self,
        protocol: HttpProtocol,
        method: str,
        scope: dict[str, Any] | None,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.protocol = protocol
        self.method = method
        self.scope = scope  # None when the gateway is called directly (`respond`)
        # (path, query string, headers) for the direct call
        self.request: tuple[str, bytes, list[tuple[bytes, bytes]]] = ("", b"", [])
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body = b""
        self.more_body = True
        self.body_taken = False
        self.body_waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked: bool | None = None  # None: neither content-length nor chunked seen yet
        self.left_to_send = 0
        self.head = b""  # the response head, held until the first body message

    def wake(self) -> None:
        waiter = self.body_waiter
        if waiter is not None:
            self.body_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        protocol = self.protocol
        if self.expect_continue:
            self.expect_continue = False
            if not protocol.transport.is_closing():
                protocol.transport.write(_CONTINUE)
        while not self.disconnected and not self.response_complete:
            if not self.body_taken and (self.body or not self.more_body):
                body, self.body = self.body, b""
                more = self.more_body
                self.body_taken = not more
                protocol.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            # More is coming, or the body is all taken and only the end of the response or
            # of the connection is left to report: wait (a future only when waiting).
            protocol.resume_reading()
            waiter = self.body_waiter = protocol.loop.create_future()
            await waiter
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.write_paused is not None and not self.disconnected:
            await protocol.write_paused
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI 'http.response.start', got {kind!r}")
            self.head = self._head(message["status"], message.get("headers", ()))
            self.response_started = True  # after the check: an invalid head leaves a 500 to send
            self.expect_continue = False
            return
        if self.response_complete:
            raise RuntimeError(f"ASGI {kind!r} sent after the response completed")
        if kind != "http.response.body":
            raise RuntimeError(f"expected ASGI 'http.response.body', got {kind!r}")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.method == _HEAD_METHOD:
            out = b""
            self.left_to_send = 0
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.left_to_send:
                raise RuntimeError("Response content longer than Content-Length")
            self.left_to_send -= len(body)
            out = body
        head, self.head = self.head, b""
        data = head + out if head else out
        if data:
            protocol.transport.write(data)
        if not more:
            if self.left_to_send != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.wake()
            if not self.keep_alive:
                protocol.transport.close()
            protocol.response_complete(self)

    def _head(self, status: int, headers: Any) -> bytes:
        protocol = self.protocol
        defaults = protocol.server_state.default_headers
        if defaults:
            headers = [*defaults, *headers]
        parts = [STATUS_LINES[status]]
        closing = False
        lines = 2  # the status line and the blank line
        for name, value in headers:
            name = name.lower()
            _check.name(name)
            if name == b"content-length":
                if self.chunked is None:
                    self.left_to_send = int(value.decode())
                    self.chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.left_to_send = 0
                self.chunked = True
            elif name == b"connection" and _says_close(value):
                self.keep_alive = False
                closing = True
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if not self.keep_alive and not closing:
            parts.append(b"connection: close\r\n")
            lines += 1
        if self.chunked is None and self.method != _HEAD_METHOD and status not in (204, 304):
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        _check.block(head, lines)
        return head

    def write_reply(self, reply: Reply) -> None:
        """The gateway's reply, written as `send` would write it, from its parts: the same
        bytes without the ASGI messages, the header pairs and the generic head parsing.

        Every part of the head is known safe without scanning it per reply: the status line
        and length are ours, the request id was validated (edge/request_id.py), and the
        header tuples and content types are checked when first met (_HeadCheck)."""
        if self.disconnected:
            return
        protocol = self.protocol
        response = reply.response
        fields = b""
        closing = False  # a `connection` field that says close is among them
        if response.headers:
            fields, closing = _check.render(response.headers)
        if reply.extra:
            more, closes = _check.render(reply.extra)
            fields += more
            closing = closing or closes
        if closing:
            self.keep_alive = False
        elif not self.keep_alive:
            fields += b"connection: close\r\n"
        status_line = STATUS_LINES[response.status]
        defaults = protocol.server_state.default_headers
        if defaults:  # uvicorn's server and date headers, when switched on: first, as in send
            lines = b"".join([b"%s: %s\r\n" % pair for pair in defaults])
            _check.block(lines, len(defaults))
            status_line += lines
        _check.media(response.content_type)
        body = response.body
        head = _REPLY_HEAD % (
            status_line,
            response.content_type,
            len(body),
            reply.request_id,
            fields,
        )
        self.response_started = self.response_complete = True
        protocol.transport.write(head if reply.head_only else head + body)
        self.wake()
        if not self.keep_alive:
            protocol.transport.close()
        protocol.response_complete(self)

    def write_head_alone(self) -> None:
        """A streamed response that waits between messages: its head must not wait too."""
        if self.head:
            head, self.head = self.head, b""
            self.protocol.transport.write(head)

    def finished(self, task: asyncio.Task[None]) -> None:
        """The app's task is done: what uvicorn's wrapper coroutine did after the app."""
        protocol = self.protocol
        protocol.tasks.discard(task)
        if task.cancelled():
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = task.exception()
        if error is not None:
            log.error("Exception in ASGI application\n", exc_info=error)
            self._abandon(protocol)
        elif not self.response_started and not self.disconnected:
            log.error("ASGI callable returned without starting response.")
            self._abandon(protocol)
        elif not self.response_complete and not self.disconnected:
            log.error("ASGI callable returned without completing response.")
            self.write_head_alone()
            protocol.transport.close()

    def _abandon(self, protocol: HttpProtocol) -> None:
        if self.disconnected or self.response_complete:
            return
        if not self.response_started or self.head:
            # Nothing of it is on the wire yet (a head held for its body counts as nothing).
            self.response_started = self.response_complete = True
            if not protocol.transport.is_closing():
                protocol.transport.write(_SERVER_ERROR)
        protocol.transport.close()


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse with httptools, run each request as an ASGI task."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        # The gateway itself (not wrapped by uvicorn's middleware): called directly.
        self.respond = self.app.respond if isinstance(self.app, Gateway) else None
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.app_state = app_state
        self.root_path: str = config.root_path
        self.limit_concurrency: int | None = config.limit_concurrency
        self.keep_alive_sec: float = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        # Answer a pipelined request that arrives after `connection: close`, as uvicorn does.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.exchange: _Exchange | None = None
        self.starting: _Exchange | None = None  # headers complete, started after the parse
        self.pipeline: deque[_Exchange] = deque()
        self.read_paused = False
        self.write_paused: asyncio.Future[None] | None = None
        self.idle_since: float | None = None
        self.idle_timer: asyncio.TimerHandle | None = None
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        self.scheme = "https" if transport.get_extra_info("sslcontext") else "http"

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        exchange = self.exchange
        if exchange is not None:
            if not exchange.response_complete:
                exchange.disconnected = True
            exchange.wake()
        self.resume_writing()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.idle_since = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            log.warning("Unsupported upgrade request.")
        except httptools.HttpParserError:
            log.warning("Invalid HTTP request received.")
            self.starting = None
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
            return
        # A request whose headers these bytes completed starts now, once the parser has
        # also handed over whatever of its body came with them: a join's whole body then
        # goes to the gateway without a receive.
        starting = self.starting
        if starting is not None:
            self.starting = None
            self._start(starting)

    def pause_writing(self) -> None:
        if self.write_paused is None:
            self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        paused, self.write_paused = self.write_paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        raw_path, query = request_target(self.url)
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        method = parser.get_method().decode("ascii")
        keep_alive = version != "1.0" and parser.should_keep_alive()
        if self.respond is not None and not self.root_path:
            exchange = _Exchange(self, method, None, keep_alive, self.expect_continue)
            exchange.request = (path, query, self.headers)
        else:
            root = self.root_path
            scope: dict[str, Any] = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": version,
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "method": method,
                "root_path": root,
                "path": root + path if root else path,
                "raw_path": root.encode("ascii") + raw_path if root else raw_path,
                "query_string": query,
                "headers": self.headers,
                "state": self.app_state.copy(),
            }
            exchange = _Exchange(self, method, scope, keep_alive, self.expect_continue)
        current = self.exchange
        self.exchange = exchange
        if current is None or current.response_complete:
            self.starting = exchange  # at the end of data_received
        else:  # pipelined behind a response still running: started when it completes
            self.pause_reading()
            self.pipeline.appendleft(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.response_complete:
            return
        exchange.body += body
        if len(exchange.body) > HIGH_WATER:
            self.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is None or exchange.response_complete:
            return
        exchange.more_body = False
        exchange.wake()

    # the exchanges

    def _start(self, exchange: _Exchange) -> None:
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            log.warning("Exceeded concurrency limit.")
            exchange.response_started = exchange.response_complete = True
            self.transport.write(_BUSY)
            self.transport.close()
            return
        if exchange.scope is None and self.respond is not None:
            path, query, headers = exchange.request
            peer = self.client[0] if self.client else ""
            body = None
            if not exchange.more_body and not exchange.expect_continue:
                # The whole request is here (a join's body comes with its headers): hand it
                # over, no receive and no body deadline.
                body, exchange.body = exchange.body, b""
                exchange.body_taken = True
            call = self.respond(
                exchange.method,
                path,
                query,
                headers,
                peer,
                exchange.receive,
                exchange.write_reply,
                body,
            )
        else:
            call = self.app(exchange.scope, exchange.receive, exchange.send)
        task: asyncio.Task[None] = self.loop.create_task(call)
        task.add_done_callback(exchange.finished)
        self.tasks.add(task)

    def response_complete(self, exchange: _Exchange) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self._start(self.pipeline.pop())
            return
        # Idle from now: close after keep_alive_sec without a new request. One timer per
        # idle stretch at most, moved forward only when it fires early.
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(
                self.idle_since + self.keep_alive_sec, self._idle_check
            )

    def _idle_check(self) -> None:
        self.idle_timer = None
        since = self.idle_since
        if since is None or self.transport.is_closing():
            return  # busy (re-armed when idle again) or gone
        due = since + self.keep_alive_sec
        if self.loop.time() >= due:
            self.transport.close()
        else:
            self.idle_timer = self.loop.call_at(due, self._idle_check)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close when idle, else after the current response."""
        exchange = self.exchange
        if exchange is None or exchange.response_complete:
            self.transport.close()
        else:
            exchange.keep_alive = False


def _address(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None
