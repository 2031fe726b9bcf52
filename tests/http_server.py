"""Serve a gateway on a real socket inside the test's event loop (uvicorn, the gateway's own
httptools protocol: http/server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

from ticketgate.http.server import HTTP_PROTOCOL


def listening_socket() -> socket.socket:
    """A socket already bound to a free 127.0.0.1 port and listening.

    Handing uvicorn the bound socket closes the gap between choosing a free port and binding
    it: the gateway's start-up opens outbound connections (Redis, gRPC) whose ephemeral local
    port could otherwise land on the chosen one (CI failed on exactly that, EADDRINUSE).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def gateway_config(app: Any, *, loop: str) -> uvicorn.Config:
    """The uvicorn settings every in-test gateway runs with (quiet, the protocol `ticketgate
    serve` uses, lifespan on)."""
    return uvicorn.Config(
        app,
        loop=loop,
        http=HTTP_PROTOCOL,
        proxy_headers=False,  # as `ticketgate serve`: the gateway unwrapped, called directly
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run `app` on 127.0.0.1:<free port>; yield an httpx client aimed at it."""
    sock = listening_socket()
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(gateway_config(app, loop="none"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()
