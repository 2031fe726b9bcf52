"""The gateway's HTTP protocol (http/server.py): each response in one socket write, same bytes.

The server runs in a child process (uvicorn with uvloop, as `ticketgate serve` runs it), so
the write system calls counted in its /proc/<pid>/io are the server's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http_server import serve
from ticketgate.edge.auth import AuthError, Principal
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.core import Gateway
from ticketgate.http.server import HTTP_PROTOCOL

BIG = 3 * 64 * 1024  # a body larger than one socket write usually takes

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="counts system calls in /proc/<pid>/io (Linux)"
)
STOCK = "httptools"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Small answers shaped like the gateway's, plus the cases a write buffer could break."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    more = True
    received = b""
    while more:
        message = await receive()
        received += message.get("body", b"")
        more = message.get("more_body", False)
    if path == "/boom":
        raise ValueError("the app failed")
    if path == "/inject":  # a value with a line break: must never reach the wire as a header
        headers = [(b"content-length", b"2"), (b"x-note", b"a\r\nset-cookie: stolen=1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    if path == "/echo":
        body = b"%d" % len(received)
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/stream":  # a body in chunks across awaits: every chunk, in order
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"path":"%s"}' % path.encode()
    if path == "/big":  # beyond what a connection holds until the end of the tick
        body = b"x" * (BIG)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if path == "/close":  # the server closes right after writing: the bytes must go first
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def served(http: str, *extra: str) -> Iterator[tuple[int, int]]:
    """(pid, port) of uvicorn serving `app` with the given HTTP protocol."""
    port = _free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{__name__}:app",
            "--http",
            http,
            "--loop",
            "uvloop",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-server-header",
            "--no-date-header",
            "--lifespan",
            "off",
            *extra,
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield child.pid, port
    finally:
        child.terminate()
        child.wait(10)


def _writes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "syscw":
            return int(value)
    raise AssertionError("no syscw in /proc/<pid>/io")


def _read_response(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One Content-Length response (head, body); the bytes after it stay in the buffer."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    field = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
    length = int(field[15:])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def _writes_per_response(http: str, requests: int = 200) -> float:
    request = b"POST /join HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
    with served(http) as (pid, port), socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        _read_response(sock)  # warm: the connection and the app are set up
        before = _writes(pid)
        for _ in range(requests):
            sock.sendall(request)
            response, rest = _read_response(sock)
            assert rest == b""
            assert response.startswith(b"HTTP/1.1 202 ")
            assert response.endswith(b'{"path":"/join"}')
        return (_writes(pid) - before) / requests


def test_each_response_leaves_in_one_write_where_stock_httptools_needs_two() -> None:
    """The point of the protocol: on loopback a write is the costliest call a request makes.
    The stock protocol is measured alongside, so the count is known to see the difference."""
    assert _writes_per_response(STOCK) >= 1.9
    assert _writes_per_response(HTTP_PROTOCOL) <= 1.1


def test_pipelined_keep_alive_head_streaming_and_close_answer_as_before() -> None:
    """The same bytes in the same order as the stock protocol, for the cases a held write
    could lose or reorder: pipelined requests, HEAD (no body write), a body streamed across
    awaits, and `connection: close` (the bytes must reach the socket before it closes)."""
    pipelined = (
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
        b"HEAD /b HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers: dict[str, bytes] = {}
    for http in (STOCK, HTTP_PROTOCOL):
        with served(http) as (_, port), socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(pipelined)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes after /close
                received += chunk
            answers[http] = received
    assert answers[HTTP_PROTOCOL] == answers[STOCK]
    text = answers[HTTP_PROTOCOL]
    assert text.count(b"HTTP/1.1 ") == 5
    assert b"x" * (BIG) in text
    assert b'{"path":"/a"}' in text
    assert b'{"path":"/b"}' not in text
    assert b"one,\r\n" in text
    assert text.index(b"one,") < text.index(b"three")
    assert text.endswith(b'{"path":"/close"}')


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    data = b""
    while chunk := sock.recv(65536):  # until the server closes
        data += chunk
    return data


def test_an_app_error_or_a_header_injection_is_a_500_and_the_connection_closes() -> None:
    """uvicorn's protocol closes without a word when the app's headers are invalid (it has
    written nothing yet, but already counts the response as started); here the held head
    lets the client get a plain 500. A line break in a value never reaches the wire."""
    with served(HTTP_PROTOCOL) as (_, port):
        for path in (b"/boom", b"/inject"):
            with socket.create_connection(("127.0.0.1", port), 10) as sock:
                text = _exchange(sock, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert text.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), text
            assert text.endswith(b"Internal Server Error")
            assert b"stolen" not in text


def test_expect_100_continue_and_a_body_in_pieces() -> None:
    """The client waits for `100 Continue` before sending the body, which then arrives in
    three writes; the app sees all of it."""
    with served(HTTP_PROTOCOL) as (_, port), socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        for _ in range(3):
            sock.sendall(b"x" * 3000)
            time.sleep(0.05)
        response, _ = _read_response(sock)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b"\r\n\r\n9000")


def test_an_idle_connection_closes_after_the_keep_alive_timeout_and_a_busy_one_stays() -> None:
    """One timer per idle stretch, moved on lazily: a connection used every 0.4 s outlives
    several 1 s timeouts; left alone it is closed about a second later."""
    request = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
    with served(HTTP_PROTOCOL, "--timeout-keep-alive", "1") as (_, port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            for _ in range(8):  # 3.2 s of requests 0.4 s apart
                sock.sendall(request)
                response, _ = _read_response(sock)
                assert response.startswith(b"HTTP/1.1 202 ")
                time.sleep(0.4)
            idle_from = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            waited = time.monotonic() - idle_from
        assert 0.4 <= waited <= 2.5, waited


class _NoAuth:
    async def authenticate(self, authorization: str, load_test_user: str) -> Principal:
        raise AuthError("INVALID_TOKEN", "no callers in this test")


def _gateway() -> Gateway:
    async def ok(request: Request) -> Response:
        return Response.json(200, {"path": request.path}, ((b"cache-control", b"no-store"),))

    async def echo(request: Request) -> Response:
        return Response.json(201, {"got": len(request.body)})

    async def closing(request: Request) -> Response:
        return Response(200, b"{}", ((b"Connection", b"close"), (b"retry-after", b"1")))

    async def closing_in_a_list(request: Request) -> Response:
        return Response(200, b"{}", ((b"connection", b"keep-alive, close"),))

    async def broken(request: Request) -> Response:
        raise ValueError("a bug")

    async def injected(request: Request) -> Response:
        return Response(200, b"{}", ((b"x-note", b"a\r\nset-cookie: stolen=1"),))

    async def injected_type(request: Request) -> Response:
        return Response(200, b"{}", (), b"text/plain\r\nset-cookie: stolen=1")

    async def injected_second(request: Request) -> Response:
        # a value whose break comes after a valid first line, in a tuple met before
        return Response(200, b"{}", ((b"x-a", b"1"), (b"x-b", b"2\nset-cookie: stolen=1")))

    routes = [
        Route("GET", "/ok", ok, AuthPolicy.NONE),
        Route("POST", "/echo", echo, AuthPolicy.NONE),
        Route("GET", "/closing", closing, AuthPolicy.NONE),
        Route("GET", "/broken", broken, AuthPolicy.NONE),
        Route("GET", "/closing-in-a-list", closing_in_a_list, AuthPolicy.NONE),
        Route("GET", "/injected", injected, AuthPolicy.NONE),
        Route("GET", "/injected-type", injected_type, AuthPolicy.NONE),
        Route("GET", "/injected-second", injected_second, AuthPolicy.NONE),
        Route("GET", "/items/{item}", ok, AuthPolicy.NONE),
    ]
    return Gateway(routes, _NoAuth(), max_body_bytes=1024)


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    return received


async def _on_both_paths(*sent: bytes) -> list[bytes]:
    """What the gateway answers to each of `sent` (one connection each, in order) when the
    protocol calls it directly, then behind a pass-through ASGI function, with uvicorn's date
    header (written first on both paths, it may tick between) taken out."""
    gateway = _gateway()

    async def through_asgi(scope: Any, receive: Any, send: Any) -> None:
        await gateway(scope, receive, send)

    answers = []
    for app in (gateway, through_asgi):
        async with serve(app) as client:
            port = client.base_url.port
            assert port is not None
            for data in sent:
                answers.append(re.sub(rb"date: [^\r]*\r\n", b"", await _raw(port, data)))
    return answers


async def test_the_gateway_called_directly_answers_the_bytes_of_its_asgi_path() -> None:
    """`ticketgate serve` hands the protocol the Gateway itself, which it calls through
    `respond` and writes from the reply's parts; any other app (here the same gateway behind
    a pass-through ASGI function) goes through ASGI messages. Same requests, pipelined on one
    connection, with fixed trace and request ids: the same bytes, errors and HEAD included."""
    ids = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
    requests = b"".join(
        [
            b"GET /ok?x=1 HTTP/1.1\r\nHost: t\r\nX-Request-ID: r-1\r\n" + ids + b"\r\n",
            b"HEAD /ok HTTP/1.1\r\nHost: t\r\nX-Request-ID: r-2\r\n" + ids + b"\r\n",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n" + ids + b"\r\nhello",
            # past max_body_bytes (1024), all of it already received: 413 on both paths
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n"
            + ids
            + b"\r\n"
            + b"x" * 2000,
            b"GET /items/7 HTTP/1.1\r\nHost: t\r\n" + ids + b"\r\n",
            b"GET /missing HTTP/1.1\r\nHost: t\r\n" + ids + b"\r\n",
            b"DELETE /ok HTTP/1.1\r\nHost: t\r\n" + ids + b"\r\n",
            b"GET /broken HTTP/1.1\r\nHost: t\r\n" + ids + b"\r\n",
            b"GET /closing HTTP/1.1\r\nHost: t\r\n" + ids + b"\r\n",
        ]
    )
    # then HTTP/1.0 without keep-alive: the server adds `connection: close` and closes
    direct, direct_10, asgi, asgi_10 = await _on_both_paths(
        requests, b"GET /ok HTTP/1.0\r\nX-Request-ID: r-3\r\n\r\n"
    )
    assert b"server: uvicorn\r\n" in direct
    assert direct == asgi
    assert direct_10 == asgi_10
    assert direct.count(b"HTTP/1.1 ") == 9
    for status in (
        b"200 OK",
        b"201 Created",
        b"404 Not Found",
        b"405 Method Not Allowed",
        b"413 Request Entity Too Large",
    ):
        assert b"HTTP/1.1 " + status + b"\r\n" in direct
    assert b"HTTP/1.1 500 Internal Server Error\r\n" in direct  # the envelope's INTERNAL_ERROR
    assert direct.endswith(b"connection: close\r\nretry-after: 1\r\n\r\n{}")
    assert direct_10.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in direct_10


@pytest.mark.parametrize("path", ["/injected", "/injected-type", "/injected-second"])
async def test_a_reply_with_a_line_break_in_a_header_value_is_a_500_not_an_injection(
    path: str,
) -> None:
    """Asked twice: the head's parts are checked when first met and kept once valid, so a
    second answer must be refused as the first was."""
    async with serve(_gateway()) as client:
        port = client.base_url.port
        assert port is not None
        for _ in range(2):
            text = await _raw(port, b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
            assert text.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
            assert b"stolen" not in text


async def test_a_body_that_came_with_its_headers_is_handed_to_the_gateway_whole() -> None:
    """The protocol starts a request once the parser has handed over what came with its
    headers: a join's few bytes reach `respond` as the body itself (no receive, no body
    deadline); a body still on its way is read through receive as before and arrives whole
    all the same."""
    handed: list[tuple[str, bytes | None]] = []

    class Recording(Gateway):
        async def respond(self, *args: Any) -> None:
            handed.append((args[0], args[-1]))
            await super().respond(*args)

    gateway = _gateway()
    recording = Recording(gateway.routes, _NoAuth(), max_body_bytes=1024)
    async with serve(recording) as client:
        port = client.base_url.port
        assert port is not None
        whole = await _raw(
            port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + _CLOSE
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhel")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"lo again" + _CLOSE)
        split = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    posts = [body for method, body in handed if method == "POST"]
    assert posts == [b"hello", None]
    assert whole.count(b'{"got":5}') == 1
    assert split.count(b'{"got":11}') == 1


_CLOSE = b"GET /closing HTTP/1.1\r\nHost: t\r\n\r\n"  # pipelined last: the server then closes


async def test_a_connection_field_that_lists_close_closes_once_on_both_paths() -> None:
    """`connection: keep-alive, close` closes the connection and is not followed by a second
    `connection: close` line, through respond as through ASGI."""
    direct, asgi = await _on_both_paths(
        b"GET /closing-in-a-list HTTP/1.1\r\nHost: t\r\nX-Request-ID: r-9\r\n\r\n"
    )
    assert direct == asgi
    assert direct.count(b"connection:") == 1
    assert b"connection: keep-alive, close\r\n" in direct
