"""The access line of the wired app over a real socket: one JSON object per request, naming
the route template, never the query string, the Authorization header or any token."""

from __future__ import annotations

import os

from tests.http_server import serve
from tests.integration.conftest import JOIN, STATUS, as_user, dev_env
from tests.logs_capture import captured_logs, json_lines
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.observability.logs import ConsoleAccessLog, JsonAccessLog

BEARER = "load-test-bypass-token-77"


async def test_one_json_line_per_request_without_tokens_or_query() -> None:
    with captured_logs() as stream:
        async with serve(create_app(load_settings(dev_env(LOG_FORMAT="json")))) as http:
            joined = await http.post(
                JOIN, json={"event_id": "evt_logged"}, headers={"Authorization": f"Bearer {BEARER}"}
            )
            waiting_token = joined.json()["waiting_token"]
            status = await http.get(
                f"{STATUS}?token={waiting_token}",
                headers={"Authorization": f"Bearer {BEARER}", "X-Request-ID": "req-42"},
            )
            assert status.status_code == 200, status.text
            trace_id = os.urandom(16).hex()
            missing = await http.get(
                "/api/v1/reservations/res_1?token=another-secret",
                headers={**as_user(1), "traceparent": f"00-{trace_id}-{'1' * 16}-01"},
            )
    text = stream.getvalue()
    for secret in (BEARER, waiting_token, "another-secret", "token=", "Bearer"):
        assert secret not in text
    access = json_lines(stream, "ticketgate.access")
    assert len(access) == 3
    join_line, status_line, missing_line = access
    assert set(join_line) == {
        "timestamp",
        "level",
        "logger",
        "event",
        "trace_id",
        "request_id",
        "method",
        "route",
        "status",
        "latency_ms",
        "client",
    }
    assert (join_line["level"], join_line["event"], join_line["method"]) == (
        "info",
        "request",
        "POST",
    )
    assert (join_line["route"], join_line["status"], join_line["client"]) == (
        JOIN,
        202,
        "127.0.0.1",
    )
    assert join_line["trace_id"] == join_line["request_id"] == joined.headers["x-request-id"]
    assert 0 < join_line["latency_ms"] < 5_000
    assert (status_line["route"], status_line["request_id"]) == (STATUS, "req-42")
    assert missing_line["route"] == "/api/v1/reservations/{id}"  # the template
    assert missing_line["trace_id"] == trace_id
    assert missing_line["status"] == missing.status_code


async def test_access_lines_can_be_switched_off() -> None:
    with captured_logs() as stream:
        app = create_app(load_settings(dev_env(LOG_ACCESS="false")))
        assert not any(isinstance(o, JsonAccessLog | ConsoleAccessLog) for o in app._observers)
        async with serve(app) as http:
            assert (await http.get("/healthz")).status_code == 200
    assert "ticketgate.access" not in stream.getvalue()


async def test_console_access_lines_in_development() -> None:
    with captured_logs(log_format="console") as stream:
        async with serve(create_app(load_settings(dev_env()))) as http:  # development: console
            joined = await http.post(JOIN, json={"event_id": "evt_console"}, headers=as_user(2))
            assert joined.status_code == 202
    line = next(x for x in stream.getvalue().splitlines() if "ticketgate.access" in x)
    assert f"route={JOIN}" in line
    assert "status=202" in line
    assert "load-test-bypass-token" not in stream.getvalue()
