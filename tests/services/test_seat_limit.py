"""BOOKING_MAX_SEATS_PER_USER (issue 10 item 2): one person gets at most N seats of an event,
held or sold, however many reservation tokens they bring and however parallel their holds.

Over real gRPC, on SQLite and PostgreSQL. Before, three parallel `quantity: 10` holds gave
one person 30 seats.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests.services.conftest import Booking, Clock, booking, error_code, fast_settings
from tests.unit.test_accounts_database import DatabaseFactory
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2
from ticketgate.services.settings import ServiceSettings

QUOTA = common_pb2.ERROR_CODE_QUOTA_EXCEEDED
CAP = 4  # the default of BOOKING_MAX_SEATS_PER_USER


@pytest.fixture
async def services(databases: DatabaseFactory) -> AsyncIterator[Booking]:
    async with booking(databases, fast_settings(max_seats_per_user=CAP)) as running:
        yield running


def outcome(response: reservation_pb2.CreateReservationResponse) -> str:
    if response.error.code == common_pb2.ERROR_CODE_UNSPECIFIED:
        return "held"
    return common_pb2.ErrorCode.Name(response.error.code)


async def test_parallel_holds_of_one_person_stop_at_the_cap(services: Booking) -> None:
    event_id = await services.seed()
    answers = await asyncio.gather(
        *(services.reserve(event_id, user_id="usr_greedy", quantity=1) for _ in range(12))
    )
    outcomes = Counter(outcome(answer) for answer in answers)
    assert outcomes == {"held": 4, "ERROR_CODE_QUOTA_EXCEEDED": 8}, outcomes
    refused = next(answer for answer in answers if error_code(answer) == QUOTA)
    assert "at most 4 seats per person" in refused.error.message


async def test_parallel_large_holds_cannot_add_up_past_the_cap(services: Booking) -> None:
    event_id = await services.seed()
    answers = await asyncio.gather(
        *(services.reserve(event_id, user_id="usr_greedy", quantity=3) for _ in range(6))
    )
    held = [answer for answer in answers if not error_code(answer)]
    assert len(held) == 1, [outcome(answer) for answer in answers]
    assert sum(len(answer.reserved_seats) for answer in held) == 3
    one_more = await services.reserve(event_id, user_id="usr_greedy", quantity=1)
    assert not error_code(one_more)
    over = await services.reserve(event_id, user_id="usr_greedy", quantity=1)
    assert error_code(over) == QUOTA


async def test_the_cap_is_per_person_and_per_event(services: Booking) -> None:
    event_id = await services.seed()
    other_event = await services.seed()
    assert not error_code(await services.reserve(event_id, user_id="usr_a", quantity=4))
    assert error_code(await services.reserve(event_id, user_id="usr_a", quantity=1)) == QUOTA
    assert not error_code(await services.reserve(event_id, user_id="usr_b", quantity=4))
    assert not error_code(await services.reserve(other_event, user_id="usr_a", quantity=4))
    too_many = await services.reserve(
        event_id, user_id="usr_c", seat_ids=[f"J-{n}" for n in (1, 2, 3, 4, 5)]
    )
    assert error_code(too_many) == QUOTA


async def test_cancelled_and_expired_holds_give_their_seats_back_to_the_quota(
    databases: DatabaseFactory,
) -> None:
    clock = Clock()
    async with booking(databases, fast_settings(max_seats_per_user=CAP), clock=clock) as services:
        event_id = await services.seed()
        first = await services.reserve(event_id, user_id="usr_a", quantity=2)
        second = await services.reserve(event_id, user_id="usr_a", quantity=2)
        assert not error_code(first)
        assert not error_code(second)
        assert error_code(await services.reserve(event_id, user_id="usr_a", quantity=1)) == QUOTA
        cancelled = await services.reservations.CancelReservation(
            reservation_pb2.CancelReservationRequest(
                reservation_id=first.reservation_id, user_id="usr_a"
            ),
            timeout=10,
        )
        assert not error_code(cancelled)
        assert not error_code(await services.reserve(event_id, user_id="usr_a", quantity=2))
        clock.advance(61)  # every hold lapses
        assert not error_code(await services.reserve(event_id, user_id="usr_a", quantity=4))


async def test_sold_seats_count_against_the_quota(databases: DatabaseFactory) -> None:
    async with booking(databases, fast_settings(max_seats_per_user=2)) as services:
        event_id = await services.seed()
        held = await services.reserve(event_id, user_id="usr_alice", quantity=2)
        assert not error_code(held)
        intent = await services.pay(held)
        assert (await services.wait_for_payment(intent.payment_intent_id)).status
        confirmed = await services.confirm(held.reservation_id, intent.payment_intent_id)
        assert not error_code(confirmed), confirmed.error.message
        again = await services.reserve(event_id, user_id="usr_alice", quantity=1)
        assert error_code(again) == QUOTA


@pytest.mark.parametrize("raw", ["0", "many", "10001"])
def test_the_setting_is_validated(raw: str) -> None:
    from ticketgate.envparse import ConfigError

    with pytest.raises(ConfigError, match="BOOKING_MAX_SEATS_PER_USER"):
        ServiceSettings.from_env(
            {"SERVER_ENVIRONMENT": "development", "BOOKING_MAX_SEATS_PER_USER": raw}
        )


def test_the_setting_is_read() -> None:
    env = {"SERVER_ENVIRONMENT": "development"}
    assert ServiceSettings.from_env(env).max_seats_per_user == 4
    assert (
        ServiceSettings.from_env({**env, "BOOKING_MAX_SEATS_PER_USER": "6"}).max_seats_per_user == 6
    )
