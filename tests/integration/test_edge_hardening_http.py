"""The edge's hardening over a real socket (issue 10, items 11 and 13): JSON bodies only
where JSON is expected (415), HEAD wherever GET answers, strict ASCII numbers, a deadline on
reading a request body (408)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import DEV, JOIN, LEAVE, STATUS, assert_envelope, dev_env, join
from ticketgate.app import create_app
from ticketgate.config import load_settings

# --- item 13: Content-Type ------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_json_route_refuses_a_body_that_is_not_json_with_415(
    client: httpx.AsyncClient, event_id: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = f'{{"event_id": "{event_id}"}}'.encode()
    response = await client.post(JOIN, content=body, headers=headers)
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert response.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/x+json",
    ],
)
async def test_json_media_types_are_accepted(
    client: httpx.AsyncClient, event_id: str, content_type: str
) -> None:
    body = f'{{"event_id": "{event_id}"}}'.encode()
    response = await client.post(JOIN, content=body, headers={"content-type": content_type})
    assert response.status_code == 202, response.text


async def test_the_sendbeacon_leave_takes_text_plain(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id)
    body = f'{{"waiting_token": "{token}"}}'.encode()
    response = await client.post(
        LEAVE, content=body, headers={"content-type": "text/plain;charset=UTF-8"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "left"


async def test_the_admin_patch_refuses_a_form_body(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/api/v1/admin/events/evt_form",
        content=b"paused=true",
        headers={**DEV, "content-type": "application/x-www-form-urlencoded"},
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


# --- item 13: HEAD --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/version", "/openapi.json", "/readyz"])
async def test_head_answers_wherever_get_does_without_a_body(
    client: httpx.AsyncClient, path: str
) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


async def test_head_on_status_and_on_a_templated_route(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id)
    head = await client.head(STATUS, params={"token": token})
    assert head.status_code == 200
    assert head.content == b""
    missing = await client.head("/api/v1/reservations/rsv_none", headers=DEV)
    assert (
        missing.status_code
        == (await client.get("/api/v1/reservations/rsv_none", headers=DEV)).status_code
    )
    assert missing.content == b""


async def test_allow_names_head_next_to_get(client: httpx.AsyncClient) -> None:
    response = await client.post("/healthz")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, HEAD"


# --- item 13: strict ASCII digits -----------------------------------------------------


@pytest.mark.parametrize("limit", ["²", "١٠", "1_0", " 10", "+10", "-1", "10.0", "0", "1001"])
async def test_admin_list_limit_accepts_only_ascii_digits(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/api/v1/admin/events", params={"limit": limit}, headers=DEV)
    assert_envelope(response, 400, "INVALID_REQUEST")


async def test_admin_list_limit_in_range_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/admin/events", params={"limit": "10"}, headers=DEV)
    assert response.status_code == 200, response.text
    assert response.json()["limit"] == 10


# --- item 11: body deadline -----------------------------------------------------------


async def _raw_exchange(
    port: int, head: bytes, body_part: bytes, wait: float
) -> tuple[bytes, float]:
    """Send the head and part of the body, then read whatever comes back within `wait`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head + body_part)
    await writer.drain()
    try:
        data = await asyncio.wait_for(reader.read(65536), wait)
    except TimeoutError:
        data = b""
    elapsed = time.monotonic() - started
    writer.close()
    return data, elapsed


async def test_a_half_sent_body_gets_408_after_the_body_timeout() -> None:
    settings = load_settings(dev_env(SERVER_BODY_TIMEOUT_SEC="0.4"))
    async with serve(create_app(settings)) as client:
        port = httpx.URL(str(client.base_url)).port
        assert port is not None
        head = (
            b"POST /api/v1/queue/join HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
        )
        data, elapsed = await _raw_exchange(port, head, b'{"event_id": "', wait=5.0)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert b'"code":"REQUEST_TIMEOUT"' in data
        assert b"connection: close" in data.lower()
        assert 0.3 <= elapsed < 2.0, elapsed
        # The gateway is still healthy, and a whole body is read as before.
        assert (await client.post(JOIN, json={"event_id": "evt_after_408"})).status_code == 202


async def test_a_slow_but_complete_body_within_the_timeout_is_read() -> None:
    settings = load_settings(dev_env(SERVER_BODY_TIMEOUT_SEC="2"))
    async with serve(create_app(settings)) as client:
        port = httpx.URL(str(client.base_url)).port
        assert port is not None
        body = b'{"event_id": "evt_slow_ok"}'
        head = (
            b"POST /api/v1/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body[:5])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(body[5:])
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
        assert data.startswith(b"HTTP/1.1 202 "), data
