"""Every error code the queue edge can answer, over a real socket (README, API table).

Each one must come with its status and the envelope `{"error": {code, message, trace_id}}`;
a client mistake is never a 500.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.envs import app_env
from tests.http_server import serve
from tests.integration.conftest import (
    DEV,
    ENTER,
    JOIN,
    LEAVE,
    SECRET,
    STATUS,
    GatewayFactory,
    as_user,
    assert_envelope,
    join,
)
from ticketgate.app import create_app
from ticketgate.config import load_settings

# --- request bodies -------------------------------------------------------------------


async def test_join_without_event_id_is_missing_event_id(
    client: httpx.AsyncClient,
) -> None:
    assert_envelope(await client.post(JOIN, json={}), 400, "MISSING_EVENT_ID")
    assert_envelope(await client.post(JOIN, json={"event_id": ""}), 400, "MISSING_EVENT_ID")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"event_id": "evt_1"', "malformed JSON"),
        (b"not json at all", "not JSON"),
        (b'{"event_id": "evt_1", "extra": 1}', "unknown field"),
        (b'{"event_id": 42}', "wrong type"),
        (b'{"event_id": "evt_1", "user_id": 7}', "wrong type of user_id"),
        (b'["evt_1"]', "an array, not an object"),
        (b"null", "null"),
        (b'"evt_1"', "a bare string"),
        (('{"event_id": "' + "e" * 65 + '"}').encode(), "oversized event_id"),
        (('{"event_id": "e", "user_id": "' + "u" * 129 + '"}').encode(), "oversized user_id"),
        (b'{"event_id": "has space"}', "event_id with characters outside the alphabet"),
        (b'{"event_id": "\\u00e9v\\u00e9nement"}', "non-ASCII event_id"),
        (b'{"event_id": "\xff\xfe"}', "invalid UTF-8"),
        (b"", "empty body"),
    ],
)
async def test_join_rejects_bad_bodies_as_invalid_request(
    client: httpx.AsyncClient, body: bytes, why: str
) -> None:
    response = await client.post(JOIN, content=body, headers={"content-type": "application/json"})
    assert_envelope(response, 400, "INVALID_REQUEST")


async def test_the_invalid_request_message_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(JOIN, json={"event_id": "e" * 65})
    assert "event_id" in assert_envelope(response, 400, "INVALID_REQUEST")["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [b'{"waiting_token": ', b'{"waiting_token": "x", "seat": 1}', b'{"waiting_token": 1}', b""],
)
async def test_enter_rejects_bad_bodies_as_invalid_request(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        ENTER, content=body, headers={**DEV, "content-type": "application/json"}
    )
    assert_envelope(response, 400, "INVALID_REQUEST")


async def test_enter_rejects_an_oversized_token_as_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(ENTER, json={"waiting_token": "w" * 513}, headers=DEV)
    assert_envelope(response, 400, "INVALID_REQUEST")


@pytest.mark.parametrize("body", [b'{"waiting_token": ', b'{"waiting_token": 5}', b"[1]"])
async def test_beacon_leave_rejects_bad_bodies_as_invalid_request(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert_envelope(await client.post(LEAVE, content=body), 400, "INVALID_REQUEST")


async def test_too_many_query_fields_are_a_client_error(client: httpx.AsyncClient) -> None:
    query = "&".join(f"f{n}=1" for n in range(50))
    response = await client.get(f"{STATUS}?{query}&token=x")
    assert_envelope(response, 400, "INVALID_REQUEST")


# --- missing tokens -------------------------------------------------------------------


async def test_status_without_token_is_missing_token(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get(STATUS), 400, "MISSING_TOKEN")
    assert_envelope(await client.get(STATUS, params={"token": ""}), 400, "MISSING_TOKEN")


async def test_enter_without_token_is_missing_token(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.post(ENTER, json={}, headers=DEV), 400, "MISSING_TOKEN")
    response = await client.post(ENTER, json={"waiting_token": ""}, headers=DEV)
    assert_envelope(response, 400, "MISSING_TOKEN")


async def test_leave_without_token_is_missing_token(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.delete(LEAVE), 400, "MISSING_TOKEN")
    assert_envelope(await client.post(LEAVE), 400, "MISSING_TOKEN")
    assert_envelope(await client.post(LEAVE, json={}), 400, "MISSING_TOKEN")


# --- body size ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [JOIN, ENTER, LEAVE])
async def test_a_body_over_the_limit_with_content_length_is_413(
    gateway: GatewayFactory, path: str
) -> None:
    async with gateway(SERVER_MAX_BODY_BYTES="256") as client:
        body = b'{"event_id": "' + b"e" * 300 + b'"}'
        response = await client.post(
            path, content=body, headers={**DEV, "content-type": "application/json"}
        )
        assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
        # The same server still answers a body at the limit normally.
        fits = await client.post(JOIN, json={"event_id": "evt_fits", "user_id": "u" * 100})
        assert fits.status_code == 202, fits.text


async def test_a_chunked_body_over_the_limit_is_413(gateway: GatewayFactory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"event_id": "'
        for _ in range(10):
            yield b"e" * 50
        yield b'"}'

    async with gateway(SERVER_MAX_BODY_BYTES="256") as client:
        request = client.build_request(
            "POST", JOIN, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        assert_envelope(await client.send(request), 413, "PAYLOAD_TOO_LARGE")


async def test_a_chunked_body_within_the_limit_is_read_whole(
    client: httpx.AsyncClient, event_id: str
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"event_id"', b': "', event_id.encode(), b'"}'):
            yield part

    response = await client.post(
        JOIN, content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 202, response.text


# --- duplicates -----------------------------------------------------------------------


async def test_joining_twice_is_duplicate_request_carrying_the_existing_token(
    client: httpx.AsyncClient, event_id: str
) -> None:
    first = await client.post(JOIN, json={"event_id": event_id}, headers=DEV)
    await join(client, event_id, headers=as_user(2))
    again = await client.post(JOIN, json={"event_id": event_id}, headers=DEV)
    body = assert_envelope(again, 409, "DUPLICATE_REQUEST")
    assert body["waiting_token"] == first.json()["waiting_token"]
    assert body["position_hint"] == 1


async def test_entering_twice_is_duplicate_request(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id, headers=DEV)
    first = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
    assert first.status_code == 200
    again = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
    assert_envelope(again, 409, "DUPLICATE_REQUEST")


# --- waiting tokens -------------------------------------------------------------------


def _tamper(token: str) -> str:
    """Change one claim of a real token (the sequence), keeping its old signature."""
    prefix, payload, mac = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw[-1] ^= 0x01
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert altered != payload
    return f"{prefix}.{altered}.{mac}"


async def test_forged_and_tampered_tokens_are_token_not_found(
    client: httpx.AsyncClient, event_id: str
) -> None:
    real = await join(client, event_id, headers=DEV)
    forged = [
        "nonsense",
        "wt1.AAAA.AAAA",
        "wt1.not base64!.x",
        "wt1..",
        "rt1." + real[4:],
        _tamper(real),
        real[:-2] + ("AA" if not real.endswith("AA") else "BB"),
        "wt1.\u00e9t\u00e9.\u00e9",
    ]
    for token in forged:
        assert_envelope(await client.get(STATUS, params={"token": token}), 404, "TOKEN_NOT_FOUND")
        response = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
        assert_envelope(response, 404, "TOKEN_NOT_FOUND")
        assert_envelope(await client.delete(LEAVE, params={"token": token}), 404, "TOKEN_NOT_FOUND")
    # None of them touched the real waiter.
    assert (await client.get(STATUS, params={"token": real})).json()["position"] == 1


async def test_a_token_signed_with_another_secret_is_token_not_found(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_TOKEN_SECRET="another-secret-another-secret-another") as other:
        foreign = await join(other, event_id)
    async with gateway() as client:
        response = await client.get(STATUS, params={"token": foreign})
        assert_envelope(response, 404, "TOKEN_NOT_FOUND")


async def test_entering_after_leaving_is_token_expired(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id, headers=DEV)
    assert (await client.delete(LEAVE, params={"token": token})).status_code == 200
    response = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
    assert_envelope(response, 410, "TOKEN_EXPIRED")


async def test_entering_after_the_heartbeat_lapsed_is_token_expired(
    gateway: GatewayFactory, event_id: str
) -> None:
    import asyncio

    async with gateway(QUEUE_HEARTBEAT_TTL_SEC="0.5", QUEUE_SWEEP_INTERVAL_MS="600000") as client:
        token = await join(client, event_id, headers=DEV)
        await asyncio.sleep(0.7)
        response = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
        assert_envelope(response, 410, "TOKEN_EXPIRED")
        status = await client.get(STATUS, params={"token": token})
        assert status.json()["status"] == "expired"


async def test_entering_outside_the_window_is_not_ready(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_ADMISSION_WINDOW="1") as client:
        await join(client, event_id)
        second = await join(client, event_id, headers=DEV)
        response = await client.post(ENTER, json={"waiting_token": second}, headers=DEV)
        assert_envelope(response, 409, "NOT_READY")


async def test_entering_before_the_minimum_wait_is_not_ready_with_retry_after(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(QUEUE_MIN_WAIT="10:30") as client:
        token = await join(client, event_id, headers=DEV)
        response = await client.post(ENTER, json={"waiting_token": token}, headers=DEV)
        assert_envelope(response, 409, "NOT_READY")
        assert 25 <= int(response.headers["retry-after"]) <= 30


async def test_entering_with_an_empty_bucket_is_admission_throttled_with_retry_after(
    gateway: GatewayFactory, event_id: str
) -> None:
    async with gateway(
        QUEUE_MIN_WAIT="100:0",
        QUEUE_BUCKET_CAPACITY="1",
        QUEUE_BUCKET_REFILL_PER_SEC="0.1",
    ) as client:
        first = await join(client, event_id, headers=as_user(1))
        second = await join(client, event_id, headers=as_user(2))
        granted = await client.post(ENTER, json={"waiting_token": first}, headers=as_user(1))
        assert granted.status_code == 200, granted.text
        response = await client.post(ENTER, json={"waiting_token": second}, headers=as_user(2))
        assert_envelope(response, 429, "ADMISSION_THROTTLED")
        # One token per 10 s at 0.1/s: the hint says when the next one is due.
        assert 5 <= int(response.headers["retry-after"]) <= 11
        # Throttled is not removed: the waiter is still first in line, and status does not
        # call it ready (an enter now would be refused); it points at the turn instead.
        status = (await client.get(STATUS, params={"token": second})).json()
        assert (status["status"], status["position"]) == ("waiting", 1)
        assert status["ready_for_entry"] is False
        assert 8 <= status["eta_sec"] <= 10
        assert 8_000 <= status["poll_after_ms"] <= 10_000


# --- who is calling -------------------------------------------------------------------


async def test_entering_with_someone_elses_token_is_forbidden(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id, headers=as_user(1))
    response = await client.post(ENTER, json={"waiting_token": token}, headers=as_user(2))
    assert_envelope(response, 403, "FORBIDDEN")
    # The owner still gets in afterwards.
    mine = await client.post(ENTER, json={"waiting_token": token}, headers=as_user(1))
    assert mine.status_code == 200


async def test_joining_as_another_user_id_is_forbidden(
    client: httpx.AsyncClient, event_id: str
) -> None:
    response = await client.post(
        JOIN, json={"event_id": event_id, "user_id": "someone-else"}, headers=DEV
    )
    assert_envelope(response, 403, "FORBIDDEN")


async def test_enter_without_authorization_is_401_with_a_challenge(
    client: httpx.AsyncClient, event_id: str
) -> None:
    token = await join(client, event_id)
    response = await client.post(ENTER, json={"waiting_token": token})
    assert_envelope(response, 401, "MISSING_AUTHORIZATION")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two words", "token", "Bearer\tx y"]
)
async def test_a_malformed_authorization_is_invalid_token_format(
    client: httpx.AsyncClient, event_id: str, authorization: str
) -> None:
    headers = {"Authorization": authorization}
    response = await client.post(ENTER, json={"waiting_token": "x"}, headers=headers)
    assert_envelope(response, 401, "INVALID_TOKEN_FORMAT")
    assert "invalid_token" in response.headers["www-authenticate"]
    # Join's auth is optional, but a credential that is sent must still be well formed.
    response = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
    assert_envelope(response, 401, "INVALID_TOKEN_FORMAT")


async def test_an_unknown_bearer_token_is_invalid_token(
    client: httpx.AsyncClient, event_id: str
) -> None:
    # JWT-shaped (three base64url segments) but signed by nobody we know.
    headers = {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}
    assert_envelope(
        await client.post(ENTER, json={"waiting_token": "x"}, headers=headers),
        401,
        "INVALID_TOKEN",
    )
    assert_envelope(
        await client.post(JOIN, json={"event_id": event_id}, headers=headers),
        401,
        "INVALID_TOKEN",
    )


async def test_a_bearer_token_that_is_not_a_jwt_is_invalid_token_format(
    client: httpx.AsyncClient, event_id: str
) -> None:
    headers = {"Authorization": "Bearer not-a-real-token"}
    response = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
    assert_envelope(response, 401, "INVALID_TOKEN_FORMAT")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_malformed_load_test_suffix_is_invalid_token(
    client: httpx.AsyncClient, event_id: str
) -> None:
    response = await client.post(
        JOIN,
        json={"event_id": event_id},
        headers={"Authorization": "Bearer load-test-bypass-token-" + "x" * 65},
    )
    assert_envelope(response, 401, "INVALID_TOKEN")


async def test_bypass_tokens_are_invalid_in_production(event_id: str) -> None:
    settings = load_settings(app_env(SERVER_ENVIRONMENT="production", QUEUE_TOKEN_SECRET=SECRET))
    async with serve(create_app(settings)) as client:
        for headers in (DEV, as_user(1)):
            response = await client.post(ENTER, json={"waiting_token": "x"}, headers=headers)
            assert_envelope(response, 401, "INVALID_TOKEN")
            response = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
            assert_envelope(response, 401, "INVALID_TOKEN")
        # Anonymous joins pass authentication there (and find no registered event).
        response = await client.post(JOIN, json={"event_id": event_id})
        assert_envelope(response, 404, "EVENT_NOT_FOUND")


@pytest.mark.parametrize("key", [b"k" * 256, b"has space", b"tab\there", "\u00e9t\u00e9".encode()])
async def test_a_bad_idempotency_key_is_invalid_idempotency_key(
    client: httpx.AsyncClient, event_id: str, key: bytes
) -> None:
    headers = {b"Idempotency-Key": key}
    response = await client.post(JOIN, json={"event_id": event_id}, headers=headers)
    assert_envelope(response, 400, "INVALID_IDEMPOTENCY_KEY")
    dev = {b"Authorization": DEV["Authorization"].encode()}
    response = await client.post(ENTER, json={"waiting_token": "x"}, headers={**dev, **headers})
    assert_envelope(response, 400, "INVALID_IDEMPOTENCY_KEY")


# --- routing --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/queue", "/api/v1/queue/join/", "/nope"])
async def test_an_unknown_path_is_not_found(client: httpx.AsyncClient, path: str) -> None:
    assert_envelope(await client.get(path), 404, "NOT_FOUND")
    assert_envelope(await client.post(path, json={}), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", JOIN, "POST"),
        ("DELETE", JOIN, "POST"),
        ("POST", STATUS, "GET, HEAD"),
        ("GET", ENTER, "POST"),
        ("GET", LEAVE, "DELETE, POST"),
        ("PUT", LEAVE, "DELETE, POST"),
        ("POST", "/healthz", "GET, HEAD"),
        ("PATCH", "/readyz", "GET, HEAD"),
    ],
)
async def test_a_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allow


# --- request ids ----------------------------------------------------------------------


async def test_x_request_id_is_echoed_when_sent(client: httpx.AsyncClient, event_id: str) -> None:
    ok = await client.post(JOIN, json={"event_id": event_id}, headers={"X-Request-ID": "req-42"})
    assert ok.headers["x-request-id"] == "req-42"
    failed = await client.get(STATUS, headers={"X-Request-ID": "req-43"})
    assert failed.headers["x-request-id"] == "req-43"
    trace_id = failed.json()["error"]["trace_id"]
    assert trace_id != "req-43"
    assert len(trace_id) == 32


async def test_x_request_id_is_the_trace_id_when_not_sent(client: httpx.AsyncClient) -> None:
    first = assert_envelope(await client.get(STATUS), 400, "MISSING_TOKEN")
    second = assert_envelope(await client.get(STATUS), 400, "MISSING_TOKEN")
    assert first["error"]["trace_id"] != second["error"]["trace_id"]
    healthy = await client.get("/healthz")
    assert len(healthy.headers["x-request-id"]) == 32
    int(healthy.headers["x-request-id"], 16)


async def test_an_unusable_x_request_id_is_replaced_by_the_trace_id(
    client: httpx.AsyncClient,
) -> None:
    for bad in ("has space", "x" * 129, "semi;colon"):
        response = await client.get(STATUS, headers={"X-Request-ID": bad})
        body = assert_envelope(response, 400, "MISSING_TOKEN")
        assert response.headers["x-request-id"] == body["error"]["trace_id"]


async def test_traceparent_trace_id_becomes_the_trace_id(client: httpx.AsyncClient) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    response = await client.get(STATUS, headers={"traceparent": traceparent})
    assert assert_envelope(response, 400, "MISSING_TOKEN")["error"]["trace_id"] == trace_id
    assert response.headers["x-request-id"] == trace_id
    echoed = await client.get(STATUS, headers={"traceparent": traceparent, "X-Request-ID": "r1"})
    assert echoed.json()["error"]["trace_id"] == trace_id
    assert echoed.headers["x-request-id"] == "r1"


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ],
)
async def test_an_invalid_traceparent_gets_a_fresh_trace_id(
    client: httpx.AsyncClient, traceparent: str
) -> None:
    response = await client.get(STATUS, headers={"traceparent": traceparent})
    trace_id = assert_envelope(response, 400, "MISSING_TOKEN")["error"]["trace_id"]
    assert trace_id not in traceparent.lower()
