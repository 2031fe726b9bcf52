"""The gateway's HTTP protocol (http/server.py): each response in one socket write, same bytes.

The server runs in a child process (uvicorn with uvloop, as `ticketgate serve` runs it), so
the write system calls counted in its /proc/<pid>/io are the server's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ticketgate.http.server import (
    FLUSH_AT_BYTES,
    HTTP_PROTOCOL,
    CoalescingTransport,
    _TickWriter,
)

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
    while more:
        more = (await receive()).get("more_body", False)
    if path == "/stream":  # a body in chunks across awaits: every chunk, in order
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"path":"%s"}' % path.encode()
    if path == "/big":  # beyond what a connection holds until the end of the tick
        body = b"x" * (3 * FLUSH_AT_BYTES)
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
def served(http: str) -> Iterator[tuple[int, int]]:
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
    assert b"x" * (3 * FLUSH_AT_BYTES) in text
    assert b'{"path":"/a"}' in text
    assert b'{"path":"/b"}' not in text
    assert b"one,\r\n" in text
    assert text.index(b"one,") < text.index(b"three")
    assert text.endswith(b'{"path":"/close"}')


async def test_small_writes_wait_for_the_tick_and_a_large_one_goes_at_once() -> None:
    """Over a real socket pair: the peer sees nothing of a small response until the loop's
    tick ends, then all of it in one piece; a body past FLUSH_AT_BYTES is handed to the
    socket at once (the transport's flow control then sees it)."""
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    peer.settimeout(0.2)
    coalescing = CoalescingTransport(transport, _TickWriter(loop))
    try:
        coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        coalescing.write(b"{}")
        with pytest.raises(TimeoutError):
            peer.recv(1024)  # the loop has not run: still held
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert peer.recv(1024) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

        coalescing.write(b"y" * FLUSH_AT_BYTES)
        received = peer.recv(FLUSH_AT_BYTES)  # without the loop running
        assert received
        assert set(received) == {ord("y")}
    finally:
        coalescing.close()
        peer.close()
