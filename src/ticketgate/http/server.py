"""uvicorn's httptools protocol with each response written to its socket in one system call.

uvicorn writes a response's status line and headers when the app sends `http.response.start`
and its body on `http.response.body`: two `write` calls on the socket for every response.
On loopback a socket write is the most expensive thing a request does in this process (the
kernel delivers the segment and wakes the reader inside the call), and the client then
wakes up twice per answer. Here each connection's transport holds what it is given and one
callback per event-loop tick writes every connection's bytes of that tick at once, the way
the Redis executor batches its commands. The callback runs before the loop next waits for
I/O, so nothing is delayed past the tick that produced it.

Selected with `uvicorn.run(http=HTTP_PROTOCOL)` (cli.py `serve`).

This leans on uvicorn internals (uvicorn documents `http=` as taking a protocol class, not
`HttpToolsProtocol` itself, nor that it writes through `transport.write` and keeps `loop`):
pinned for uvicorn==0.54.0 by tests/unit/test_http_server.py, whose write count and byte-for-
byte comparison with stock httptools fail on an upgrade that changes either.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "ticketgate.http.server:CoalescingHttpToolsProtocol"
# Bytes a connection may hold until the end of the tick; more are written at once.
FLUSH_AT_BYTES = 64 * 1024
log = logging.getLogger("ticketgate.http")


class _TickWriter:
    """The per-loop flush: the transports with bytes pending, written out once per tick."""

    __slots__ = ("_loop", "_pending", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[CoalescingTransport] = []
        self._scheduled = False

    def add(self, transport: CoalescingTransport) -> None:
        self._pending.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for transport in pending:
            try:
                transport.flush()
            except Exception:  # one broken connection must not keep the others' bytes
                log.exception("writing a response to its socket failed")


_writers: dict[asyncio.AbstractEventLoop, _TickWriter] = {}


def _tick_writer(loop: asyncio.AbstractEventLoop) -> _TickWriter:
    writer = _writers.get(loop)
    if writer is None:
        if len(_writers) > 16:  # loops of finished tests; a server has one
            _writers.clear()
        writer = _writers[loop] = _TickWriter(loop)
    return writer


class CoalescingTransport:
    """A socket transport whose writes of one loop tick go out as one write.

    Closing writes what is pending first; everything else is the wrapped transport's.
    """

    __slots__ = ("_buffer", "_size", "_tick", "_transport", "is_closing")

    def __init__(self, transport: asyncio.Transport, tick: _TickWriter) -> None:
        self._transport = transport
        self._tick = tick
        self._buffer: list[bytes] = []
        self._size = 0
        # Asked after every response: the wrapped transport's own method, found without
        # going through __getattr__ (a failed class lookup first, ~1 µs).
        self.is_closing = transport.is_closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        buffer = self._buffer
        if not buffer:
            self._tick.add(self)
        buffer.append(bytes(data))
        self._size += len(data)
        if self._size >= FLUSH_AT_BYTES:  # a large body: no gain in holding it, and the
            self.flush()  # wrapped transport's flow control must see it now

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        buffer = self._buffer
        if not buffer:
            return
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if not self._transport.is_closing():  # the client went away within the tick
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol writing through a CoalescingTransport (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalescing = CoalescingTransport(transport, _tick_writer(self.loop))
        super().connection_made(coalescing)  # type: ignore[arg-type]
