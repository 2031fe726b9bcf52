"""`ticketgate serve` as an operator runs it (issue 10, items 11 and 12): a refused setting is
one unwrapped line on stderr with exit status 2, and a stop signal drains for at most
SERVER_SHUTDOWN_TIMEOUT_SEC even when a client never finishes its request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.envs import TEST_DATABASE_PATH
from tests.redis_server import free_port

SECRET = "startup-secret-startup-secret-startup"


def _serve_env(**overrides: str) -> dict[str, str]:
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR"}
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update(
        SERVER_ENVIRONMENT="development",
        QUEUE_TOKEN_SECRET=SECRET,
        DATABASE_PATH=TEST_DATABASE_PATH,
        COLUMNS="80",  # what Rich assumes when stderr is not a terminal
        **overrides,
    )
    return env


def _refused(**overrides: str) -> str:
    """Run `ticketgate serve` with the settings; it must refuse them: exit 2, one line."""
    done = subprocess.run(
        [sys.executable, "-m", "ticketgate.cli", "serve"],
        env=_serve_env(**overrides),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("ticketgate: configuration error: "), lines[0]
    return lines[0]


def test_a_redis_url_whose_port_is_not_a_number_is_one_line_exit_2() -> None:
    line = _refused(REDIS_ADDRESS="redis://h:notaport")
    assert "REDIS_ADDRESS" in line
    assert "port" in line


def test_a_redis_url_password_is_not_repeated_in_the_error() -> None:
    line = _refused(REDIS_ADDRESS="redis://user:hunter2hunter2@h:notaport/0")
    assert "hunter2" not in line


def test_several_redis_addresses_without_cluster_mode_are_refused() -> None:
    line = _refused(REDIS_ADDRESS="10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379")
    assert "REDIS_CLUSTER_MODE" in line
    assert len(line) > 80  # the case that Rich used to cut into several lines


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVER_PORT", "８０００"),  # full-width digits: int() takes them, we do not
        ("SERVER_PORT", "80_00"),
        ("SERVER_BODY_TIMEOUT_SEC", "nan"),
        ("SERVER_SHUTDOWN_TIMEOUT_SEC", "twenty"),
        ("QUEUE_HEARTBEAT_TTL_SEC", "1e3"),
        ("LOG_LEVEL", "[red]loud[/red]" + "x" * 120),  # markup and length survive as written
    ],
)
def test_an_invalid_setting_is_one_plain_line(name: str, value: str) -> None:
    line = _refused(**{name: value})
    assert name in line
    if name == "LOG_LEVEL":
        assert "[red]loud[/red]" in line


# --- item 11: bounded graceful shutdown -----------------------------------------------


def _wait_listening(port: int, process: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited during start-up"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not start listening")


def test_a_stop_signal_drains_for_at_most_the_shutdown_timeout(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketgate.cli", "serve", "--port", str(port)],
        env=_serve_env(SERVER_SHUTDOWN_TIMEOUT_SEC="1", SERVER_BODY_TIMEOUT_SEC="120"),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        # A request whose body never finishes: it holds its connection until the drain ends.
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(
            b"POST /api/v1/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        time.sleep(0.3)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("the gateway was still draining 15 s after SIGTERM")
        assert time.monotonic() - started < 8
        stuck.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
