"""Child processes of a benchmark run: a private redis-server and the HTTP servers under test.

Every child starts in its own session, so stopping it stops its whole process group (uvicorn's
worker processes included) and nothing outlives the run, also after Ctrl-C or an exception.
Everything binds to 127.0.0.1 on a free port; a Redis already running on 6379 is never touched.
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
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

HOST = "127.0.0.1"


class ChildFailed(RuntimeError):
    """A child process exited early or never became ready; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Child:
    """One child process group with its output captured to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(text[-lines:])
        return ""

    def fail(self, reason: str) -> ChildFailed:
        return ChildFailed(f"{self.name}: {reason}\n--- {self.log_path} ---\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL if it has not gone within `timeout`."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        # Workers may outlive a parent that died on its own; the group id is still ours.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


def process_group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group `pgid`.

    A server's CPU time per request is far steadier than its requests per second on a busy
    machine (neighbours steal wall time, not the CPU a request costs), so edge on/off
    comparisons read both. Linux only (/proc); elsewhere 0.0.
    """
    ticks = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue  # exited while we looked
            # Fields after "(comm)": state, ppid, pgrp, ..., utime (14th), stime (15th).
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_redis(log_dir: Path, name: str = "redis") -> tuple[Child, int]:
    """A redis-server without persistence on a free port, in its own scratch directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ChildFailed("redis-server not found on PATH (apt-get install redis-server)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="tg-bench-redis-", dir=log_dir)
    child = Child(
        name,
        [
            binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "no",
            "--loglevel",
            "warning",
        ],
        log_dir=log_dir,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not child.alive():
            raise child.fail("exited during start")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
            return child, port
        time.sleep(0.05)
    child.stop()
    raise child.fail("did not listen within 10 s")


def wait_http_ready(child: Child, url: str, timeout: float = 30.0, successes: int = 5) -> None:
    """Poll `url` until it answers 200 `successes` times in a row (spreads over the workers)."""
    deadline = time.monotonic() + timeout
    streak = 0
    last = "no answer"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if not child.alive():
                raise child.fail(f"exited with code {child.process.returncode} during start")
            try:
                response = client.get(url)
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                streak = streak + 1 if response.status_code == 200 else 0
            except httpx.HTTPError as exc:
                last = repr(exc)
                streak = 0
            if streak >= successes:
                return
            time.sleep(0.1)
    raise child.fail(f"{url} not ready within {timeout:.0f} s (last: {last})")
