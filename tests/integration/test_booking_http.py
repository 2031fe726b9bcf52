"""Booking endpoints over real sockets, against real gRPC servers that misbehave on demand.

The gateway runs on uvicorn, the backends are grpc.aio servers (tests/backends/fake_servers),
and every fault is a real one: a port with nothing listening, a servicer that sleeps past the
deadline, a status on the wire, or a `common.v1.Error` in the response.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from tests.backends.booking_gateway import (
    INTENT,
    OPEN_DOOR,
    RESERVATIONS,
    WEBHOOK,
    WEBHOOK_SECRET,
    BookingGateway,
    admitted,
    backend_settings,
    booking_gateway,
    reserve,
    signed,
    user,
)
from tests.backends.fake_servers import PRICE, FakeBackends, Fault, fake_backends
from tests.backends.test_breaker import state
from tests.backends.test_errors import EXPECTED_BY_ERROR_CODE, EXPECTED_BY_STATUS
from tests.integration.conftest import assert_envelope
from tests.redis_server import free_port
from ticketgate.backends.breaker import BreakerState
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBackends]:
    async with fake_backends() as backends:
        yield backends


@pytest.fixture
async def gw(fake: FakeBackends) -> AsyncIterator[BookingGateway]:
    async with booking_gateway(backend_settings(fake.address)) as gateway:
        yield gateway


@pytest.fixture
def event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:10]}"


def key() -> str:
    return uuid.uuid4().hex


async def held(gw: BookingGateway, event_id: str, who: int | str = 1) -> dict[str, Any]:
    token = await admitted(gw.http, event_id, who)
    response = await reserve(gw.http, event_id, who, token, key(), seat_ids=["A-12", "A-13"])
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --------------------------------------------------------------------------- the flow


async def test_reserve_pay_webhook_confirm(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    response = await reserve(gw.http, event_id, 1, token, key(), seat_ids=["A-12", "A-13"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "HOLD"
    assert [seat["seat_id"] for seat in body["reserved_seats"]] == ["A-12", "A-13"]
    assert body["reserved_seats"][0] == {
        "seat_id": "A-12",
        "section": "A",
        "row": "A",
        "number": 12,
        "price": PRICE,
    }
    assert (body["total_amount"], body["currency"]) == (2 * PRICE, "KRW")
    assert "payment_url" not in body
    expires = datetime.datetime.fromisoformat(body["hold_expires_at"])
    assert expires.tzinfo is not None
    assert 50 < (expires - datetime.datetime.now(datetime.UTC)).total_seconds() <= 60
    reservation_id = body["reservation_id"]
    assert response.headers["location"] == f"{RESERVATIONS}/{reservation_id}"
    assert response.headers["cache-control"] == "no-store"
    (create,) = fake.recorder.of("CreateReservation")
    assert create.request.user_id == "load-test-1"
    assert create.request.event_id == event_id
    assert create.request.reservation_token == token
    assert create.request.quantity == 2

    intent = await gw.http.post(
        INTENT,
        json={
            "reservation_id": reservation_id,
            "amount": 2 * PRICE,
            "currency": "KRW",
            "scenario": "approve",
        },
        headers={**user(1), "Idempotency-Key": key()},
    )
    assert intent.status_code == 200, intent.text
    assert intent.json()["next"] == "webhook"
    assert intent.json()["status"] == "PENDING"
    intent_id = intent.json()["payment_intent_id"]
    (created_intent,) = fake.recorder.of("CreatePaymentIntent")
    assert created_intent.request.webhook_url == gw.booking.webhook_url
    assert created_intent.request.user_id == "load-test-1"

    event = {
        "payment_intent_id": intent_id,
        "reservation_id": reservation_id,
        "user_id": "load-test-1",
        "status": "COMPLETED",
        "amount": 2 * PRICE,
        "currency": "KRW",
        "occurred_at": "2025-01-01T12:00:00Z",
    }
    raw = json.dumps(event).encode()
    hook = await gw.http.post(WEBHOOK, content=raw, headers=signed(raw))
    assert hook.status_code == 200, hook.text
    assert hook.json() == {
        "result": "confirmed",
        "received": True,
        "order_id": f"ord_{reservation_id}",
    }

    shown = await gw.http.get(f"{RESERVATIONS}/{reservation_id}", headers=user(1))
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["status"] == "CONFIRMED"
    assert view["order_id"] == f"ord_{reservation_id}"
    assert view["payment_intent_id"] == intent_id
    assert view["event_id"] == event_id


async def test_quantity_without_seat_ids_is_forwarded(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    response = await reserve(gw.http, event_id, 1, token, key(), quantity=3)
    assert response.status_code == 201, response.text
    assert len(response.json()["reserved_seats"]) == 3
    (call,) = fake.recorder.of("CreateReservation")
    assert (list(call.request.seat_ids), call.request.quantity) == ([], 3)


async def test_create_is_idempotent_and_forwards_a_user_scoped_key(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    first = await reserve(gw.http, event_id, 1, token, "same-key")
    again = await reserve(gw.http, event_id, 1, token, "same-key")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["x-idempotency-cached"] == "true"
    (call,) = fake.recorder.of("CreateReservation")
    forwarded = call.request.idempotency_key
    assert forwarded == call.metadata["idempotency-key"]
    # Scoped by user: two users choosing "same-key" never share a backend record.
    assert forwarded != "same-key"
    assert re.fullmatch(r"[0-9a-f]{32}", forwarded)
    token2 = await admitted(gw.http, event_id, 2)
    other = await reserve(gw.http, event_id, 2, token2, "same-key")
    assert other.status_code == 201
    assert other.json()["reservation_id"] != first.json()["reservation_id"]
    assert fake.recorder.of("CreateReservation")[1].request.idempotency_key != forwarded


async def test_traceparent_and_request_id_reach_the_backend(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    body = await held(gw, event_id)
    response = await gw.http.get(
        f"{RESERVATIONS}/{body['reservation_id']}",
        headers={
            **user(1),
            "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
            "X-Request-ID": "client-req-42",
        },
    )
    assert response.status_code == 200
    (call,) = fake.recorder.of("GetReservation")
    version, trace_id, span_id, flags = call.metadata["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert re.fullmatch(r"[0-9a-f]{16}", span_id)
    assert span_id != "b7ad6b7169203331"  # a new span for the backend call
    assert call.metadata["x-request-id"] == "client-req-42"
    # Without a request id the trace id stands in, as in X-Request-ID.
    (create,) = fake.recorder.of("CreateReservation")
    trace_of_create = create.metadata["traceparent"].split("-")[1]
    assert create.metadata["x-request-id"] == trace_of_create


# --------------------------------------------------------------------------- the token


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
async def test_reservation_token_is_single_use(
    fake: FakeBackends, event_id: str, store_kind: str, request: pytest.FixtureRequest
) -> None:
    redis = request.getfixturevalue("redis_address") if store_kind == "redis" else ""
    async with booking_gateway(backend_settings(fake.address), redis_address=redis) as gw:
        token = await admitted(gw.http, event_id, 1)
        assert (await reserve(gw.http, event_id, 1, token, key())).status_code == 201
        reused = await reserve(gw.http, event_id, 1, token, key())
        assert_envelope(reused, 410, "RESERVATION_EXPIRED")
        assert len(fake.recorder.of("CreateReservation")) == 1


async def test_concurrent_uses_of_one_token_hold_seats_once(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    answers = await asyncio.gather(
        *(reserve(gw.http, event_id, 1, token, key()) for _ in range(10))
    )
    statuses = sorted(answer.status_code for answer in answers)
    # One hold; the others found the token leased (409 RESERVATION_IN_PROGRESS) or used (410).
    assert statuses[0] == 201
    assert set(statuses[1:]) <= {409, 410}, statuses
    assert len(fake.recorder.of("CreateReservation")) == 1


async def test_another_users_token_is_forbidden_and_stays_usable(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    stolen = await reserve(gw.http, event_id, 2, token, key())
    body = assert_envelope(stolen, 403, "FORBIDDEN")
    assert "another user" in body["error"]["message"]
    # The refusal did not spend it: its owner can still use it.
    assert (await reserve(gw.http, event_id, 1, token, key())).status_code == 201


async def test_a_token_for_another_event_is_forbidden(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    elsewhere = await reserve(gw.http, f"{event_id}_other", 1, token, key())
    body = assert_envelope(elsewhere, 403, "FORBIDDEN")
    assert "another event" in body["error"]["message"]
    assert fake.recorder.of("CreateReservation") == []


async def test_forged_and_missing_tokens(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    token = await admitted(gw.http, event_id, 1)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert_envelope(await reserve(gw.http, event_id, 1, forged, key()), 403, "FORBIDDEN")
    waiting = await gw.http.post("/api/v1/queue/join", json={"event_id": event_id}, headers=user(9))
    as_waiting = waiting.json()["waiting_token"]  # a waiting token is not a reservation token
    assert_envelope(await reserve(gw.http, event_id, 9, as_waiting, key()), 403, "FORBIDDEN")
    assert_envelope(await reserve(gw.http, event_id, 1, "", key()), 400, "MISSING_TOKEN")
    assert fake.recorder.of("CreateReservation") == []


async def test_an_expired_token_is_gone(fake: FakeBackends, event_id: str) -> None:
    import dataclasses

    short = dataclasses.replace(OPEN_DOOR, reservation_token_ttl_ms=150)
    async with booking_gateway(backend_settings(fake.address), queue=short) as gw:
        token = await admitted(gw.http, event_id, 1)
        await asyncio.sleep(0.3)
        expired = await reserve(gw.http, event_id, 1, token, key())
        assert_envelope(expired, 410, "RESERVATION_EXPIRED")
    assert fake.recorder.of("CreateReservation") == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reservation_token": "t", "quantity": 1}, "MISSING_EVENT_ID"),
        ({"event_id": "bad id!", "reservation_token": "t", "quantity": 1}, "INVALID_REQUEST"),
        ({"event_id": "e", "reservation_token": "t"}, "INVALID_REQUEST"),
        ({"event_id": "e", "reservation_token": "t", "quantity": 11}, "INVALID_REQUEST"),
        (
            {"event_id": "e", "reservation_token": "t", "seat_ids": ["A-1", "A-1"]},
            "INVALID_REQUEST",
        ),
        (
            {"event_id": "e", "reservation_token": "t", "seat_ids": ["A-1"], "quantity": 2},
            "INVALID_REQUEST",
        ),
        ({"event_id": "e", "reservation_token": "t", "quantity": 1, "x": 1}, "INVALID_REQUEST"),
    ],
)
async def test_invalid_create_bodies_are_400(
    gw: BookingGateway, fake: FakeBackends, body: dict[str, Any], code: str
) -> None:
    response = await gw.http.post(
        RESERVATIONS, json=body, headers={**user(1), "Idempotency-Key": key()}
    )
    assert_envelope(response, 400, code)
    assert fake.recorder.calls == []


async def test_create_needs_a_jwt_and_an_idempotency_key(gw: BookingGateway, event_id: str) -> None:
    body = {"event_id": event_id, "reservation_token": "t", "quantity": 1}
    no_auth = await gw.http.post(RESERVATIONS, json=body, headers={"Idempotency-Key": key()})
    assert_envelope(no_auth, 401, "MISSING_AUTHORIZATION")
    no_key = await gw.http.post(RESERVATIONS, json=body, headers=user(1))
    assert_envelope(no_key, 400, "IDEMPOTENCY_REQUIRED")


# --------------------------------------------------------------------------- reading


async def test_reservations_are_shown_to_their_owner_only(
    gw: BookingGateway, event_id: str
) -> None:
    body = await held(gw, event_id, 1)
    path = f"{RESERVATIONS}/{body['reservation_id']}"
    assert (await gw.http.get(path, headers=user(1))).status_code == 200
    assert_envelope(await gw.http.get(path, headers=user(2)), 404, "RESERVATION_NOT_FOUND")
    missing = await gw.http.get(f"{RESERVATIONS}/rsv_nope", headers=user(1))
    assert_envelope(missing, 404, "RESERVATION_NOT_FOUND")
    assert_envelope(await gw.http.get(path), 401, "MISSING_AUTHORIZATION")


async def test_ids_that_cannot_exist_are_not_sent_to_the_backend(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    for bad in ("%20x", "-x", "a" * 200, "x%3Fy"):
        response = await gw.http.get(f"{RESERVATIONS}/{bad}", headers=user(1))
        assert_envelope(response, 404, "RESERVATION_NOT_FOUND")
    # An encoded slash is a slash by the time it reaches the router: no such route.
    nested = await gw.http.get(f"{RESERVATIONS}/x%2Fy", headers=user(1))
    assert_envelope(nested, 404, "NOT_FOUND")
    assert fake.recorder.calls == []


async def test_a_backend_forbidden_on_read_is_not_found(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    body = await held(gw, event_id, 1)
    fake.fail(
        "GetReservation",
        Fault(error=common_pb2.Error(code=common_pb2.ERROR_CODE_FORBIDDEN, message="not yours")),
    )
    response = await gw.http.get(f"{RESERVATIONS}/{body['reservation_id']}", headers=user(1))
    assert_envelope(response, 404, "RESERVATION_NOT_FOUND")


# --------------------------------------------------------------------------- confirm, cancel


async def test_confirm_and_cancel_forward_the_user_and_key(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    body = await held(gw, event_id, 1)
    rid = body["reservation_id"]
    confirmed = await gw.http.post(
        f"{RESERVATIONS}/{rid}/confirm",
        json={"payment_intent_id": "pay_77"},
        headers={**user(1), "Idempotency-Key": "c-1"},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {
        "reservation_id": rid,
        "order_id": f"ord_{rid}",
        "status": "CONFIRMED",
    }
    (call,) = fake.recorder.of("ConfirmReservation")
    assert (call.request.user_id, call.request.payment_intent_id) == ("load-test-1", "pay_77")
    assert call.request.idempotency_key == call.metadata["idempotency-key"] != ""

    other = await held(gw, event_id, 2)
    cancelled = await gw.http.post(
        f"{RESERVATIONS}/{other['reservation_id']}/cancel",
        headers={**user(2), "Idempotency-Key": "c-2"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"reservation_id": other["reservation_id"], "status": "CANCELLED"}
    (cancel,) = fake.recorder.of("CancelReservation")
    assert cancel.request.user_id == "load-test-2"


async def test_confirm_accepts_no_body_but_refuses_unknown_fields(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    rid = (await held(gw, event_id, 1))["reservation_id"]
    path = f"{RESERVATIONS}/{rid}/confirm"
    odd = await gw.http.post(
        path, json={"payment_intent": "x"}, headers={**user(1), "Idempotency-Key": key()}
    )
    assert_envelope(odd, 400, "INVALID_REQUEST")
    bare = await gw.http.post(path, headers={**user(1), "Idempotency-Key": key()})
    assert bare.status_code == 200, bare.text
    assert fake.recorder.of("ConfirmReservation")[0].request.payment_intent_id == ""


async def test_templated_routes_answer_405_for_other_methods(gw: BookingGateway) -> None:
    response = await gw.http.delete(f"{RESERVATIONS}/rsv_1/confirm", headers=user(1))
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


# --------------------------------------------------------------------------- mapped errors


@pytest.mark.parametrize("name", sorted(EXPECTED_BY_ERROR_CODE))
async def test_every_backend_error_code_reaches_the_client(
    gw: BookingGateway, fake: FakeBackends, name: str
) -> None:
    status, code, _, retry_after = EXPECTED_BY_ERROR_CODE[name]
    error = common_pb2.Error(code=common_pb2.ErrorCode.Value(name), message="refused")
    fake.fail("ConfirmReservation", Fault(error=error))
    response = await gw.http.post(
        f"{RESERVATIONS}/rsv_1/confirm", headers={**user(1), "Idempotency-Key": key()}
    )
    assert_envelope(response, status, code)
    assert ("retry-after" in response.headers) is retry_after


@pytest.mark.parametrize("status_code", sorted(EXPECTED_BY_STATUS, key=str))
async def test_every_grpc_status_reaches_the_client(
    gw: BookingGateway, fake: FakeBackends, status_code: grpc.StatusCode
) -> None:
    status, code, _, retry_after = EXPECTED_BY_STATUS[status_code]
    fake.fail("CancelReservation", Fault(status=status_code))
    response = await gw.http.post(
        f"{RESERVATIONS}/rsv_1/cancel", headers={**user(1), "Idempotency-Key": key()}
    )
    assert_envelope(response, status, code)
    assert ("retry-after" in response.headers) is retry_after
    # The backend's own status text never reaches the client.
    assert "injected" not in response.text


async def test_seat_taken_is_409_seat_unavailable_and_replayed(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    taken = common_pb2.Error(code=common_pb2.ERROR_CODE_INVENTORY_CONFLICT, message="A-12 is taken")
    fake.fail("CreateReservation", Fault(error=taken))
    token = await admitted(gw.http, event_id, 1)
    first = await reserve(gw.http, event_id, 1, token, "k-taken", seat_ids=["A-12"])
    body = assert_envelope(first, 409, "SEAT_UNAVAILABLE")
    assert body["error"]["message"] == "A-12 is taken"
    again = await reserve(gw.http, event_id, 1, token, "k-taken", seat_ids=["A-12"])
    assert again.status_code == 409
    assert again.headers["x-idempotency-cached"] == "true"


# --------------------------------------------------------------------------- faults


async def test_slow_backend_is_504_at_the_deadline(fake: FakeBackends, event_id: str) -> None:
    settings = backend_settings(fake.address, reservation_timeout_ms=300)
    async with booking_gateway(settings) as gw:
        rid = (await held(gw, event_id, 1))["reservation_id"]
        fake.fail("GetReservation", Fault(delay_sec=2.0))
        started = time.monotonic()
        response = await gw.http.get(f"{RESERVATIONS}/{rid}", headers=user(1))
        elapsed = time.monotonic() - started
        assert_envelope(response, 504, "UPSTREAM_TIMEOUT")
        # At the deadline, not at the servicer's 2 s (slack for a busy shared box).
        assert 0.28 <= elapsed < 1.2, elapsed


async def test_backend_down_is_fast_503_then_breaker_opens_and_closes(event_id: str) -> None:
    port = free_port()
    settings = backend_settings(
        f"127.0.0.1:{port}", breaker_failures=3, breaker_reset_sec=0.5, reservation_timeout_ms=1000
    )
    async with booking_gateway(settings) as gw:
        for _ in range(3):
            started = time.monotonic()
            response = await gw.http.get(f"{RESERVATIONS}/rsv_1", headers=user(1))
            assert_envelope(response, 503, "UPSTREAM_UNAVAILABLE")
            assert response.headers["retry-after"] == "1"
            assert time.monotonic() - started < 1.0  # within the deadline
        breaker = gw.clients.reservations.breaker
        assert state(breaker) is BreakerState.OPEN
        # Open: a fast 503 whose Retry-After says when the probe is due, and the
        # reservation token is not spent on a backend known to be down.
        token = await admitted(gw.http, event_id, 1)
        started = time.monotonic()
        refused = await reserve(gw.http, event_id, 1, token, key())
        assert time.monotonic() - started < 0.25  # no deadline waited
        assert_envelope(refused, 503, "UPSTREAM_UNAVAILABLE")
        assert refused.headers["retry-after"] == "1"
        async with fake_backends(port) as fake:
            response = await gw.http.get(f"{RESERVATIONS}/rsv_1", headers=user(1))
            assert_envelope(response, 503, "UPSTREAM_UNAVAILABLE")
            assert fake.recorder.calls == []  # refused without a call
            await asyncio.sleep(0.55)
            created = await reserve(gw.http, event_id, 1, token, key())
            assert created.status_code == 201, created.text
            assert state(breaker) is BreakerState.CLOSED
            assert len(fake.recorder.of("CreateReservation")) == 1


async def test_open_breaker_sends_nothing_to_a_failing_backend(
    gw: BookingGateway, fake: FakeBackends
) -> None:
    fake.fail("GetReservation", Fault(status=grpc.StatusCode.UNAVAILABLE))
    for _ in range(3):
        response = await gw.http.get(f"{RESERVATIONS}/rsv_1", headers=user(1))
        assert_envelope(response, 503, "UPSTREAM_UNAVAILABLE")
    calls = len(fake.recorder.calls)
    assert calls == 6  # each read tried twice
    for _ in range(5):
        response = await gw.http.get(f"{RESERVATIONS}/rsv_1", headers=user(1))
        assert_envelope(response, 503, "UPSTREAM_UNAVAILABLE")
    assert len(fake.recorder.calls) == calls
    # The payment backend has its own breaker and still answers.
    assert state(gw.clients.payments.breaker) is BreakerState.CLOSED


# --------------------------------------------------------------------------- payment intent


async def test_intent_checks_owner_state_and_amount(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    rid = (await held(gw, event_id, 1))["reservation_id"]

    async def intent(who: int, **body: object) -> httpx.Response:
        payload: dict[str, object] = {
            "reservation_id": rid,
            "amount": 2 * PRICE,
            "currency": "KRW",
            "scenario": "approve",
            **body,
        }
        return await gw.http.post(
            INTENT, json=payload, headers={**user(who), "Idempotency-Key": key()}
        )

    assert_envelope(await intent(2), 404, "RESERVATION_NOT_FOUND")
    cheap = assert_envelope(await intent(1, amount=1), 400, "INVALID_REQUEST")
    assert str(2 * PRICE) in cheap["error"]["message"]
    assert_envelope(await intent(1, currency="USD"), 400, "INVALID_REQUEST")
    assert_envelope(await intent(1, scenario="steal"), 400, "INVALID_REQUEST")
    assert_envelope(await intent(1, currency="krw"), 400, "INVALID_REQUEST")
    assert fake.recorder.of("CreatePaymentIntent") == []
    ok = await intent(1, scenario="timeout")
    assert ok.status_code == 200, ok.text
    assert fake.recorder.of("CreatePaymentIntent")[0].request.scenario == 5
    await gw.http.post(
        f"{RESERVATIONS}/{rid}/cancel", headers={**user(1), "Idempotency-Key": key()}
    )
    assert_envelope(await intent(1), 409, "RESERVATION_NOT_HELD")
    fake.reservations.held[rid].status = reservation_pb2.RESERVATION_STATUS_EXPIRED
    assert_envelope(await intent(1), 410, "RESERVATION_EXPIRED")


async def test_intent_for_a_paid_reservation_is_409(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    rid = (await held(gw, event_id, 1))["reservation_id"]
    await gw.http.post(
        f"{RESERVATIONS}/{rid}/confirm", headers={**user(1), "Idempotency-Key": key()}
    )
    response = await gw.http.post(
        INTENT,
        json={"reservation_id": rid, "amount": 2 * PRICE, "currency": "KRW"},
        headers={**user(1), "Idempotency-Key": key()},
    )
    body = assert_envelope(response, 409, "RESERVATION_NOT_HELD")
    assert "CONFIRMED" in body["error"]["message"]


# --------------------------------------------------------------------------- webhook


async def paid(gw: BookingGateway, event_id: str, scenario: str = "approve") -> dict[str, Any]:
    rid = (await held(gw, event_id, 1))["reservation_id"]
    response = await gw.http.post(
        INTENT,
        json={"reservation_id": rid, "amount": 2 * PRICE, "currency": "KRW", "scenario": scenario},
        headers={**user(1), "Idempotency-Key": key()},
    )
    assert response.status_code == 200, response.text
    return {
        "payment_intent_id": response.json()["payment_intent_id"],
        "reservation_id": rid,
        "user_id": "load-test-1",
        "status": "COMPLETED" if scenario == "approve" else "FAILED",
        "amount": 2 * PRICE,
        "currency": "KRW",
        "occurred_at": "2025-01-01T12:00:00Z",
    }


async def test_webhook_signature_format_is_the_documented_one(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    """Signed by hand, byte for byte as documented, not through the helper under test."""
    raw = json.dumps(await paid(gw, event_id)).encode()
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    response = await gw.http.post(
        WEBHOOK,
        content=raw,
        headers={"X-Ticketgate-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "confirmed"


@pytest.mark.parametrize("case", ["missing", "wrong-secret", "tampered", "stale", "garbage"])
async def test_webhook_with_a_bad_signature_is_401(
    gw: BookingGateway, fake: FakeBackends, event_id: str, case: str
) -> None:
    event = await paid(gw, event_id)
    raw = json.dumps(event).encode()
    headers: dict[str, str]
    content = raw
    if case == "missing":
        headers = {"Content-Type": "application/json"}
    elif case == "wrong-secret":
        headers = signed(raw, secret="x" * 40)
    elif case == "tampered":
        headers = signed(raw)
        content = json.dumps({**event, "user_id": "load-test-2"}).encode()
    elif case == "stale":
        headers = signed(raw, now=time.time() - 301)
    else:
        headers = {"X-Ticketgate-Signature": "t=abc,v1=zz", "Content-Type": "application/json"}
    response = await gw.http.post(WEBHOOK, content=content, headers=headers)
    assert_envelope(response, 401, "INVALID_SIGNATURE")
    assert fake.recorder.of("GetPaymentStatus") == []
    assert fake.recorder.of("ConfirmReservation") == []


async def test_replayed_webhooks_confirm_once(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    event = await paid(gw, event_id)
    raw = json.dumps(event).encode()
    headers = signed(raw)
    answers = [await gw.http.post(WEBHOOK, content=raw, headers=headers) for _ in range(3)]
    answers += await asyncio.gather(
        *(gw.http.post(WEBHOOK, content=raw, headers=headers) for _ in range(5))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert {answer.json()["order_id"] for answer in answers} == {f"ord_{event['reservation_id']}"}
    assert fake.reservations.confirmations == 1
    calls = fake.recorder.of("ConfirmReservation")
    # Every replay carries the one key of this payment: the backend dedupes them all.
    assert {call.request.idempotency_key for call in calls} == {
        f"payment-webhook:{event['payment_intent_id']}"
    }
    assert {call.request.user_id for call in calls} == {"load-test-1"}
    assert {call.request.payment_intent_id for call in calls} == {event["payment_intent_id"]}


async def test_failed_payment_webhook_confirms_nothing(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    raw = json.dumps(await paid(gw, event_id, scenario="fail")).encode()
    response = await gw.http.post(WEBHOOK, content=raw, headers=signed(raw))
    assert response.status_code == 200
    assert response.json() == {"result": "ignored", "received": True}
    assert fake.recorder.of("ConfirmReservation") == []


async def test_webhook_is_checked_against_the_payment_service(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    """A correctly signed COMPLETED for a payment the service says failed confirms nothing."""
    event = await paid(gw, event_id, scenario="fail")
    raw = json.dumps({**event, "status": "COMPLETED"}).encode()
    response = await gw.http.post(WEBHOOK, content=raw, headers=signed(raw))
    assert_envelope(response, 412, "PAYMENT_NOT_APPROVED")
    other = await paid(gw, f"{event_id}b")  # one admission per person and event
    mismatched = json.dumps({**other, "reservation_id": "rsv_999"}).encode()
    response = await gw.http.post(WEBHOOK, content=mismatched, headers=signed(mismatched))
    assert_envelope(response, 400, "INVALID_REQUEST")
    assert fake.recorder.of("ConfirmReservation") == []


async def test_webhook_with_another_outcome_is_acknowledged_and_ignored(
    gw: BookingGateway, fake: FakeBackends, event_id: str
) -> None:
    raw = json.dumps({**(await paid(gw, event_id)), "status": "REFUNDED"}).encode()
    response = await gw.http.post(WEBHOOK, content=raw, headers=signed(raw))
    assert response.json() == {"received": True, "result": "ignored"}
    assert fake.recorder.of("GetPaymentStatus") == []


def test_each_route_documents_each_status_once(gw: BookingGateway) -> None:
    for route in gw.routes.routes():
        statuses = [status for status, _, _ in route.responses]
        assert len(statuses) == len(set(statuses)), route.path


async def test_webhook_body_must_match_the_schema(gw: BookingGateway) -> None:
    raw = b'{"payment_intent_id": "pay_1"}'
    response = await gw.http.post(WEBHOOK, content=raw, headers=signed(raw))
    assert_envelope(response, 400, "INVALID_REQUEST")


async def test_embedded_mode_aims_the_clients_at_services_started_later(
    fake: FakeBackends, event_id: str
) -> None:
    settings = backend_settings("", reservation_address="", payment_address="")
    assert settings.embedded
    async with booking_gateway(settings) as gw:
        gw.clients.use_embedded(fake.address, fake.address)
        assert not gw.clients.settings.embedded
        body = await held(gw, event_id, 1)
        shown = await gw.http.get(f"{RESERVATIONS}/{body['reservation_id']}", headers=user(1))
        assert shown.status_code == 200
        with pytest.raises(RuntimeError, match="already open"):
            gw.clients.use_embedded(fake.address, fake.address)
