"""A throwaway `redis-server` on a free port, owned by the test session.

Tests talk to a real Redis over a real socket (no fakes). `REDIS_URL` points the suite at an
existing server instead; tests that stop and restart Redis are skipped then, since they must
own the process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is a valid, free port too."""
    for _ in range(1000):
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on {port}")


def _wait_for_socket(path: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(0.2)
            sock.connect(path)
            return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server did not listen on {path}")


@dataclass
class RedisServer:
    """A redis-server child process; can be stopped, paused and restarted on the same port."""

    port: int = field(default_factory=free_port)
    binary: str = field(default_factory=lambda: shutil.which("redis-server") or "")
    process: subprocess.Popen[bytes] | None = None
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="tg-redis-"))
    extra_args: list[str] = field(default_factory=list)
    unix_only: bool = False  # listen on a Unix socket only (`socket_path`), no TCP port

    @property
    def socket_path(self) -> str:
        return os.path.join(self.workdir, "redis.sock")

    @property
    def address(self) -> str:
        if self.unix_only:
            return f"unix://{self.socket_path}"
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.address if self.unix_only else f"redis://{self.address}/0"

    def start(self) -> None:
        if not self.binary:
            raise RuntimeError("redis-server not found: run scripts/test.sh, which installs it")
        listen = ["--port", str(self.port)]
        if self.unix_only:
            listen = ["--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        self.process = subprocess.Popen(
            [
                self.binary,
                *listen,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if self.unix_only:
            _wait_for_socket(self.socket_path)
        else:
            _wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers (a hung Redis)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def running_redis(*, unix_only: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(unix_only=unix_only)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            with contextlib.suppress(Exception):
                server.resume()
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
