"""A small pure-ASGI core: the gateway that routes, authenticates and renders errors.

The types it serves (Request, Response, Route, the guard/interceptor/observer protocols, the
error envelope) are edge primitives in `ticketgate.edge`, shared with `middleware/` and
`observability/`; this module is the dispatch loop that ties them together.

Measured when the project began: a raw ASGI edge costs ~1.7 µs per request against ~11 µs for
Starlette, and on this 2-core box that gap is a third of the join throughput. The routes
are few and fixed, so a dictionary lookup is the router; the few paths with a parameter
(`/api/v1/reservations/{id}`) are tried, as compiled templates, only after that lookup misses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from ticketgate.digits import ascii_int
from ticketgate.edge.auth import Authenticator, AuthError
from ticketgate.edge.errors import ApiError, error_body
from ticketgate.edge.observer import AuthObserver, RequestObserver
from ticketgate.edge.request import Request, Response
from ticketgate.edge.request_id import request_id_from, trace_id_from
from ticketgate.edge.routes import AuthPolicy, Check, Guard, Handler, Headers, Interceptor, Route
from ticketgate.waitingroom.model import QueueError

if TYPE_CHECKING:
    from ticketgate.http.cors import Cors

log = logging.getLogger("ticketgate.http")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CLOSE = ((b"connection", b"close"),)
# The answer to a request still running when the graceful shutdown's bound is over.
_SHUTTING_DOWN = ApiError(
    "SHUTTING_DOWN",
    "this server is shutting down; send the request again",
    headers=((b"retry-after", b"1"), *_CLOSE),
)
_NO_HEADERS: Headers = ()
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_json_media_type(value: bytes | None) -> bool:
    """`application/json` or a `+json` type, parameters (charset) allowed, any case."""
    if value is None:
        return False
    media = value.partition(b";")[0].strip().lower()
    return media == _JSON or (media.startswith(b"application/") and media.endswith(b"+json"))


def is_template(path: str) -> bool:
    return "{" in path


def compile_template(path: str) -> re.Pattern[str]:
    """`/a/{id}/b` -> a pattern whose named groups are the parameters; a parameter is one
    non-empty path segment (the server has already percent-decoded the path)."""
    pattern: list[str] = []
    last = 0
    for match in _PARAM.finditer(path):
        pattern += (_literal(path, path[last : match.start()]), f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    pattern.append(_literal(path, path[last:]))
    return re.compile("".join(pattern))


def _literal(path: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise ValueError(f"malformed path template {path!r}")
    return re.escape(text)


# (route, handler after interceptors, the guard's check, whether a body must be JSON)
_Entry = tuple[Route, Handler, Check | None, bool]
PREFLIGHT_PATH = "(cors preflight)"  # the route label of preflights in metrics and logs


def _is_preflight(method: str, headers: dict[bytes, bytes]) -> bool:
    return method == "OPTIONS" and b"access-control-request-method" in headers


def combine_repeated(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Header fields by name, a field sent on several lines joined by ", " in order (RFC 9110
    §5.3). A proxy that appends its own X-Forwarded-For line after the client's must not lose
    either: keeping only the last line keyed every fan behind it by one address."""
    combined: dict[bytes, bytes] = {}
    for name, value in raw:
        seen = combined.get(name)
        combined[name] = value if seen is None else seen + b", " + value
    return combined


class Reply:
    """What the gateway answers: the handler's Response, the request id it echoes and the
    guards' headers (rate limit, CORS), rendered by whoever writes it: as ASGI header pairs
    (`pairs`), or by http/server.py straight into HTTP/1.1 bytes."""

    __slots__ = ("extra", "head_only", "request_id", "response")

    def __init__(
        self, response: Response, request_id: bytes, extra: Headers, head_only: bool
    ) -> None:
        self.response = response
        self.request_id = request_id
        self.extra = extra
        self.head_only = head_only  # HEAD: the GET's headers, Content-Length too, no body

    def pairs(self) -> list[tuple[bytes, bytes]]:
        response = self.response
        return [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", self.request_id),
            *response.headers,
            *self.extra,
        ]

    def body(self) -> bytes:
        return b"" if self.head_only else self.response.body


class Gateway:
    """The ASGI application: one dispatch per request, no per-layer send wrappers."""

    def __init__(
        self,
        routes: list[Route],
        authenticator: Authenticator,
        *,
        max_body_bytes: int,
        body_timeout_sec: float = 10.0,
        guard: Guard | None = None,
        interceptors: tuple[Interceptor, ...] = (),
        observers: tuple[RequestObserver, ...] = (),
        auth_observer: AuthObserver | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        cors: Cors | None = None,
    ) -> None:
        self.routes = routes
        self._cors = cors
        # CORS preflights: answered before auth and the guard (browsers send no credentials
        # with them), on any path.
        self._preflight: _Entry | None = None
        if cors is not None:
            preflight = Route("OPTIONS", PREFLIGHT_PATH, cors.preflight, AuthPolicy.NONE)
            self._preflight = (preflight, cors.preflight, None, False)
        self._table: dict[tuple[str, str], _Entry] = {}
        # Templated paths, tried in order after the exact lookup misses.
        self._templates: list[tuple[re.Pattern[str], dict[str, _Entry]]] = []
        by_template: dict[str, dict[str, _Entry]] = {}
        for route in routes:
            handler = route.handler
            for interceptor in reversed(interceptors):
                handler = interceptor.wrap(route, handler)
            entry = (
                route,
                handler,
                guard.check(route) if guard is not None else None,
                route.request_schema is not None and not route.any_media_type,
            )
            if is_template(route.path):
                if route.path not in by_template:
                    by_template[route.path] = {}
                    self._templates.append((compile_template(route.path), by_template[route.path]))
                by_template[route.path][route.method] = entry
            else:
                self._table[(route.method, route.path)] = entry
        # HEAD answers wherever GET does (RFC 9110 §9.3.2): the GET entry, body left out.
        for key, entry in list(self._table.items()):
            if key[0] == "GET":
                self._table.setdefault(("HEAD", key[1]), entry)
        for _, methods in self._templates:
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
        self._paths: dict[str, list[str]] = {}
        for method, path in self._table:
            self._paths.setdefault(path, []).append(method)
        self._auth = authenticator
        self._max_body = max_body_bytes
        self._body_timeout = body_timeout_sec
        self._body_deadlines = _BodyDeadlines(body_timeout_sec)
        self._observers = observers
        self._auth_observer = auth_observer  # sees each authentication refusal
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._body_deadlines.stop()
                if self._on_shutdown is not None:
                    await self._on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: lifespan, and HTTP for any server (tests, other servers). `ticketgate
        serve`'s own protocol (http/server.py) calls `respond` instead and writes the reply
        itself, without the scope dict, the two send messages and their header list."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        replies: list[Reply] = []
        peer = scope.get("client")
        await self.respond(
            scope["method"],
            scope["path"],
            scope["query_string"],
            scope["headers"],
            peer[0] if peer else "",
            receive,
            replies.append,
            None,
        )
        reply = replies[0]
        await send(
            {
                "type": "http.response.start",
                "status": reply.response.status,
                "headers": reply.pairs(),
            }
        )
        await send({"type": "http.response.body", "body": reply.body()})

    async def respond(
        self,
        method: str,
        path: str,
        query_string: bytes,
        raw_headers: list[tuple[bytes, bytes]],
        peer: str,
        receive: Receive,
        write: Callable[[Reply], None],
        body: bytes | None,
    ) -> None:
        """One request: its reply goes to `write` once. `body` is the whole request body when
        the server already holds all of it (a join's few bytes arrive with its headers), else
        None and it is read through `receive`. One coroutine per request, observers included:
        each layer of awaiting (a wrapper coroutine around this one, as there was) costs
        about a microsecond per request."""
        observers = self._observers
        started = time.perf_counter() if observers else 0.0
        headers = dict(raw_headers)
        if len(headers) != len(raw_headers):  # a field sent on several lines (rare)
            headers = combine_repeated(raw_headers)
        trace_id = trace_id_from(headers.get(b"traceparent", b"").decode("latin-1"))
        request_id = request_id_from(headers.get(b"x-request-id", b"").decode("latin-1"), trace_id)
        request = Request(method, path, query_string, headers, trace_id, peer)
        states: list[object] | None = None
        if observers:
            states = []  # a plain loop: a comprehension is a function call of its own
            for observer in observers:
                states.append(observer.begin(request))
            trace_id = request.trace_id  # tracing may have continued a sampled trace
        route_path = "unmatched"  # the template, never the raw path (bounded label values)
        status = 500  # until a response is chosen (a crash before that is a 500)
        guarded = _NO_HEADERS
        try:
            try:
                if self._cors is not None:
                    guarded = self._cors.headers(headers.get(b"origin"))
                entry = self._table.get((method, path))
                if entry is None:
                    if self._preflight is not None and _is_preflight(method, headers):
                        entry = self._preflight
                        guarded = _NO_HEADERS  # the preflight answer carries its own
                    else:
                        entry = self._match_template(method, request)
                route, handler, check, json_body = entry
                route_path = route.path
                if method in BODY_METHODS:
                    if body is None:
                        request.body = await self._read_body(headers, receive)
                    else:
                        self._check_length(headers, len(body))
                        request.body = body
                    if json_body and request.body:
                        media = headers.get(b"content-type")
                        if media != _JSON and not is_json_media_type(media):
                            raise ApiError(
                                "UNSUPPORTED_MEDIA_TYPE",
                                "the request body must be JSON ('Content-Type: application/json')",
                                headers=((b"accept", _JSON),),
                            )
                if route.auth is not AuthPolicy.NONE and (
                    route.auth is not AuthPolicy.OPTIONAL or b"authorization" in headers
                ):
                    await self._authenticate(request, route.auth, check)
                if check is not None:
                    guarded += check(request)
                response = await handler(request)
            except ApiError as exc:
                response = self._error(exc, trace_id)
            except QueueError as exc:
                response = self._error(ApiError.from_refusal(exc), trace_id)
            except asyncio.CancelledError:
                # uvicorn cancels what still runs once SERVER_SHUTDOWN_TIMEOUT_SEC is over (a
                # body that never finishes, a call that never returns). Its own answer would
                # be a plain-text 500; this is a retryable 503 in the envelope, and the task
                # ends right after it, which is all the cancellation asked for.
                response = self._error(_SHUTTING_DOWN, trace_id)
            except Exception:
                log.exception("unhandled error on %s %s", method, path)
                response = self._error(
                    ApiError("INTERNAL_ERROR", "internal error; quote the trace_id"), trace_id
                )
            status = response.status
            write(Reply(response, request_id.encode(), guarded, method == "HEAD"))
        finally:
            if states is not None:
                duration = time.perf_counter() - started
                for observer, state in zip(observers, states, strict=True):
                    observer.end(request, state, route_path, status, duration)

    def _match_template(self, method: str, request: Request) -> _Entry:
        """The slow path: the first template matching the whole path, else 404/405."""
        path = request.path
        for pattern, methods in self._templates:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            entry = methods.get(method)
            if entry is None:
                raise ApiError(
                    "METHOD_NOT_ALLOWED",
                    f"{method} is not allowed on {path}",
                    headers=((b"allow", ", ".join(sorted(methods)).encode()),),
                )
            request.path_params = match.groupdict()
            return entry
        self._no_route(method, path)

    def _no_route(self, method: str, path: str) -> NoReturn:
        allowed = self._paths.get(path)
        if allowed is None:
            raise ApiError("NOT_FOUND", f"no route for {path}")
        raise ApiError(
            "METHOD_NOT_ALLOWED",
            f"{method} is not allowed on {path}",
            headers=((b"allow", ", ".join(sorted(allowed)).encode()),),
        )

    def _check_length(self, headers: dict[bytes, bytes], received: int) -> None:
        """The declared Content-Length, and the bytes already received, within the bound."""
        declared = headers.get(b"content-length")
        if declared is not None:
            length = ascii_int(declared.decode("latin-1"))
            if length is None:
                raise ApiError("INVALID_REQUEST", "Content-Length is not a number")
            received = max(received, length)
        if received > self._max_body:
            raise ApiError("PAYLOAD_TOO_LARGE", f"request body exceeds {self._max_body} bytes")

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        self._check_length(headers, 0)
        deadlines = self._body_deadlines
        task = deadlines.enter()
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body:
                    raise ApiError(
                        "PAYLOAD_TOO_LARGE",
                        f"request body exceeds {self._max_body} bytes",
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            raise ApiError(
                "REQUEST_TIMEOUT",
                f"the request body did not arrive within {self._body_timeout:g} s",
                headers=_CLOSE,
            ) from None
        finally:
            deadlines.leave(task)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _authenticate(
        self, request: Request, policy: AuthPolicy, check: Check | None
    ) -> None:
        authorization = request.headers.get(b"authorization")
        if authorization is None:
            if policy is not AuthPolicy.OPTIONAL:
                self._refuse(
                    request,
                    check,
                    "MISSING_AUTHORIZATION",
                    "this endpoint needs 'Authorization: Bearer <token>'",
                    ((b"www-authenticate", b'Bearer realm="ticketgate"'),),
                )
            return
        try:
            request.principal = await self._auth.authenticate(
                authorization.decode("latin-1"), request.header(b"x-load-test-user")
            )
        except AuthError as exc:
            challenge = (
                f'Bearer realm="ticketgate", error="invalid_token", '
                f'error_description="{exc.message}"'
            )
            self._refuse(
                request, check, exc.code, exc.message, ((b"www-authenticate", challenge.encode()),)
            )
        if policy is AuthPolicy.ADMIN and "admin" not in request.principal.roles:
            self._refuse(request, check, "FORBIDDEN", "this endpoint needs the admin role", ())

    def _refuse(
        self, request: Request, check: Check | None, code: str, message: str, headers: Headers
    ) -> NoReturn:
        """Fail authentication, charged to the caller's rate-limit budget (the client IP's
        when no principal was established): the guard otherwise runs only after auth
        succeeds, and guessing tokens must cost like any request. Once the budget is spent
        the answer is the guard's 429 instead, which says nothing about the token."""
        if self._auth_observer is not None:
            self._auth_observer.refused(code)
        if check is not None:
            headers = (*headers, *check(request))  # raises 429 RATE_LIMITED when over budget
        raise ApiError(code, message, headers=headers)

    @staticmethod
    def _error(exc: ApiError, trace_id: str) -> Response:
        return Response(
            exc.status, error_body(exc.code, exc.message, trace_id, exc.extra), exc.headers
        )


class _BodyDeadlines:
    """SERVER_BODY_TIMEOUT_SEC for request bodies, at ~0.3 µs per request.

    A timer per request (`asyncio.timeout`) costs ~5 µs under uvloop, a few percent of a
    join. Instead each body read records its task and deadline in a dict, and one task per
    worker (started by the first body read) wakes every quarter timeout and cancels the
    reads past their deadline; the reader turns that cancellation into 408. A half-sent
    body therefore holds its connection for between 1 and 1.25 timeouts, not for minutes.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def enter(self) -> asyncio.Task[Any] | None:
        # The reaper runs on the serving loop: naming that loop spares current_task() its
        # get_running_loop(), which on Python 3.11 is a getpid() system call per request.
        reaper = self._reaper
        task = asyncio.current_task(reaper.get_loop()) if reaper is not None else None
        if task is None:
            task = asyncio.current_task()
            if task is None:
                return None
            if reaper is None:
                self._reaper = task.get_loop().create_task(self._reap())
        self._reading[task] = time.monotonic() + self._timeout
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether this cancellation is our deadline (consumed), not a real cancel."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def _reap(self) -> None:
        interval = max(0.05, self._timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            late = [task for task, due in self._reading.items() if due <= now]
            for task in late:
                del self._reading[task]
                if not task.done():
                    self._expired.add(task)
                    task.cancel()

    async def stop(self) -> None:
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
