"""The log renderer: every logger's records as one JSON object per line, or console lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from typing import Any

import pytest
import structlog

from tests.logs_capture import captured_logs, json_lines
from ticketgate.config import load_settings
from ticketgate.edge.request import Request
from ticketgate.envparse import ConfigError
from ticketgate.observability.logs import CHUNK_BYTES, FLUSH_DELAY_SEC, JsonAccessLog, LineWriter
from ticketgate.observability.settings import LogSettings

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_stdlib_records_are_json_objects_with_the_common_keys() -> None:
    with captured_logs() as stream:
        logging.getLogger("ticketgate.backends").warning("circuit opened after %d failures", 5)
        logging.getLogger("uvicorn.error").info("Started server process")
    (first,) = json_lines(stream, "ticketgate.backends")
    (second,) = [
        line
        for line in json_lines(stream, "uvicorn.error")
        if line["event"] == "Started server process"  # an earlier test's server may log too
    ]
    assert ISO_UTC.fullmatch(first.pop("timestamp"))
    assert first == {
        "level": "warning",
        "logger": "ticketgate.backends",
        "event": "circuit opened after 5 failures",
    }
    assert (second["logger"], second["event"]) == ("uvicorn.error", "Started server process")


def test_audit_extra_fields_become_keys() -> None:
    with captured_logs() as stream:
        logging.getLogger("ticketgate.audit").info(
            "event settings changed",
            extra={"actor": "ops", "event_id": "evt_1", "changes": {"paused": True}},
        )
    (line,) = json_lines(stream, "ticketgate.audit")
    assert line["logger"] == "ticketgate.audit"
    assert line["event"] == "event settings changed"
    assert (line["actor"], line["event_id"], line["changes"]) == ("ops", "evt_1", {"paused": True})


def test_structlog_loggers_share_the_renderer() -> None:
    with captured_logs() as stream:
        structlog.get_logger("ticketgate.test").info("hello", answer=42)
    (line,) = json_lines(stream, "ticketgate.test")
    assert (line["logger"], line["event"], line["answer"], line["level"]) == (
        "ticketgate.test",
        "hello",
        42,
        "info",
    )


def test_exceptions_are_rendered_inside_the_json_line() -> None:
    with captured_logs() as stream:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("ticketgate.http").exception("unhandled error")
    (line,) = json_lines(stream, "ticketgate.http")
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]


def test_level_filters_records() -> None:
    with captured_logs(level="warning") as stream:
        logging.getLogger("ticketgate").info("quiet")
        logging.getLogger("ticketgate").warning("loud")
    assert [line["event"] for line in json_lines(stream, "ticketgate")] == ["loud"]


def test_uvicorns_access_logger_is_silenced() -> None:
    """Its line holds the raw request target: the query string, waiting token and all."""
    with captured_logs() as stream:
        logging.getLogger("uvicorn.access").info('"GET /api/v1/queue/status?token=wt1.x" 200')
    assert stream.getvalue() == ""


def test_console_format_is_readable() -> None:
    with captured_logs(log_format="console") as stream:
        logging.getLogger("ticketgate.audit").info("event paused", extra={"actor": "ops"})
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "event paused" in text
    assert "actor=ops" in text
    assert "[info" in text
    assert not text.lstrip().startswith("{")


def test_format_defaults_follow_the_environment() -> None:
    assert LogSettings.from_env({}, development=False) == LogSettings("json", True)
    assert LogSettings.from_env({}, development=True).format == "console"
    assert LogSettings.from_env({"LOG_FORMAT": "JSON"}, development=True).format == "json"
    assert LogSettings.from_env({"LOG_ACCESS": "false"}, development=False).access is False
    with pytest.raises(ConfigError, match="LOG_FORMAT must be json or console"):
        LogSettings.from_env({"LOG_FORMAT": "xml"}, development=False)
    settings = load_settings({"SERVER_ENVIRONMENT": "development", "LOG_FORMAT": "console"})
    assert settings.logs == LogSettings("console", True)


async def test_the_line_writer_keeps_lines_whole_in_small_chunks() -> None:
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    writer = LineWriter(Recorder())
    line = b"x" * 999 + b"\n"
    for _ in range(9):
        writer.write(line)
    assert [len(chunk) // 1000 for chunk in writes] == [4, 4]  # full chunks go at once
    await asyncio.sleep(FLUSH_DELAY_SEC * 2)  # the rest follows within the delay
    assert "".join(writes) == line.decode() * 9
    assert all(len(chunk) <= CHUNK_BYTES and chunk.endswith("\n") for chunk in writes)
    assert [len(chunk) // 1000 for chunk in writes] == [4, 4, 1]


def _access_lines(requests: list[tuple[Request, str, int]]) -> list[dict[str, Any]]:
    stream = io.StringIO()
    observer = JsonAccessLog(LineWriter(stream))
    for request, route, status in requests:
        observer.end(request, None, route, status, 0.0123456)
    observer.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_access_lines_are_json_whatever_the_values_hold() -> None:
    """The line is a bytes template: values that need JSON escaping must still come out as
    valid JSON with the same keys and values."""
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    plain = Request("GET", "/x", b"", {b"x-request-id": b"req-42"}, trace_id, "10.0.0.1")
    odd = Request(
        'GE"T\\',
        "/x",
        b"",
        {b"x-request-id": b'bad"id\\'},  # refused by request_id_from: the trace id stands in
        trace_id,
        'unix:"/tmp/s\\ock"\u00e9\n',
    )
    lines = _access_lines([(plain, "/api/v1/queue/status", 200), (odd, "/r/{id}\u2603\t", 404)])
    first, second = lines
    assert ISO_UTC.fullmatch(first.pop("timestamp"))
    assert first == {
        "level": "info",
        "logger": "ticketgate.access",
        "event": "request",
        "trace_id": trace_id,
        "request_id": "req-42",
        "method": "GET",
        "route": "/api/v1/queue/status",
        "status": 200,
        "latency_ms": 12.346,
        "client": "10.0.0.1",
    }
    assert (second["method"], second["route"], second["status"]) == (
        'GE"T\\',
        "/r/{id}\u2603\t",
        404,
    )
    assert (second["request_id"], second["client"]) == (trace_id, 'unix:"/tmp/s\\ock"\u00e9\n')
    assert list(second) == ["timestamp", *first]  # the same keys, in the same order


def test_access_lines_of_a_request_id_at_the_limits() -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    longest, too_long = b"a" * 128, b"a" * 129
    lines = _access_lines(
        [
            (Request("GET", "/x", b"", {b"x-request-id": value}, trace_id, "::1"), "/x", 200)
            for value in (longest, too_long, b"")
        ]
    )
    assert [line["request_id"] for line in lines] == [longest.decode(), trace_id, trace_id]
    assert lines[0]["client"] == "::1"
