"""Inventory over gRPC: seat maps, holds (named or best available), commit, release, expiry."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from tests.services.conftest import HUNDRED_SEATS, Booking, error_code
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2
from ticketgate.services import tables
from ticketgate.services.inventory import DEMO_EVENT_ID, demo_seat_map


async def reserve(
    services: Booking,
    event_id: str,
    hold_id: str,
    *,
    seat_ids: list[str] | None = None,
    quantity: int = 0,
    ttl: int = 60,
) -> reservation_pb2.ReserveSeatResponse:
    return await services.inventory.ReserveSeat(
        reservation_pb2.ReserveSeatRequest(
            event_id=event_id,
            seat_ids=seat_ids or [],
            quantity=quantity,
            hold_id=hold_id,
            hold_ttl_seconds=ttl,
            user_id="usr_alice",
        ),
        timeout=5,
    )


async def seat_states(services: Booking, event_id: str) -> dict[str, tuple[str, str | None]]:
    """seat id -> (status, hold id), straight from the table."""
    seats = tables.seats.c
    async with services.running.inventory.database.read() as conn:
        rows = (
            await conn.execute(
                select(seats.seat_id, seats.status, seats.hold_id).where(seats.event_id == event_id)
            )
        ).all()
    return {row.seat_id: (row.status, row.hold_id) for row in rows}


async def available_count(services: Booking, event_id: str) -> int:
    response = await services.inventory.CheckAvailability(
        reservation_pb2.CheckAvailabilityRequest(event_id=event_id), timeout=5
    )
    return response.available_count


async def test_demo_event_is_seeded_once_with_300_priced_seats(services: Booking) -> None:
    response = await services.inventory.CheckAvailability(
        reservation_pb2.CheckAvailabilityRequest(event_id=DEMO_EVENT_ID), timeout=5
    )
    assert response.available_count == 300
    assert len(response.available_seats) == 300
    prices = {seat.price.amount for seat in response.available_seats}
    assert min(prices) == 110_000
    assert max(prices) == 165_000
    assert {seat.price.currency for seat in response.available_seats} == {"KRW"}
    front = response.available_seats[0]
    assert (front.seat_id, front.section, front.row, front.number) == ("A-1", "VIP", "A", 1)
    assert "J-30" in {seat.seat_id for seat in response.available_seats}

    held = await reserve(services, DEMO_EVENT_ID, "h_demo", seat_ids=["A-12"])
    assert not held.HasField("error")
    # Seeding again (a restart) neither duplicates nor resets anything.
    count = await services.running.inventory.seed_event(DEMO_EVENT_ID, demo_seat_map())
    assert count == 300
    assert (await seat_states(services, DEMO_EVENT_ID))["A-12"] == ("HELD", "h_demo")


async def test_named_seats_are_held_committed_and_stay_sold(services: Booking) -> None:
    event_id = await services.seed()
    held = await reserve(services, event_id, "h1", seat_ids=["B-2", "A-1"])
    assert not held.HasField("error")
    assert [seat.seat_id for seat in held.seats] == ["A-1", "B-2"]
    assert held.seats[0].price.amount == 100_000
    assert held.seats[1].price.amount == 101_000
    assert held.expires_at.seconds > 0
    states = await seat_states(services, event_id)
    assert states["A-1"] == ("HELD", "h1")
    assert states["B-2"] == ("HELD", "h1")
    assert await available_count(services, event_id) == 98

    committed = await services.inventory.CommitReservation(
        reservation_pb2.CommitReservationRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    assert committed.committed_count == 2
    again = await services.inventory.CommitReservation(
        reservation_pb2.CommitReservationRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    assert again.committed_count == 2
    assert not again.HasField("error")
    states = await seat_states(services, event_id)
    assert states["A-1"] == ("SOLD", "h1")

    released = await services.inventory.ReleaseHold(
        reservation_pb2.ReleaseHoldRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    assert error_code(released) == common_pb2.ERROR_CODE_FAILED_PRECONDITION
    taken = await reserve(services, event_id, "h2", seat_ids=["A-1"])
    assert error_code(taken) == common_pb2.ERROR_CODE_INVENTORY_CONFLICT


async def test_release_frees_the_seats_and_is_idempotent(services: Booking) -> None:
    event_id = await services.seed()
    await reserve(services, event_id, "h1", quantity=3)
    first = await services.inventory.ReleaseHold(
        reservation_pb2.ReleaseHoldRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    second = await services.inventory.ReleaseHold(
        reservation_pb2.ReleaseHoldRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    assert (first.released_count, second.released_count) == (3, 0)
    assert await available_count(services, event_id) == 100
    assert {status for status, _ in (await seat_states(services, event_id)).values()} == {
        "AVAILABLE"
    }
    # A released hold is not silently re-created under the same id.
    replay = await reserve(services, event_id, "h1", quantity=3)
    assert error_code(replay) == common_pb2.ERROR_CODE_FAILED_PRECONDITION


async def test_a_hold_is_all_or_nothing(services: Booking) -> None:
    event_id = await services.seed()
    await reserve(services, event_id, "h1", seat_ids=["C-5"])
    refused = await reserve(services, event_id, "h2", seat_ids=["C-4", "C-5", "C-6"])
    assert error_code(refused) == common_pb2.ERROR_CODE_INVENTORY_CONFLICT
    assert "C-5" in refused.error.message
    assert not refused.seats
    states = await seat_states(services, event_id)
    assert states["C-4"] == ("AVAILABLE", None)
    assert states["C-6"] == ("AVAILABLE", None)
    # The refused hold id left nothing behind: it can be used again.
    retried = await reserve(services, event_id, "h2", seat_ids=["C-4", "C-6"])
    assert not retried.HasField("error")


async def test_best_available_takes_front_rows_first(services: Booking) -> None:
    event_id = await services.seed()
    first = await reserve(services, event_id, "h1", quantity=4)
    assert [seat.seat_id for seat in first.seats] == ["A-1", "A-2", "A-3", "A-4"]
    await reserve(services, event_id, "h2", seat_ids=["A-5"])
    second = await reserve(services, event_id, "h3", quantity=2)
    assert [seat.seat_id for seat in second.seats] == ["A-6", "A-7"]


async def test_quantity_beyond_the_free_seats_is_insufficient_inventory(
    services: Booking,
) -> None:
    event_id = await services.seed(HUNDRED_SEATS[:3])
    await reserve(services, event_id, "h1", quantity=2)
    refused = await reserve(services, event_id, "h2", quantity=2)
    assert error_code(refused) == common_pb2.ERROR_CODE_INSUFFICIENT_INVENTORY
    assert (await seat_states(services, event_id))[HUNDRED_SEATS[2].seat_id][0] == "AVAILABLE"


async def test_unknown_events_and_seats_are_not_found(services: Booking) -> None:
    event_id = await services.seed()
    cases: list[Any] = [
        await reserve(services, "evt_nope", "h1", quantity=1),
        await reserve(services, event_id, "h2", seat_ids=["A-1", "Z-99"]),
        await services.inventory.CheckAvailability(
            reservation_pb2.CheckAvailabilityRequest(event_id="evt_nope"), timeout=5
        ),
        await services.inventory.CommitReservation(
            reservation_pb2.CommitReservationRequest(event_id=event_id, hold_id="nope"), timeout=5
        ),
    ]
    assert [error_code(response) for response in cases] == [common_pb2.ERROR_CODE_NOT_FOUND] * 4
    assert "Z-99" in cases[1].error.message
    assert (await seat_states(services, event_id))["A-1"] == ("AVAILABLE", None)


async def test_malformed_requests_are_invalid_arguments(sqlite_services: Booking) -> None:
    services = sqlite_services
    event_id = await services.seed()
    bad = [
        await reserve(services, "", "h", quantity=1),
        await reserve(services, event_id, "", quantity=1),
        await reserve(services, event_id, "h", quantity=0),
        await reserve(services, event_id, "h", quantity=11),
        await reserve(services, event_id, "h", seat_ids=["A-1", "A-1"]),
        await reserve(services, event_id, "h", seat_ids=["A-1"], quantity=2),
        await reserve(services, event_id, "h", seat_ids=["A 1; DROP"]),
        await reserve(services, event_id, "h", quantity=1, ttl=-5),
    ]
    assert [error_code(r) for r in bad] == [common_pb2.ERROR_CODE_INVALID_ARGUMENT] * len(bad)
    assert await available_count(services, event_id) == 100


async def test_a_hold_is_idempotent_per_hold_id(services: Booking) -> None:
    event_id = await services.seed()
    first = await reserve(services, event_id, "h1", quantity=2)
    again = await reserve(services, event_id, "h1", quantity=2)
    assert [s.seat_id for s in again.seats] == [s.seat_id for s in first.seats]
    assert again.expires_at == first.expires_at
    assert await available_count(services, event_id) == 98
    conflict = await reserve(services, event_id, "h1", quantity=3)
    assert error_code(conflict) == common_pb2.ERROR_CODE_IDEMPOTENCY_CONFLICT

    # Concurrent duplicates of one request hold one set of seats.
    duplicates = await asyncio.gather(
        *(reserve(services, event_id, "h_dup", seat_ids=["D-1", "D-2"]) for _ in range(10))
    )
    assert [r.error.message for r in duplicates if r.HasField("error")] == []
    assert await available_count(services, event_id) == 96


async def test_an_expired_hold_frees_its_seats_for_others(services: Booking) -> None:
    event_id = await services.seed()
    await reserve(services, event_id, "h_short", seat_ids=["E-1", "E-2"], ttl=1)
    refused = await reserve(services, event_id, "h_other", seat_ids=["E-1"])
    assert error_code(refused) == common_pb2.ERROR_CODE_INVENTORY_CONFLICT
    await asyncio.sleep(1.1)
    assert await available_count(services, event_id) == 100
    taken = await reserve(services, event_id, "h_other", seat_ids=["E-1"])
    assert not taken.HasField("error")
    assert (await seat_states(services, event_id))["E-1"] == ("HELD", "h_other")
    # The first hold lost a seat: it can neither be committed nor replayed any more...
    commit = await services.inventory.CommitReservation(
        reservation_pb2.CommitReservationRequest(event_id=event_id, hold_id="h_short"), timeout=5
    )
    assert error_code(commit) == common_pb2.ERROR_CODE_RESERVATION_EXPIRED
    assert (await seat_states(services, event_id))["E-2"] == ("HELD", "h_short")
    # ...and releasing it gives back only the seat it still has.
    released = await services.inventory.ReleaseHold(
        reservation_pb2.ReleaseHoldRequest(event_id=event_id, hold_id="h_short"), timeout=5
    )
    assert released.released_count == 1
    assert (await seat_states(services, event_id))["E-1"] == ("HELD", "h_other")


async def test_an_expired_hold_nobody_took_still_commits(sqlite_services: Booking) -> None:
    """Expiry is the reservation service's decision; the inventory only prevents a seat
    going to two holds."""
    services = sqlite_services
    event_id = await services.seed()
    await reserve(services, event_id, "h1", seat_ids=["F-1"], ttl=1)
    await asyncio.sleep(1.1)
    commit = await services.inventory.CommitReservation(
        reservation_pb2.CommitReservationRequest(event_id=event_id, hold_id="h1"), timeout=5
    )
    assert commit.committed_count == 1
    assert (await seat_states(services, event_id))["F-1"] == ("SOLD", "h1")


async def test_check_availability_of_named_seats(services: Booking) -> None:
    event_id = await services.seed()
    await reserve(services, event_id, "h1", seat_ids=["G-1"])
    response = await services.inventory.CheckAvailability(
        reservation_pb2.CheckAvailabilityRequest(event_id=event_id, seat_ids=["G-1", "G-2"]),
        timeout=5,
    )
    assert not response.available
    assert [seat.seat_id for seat in response.available_seats] == ["G-2"]
    assert response.available_count == 1
    best = await services.inventory.CheckAvailability(
        reservation_pb2.CheckAvailabilityRequest(event_id=event_id, quantity=3), timeout=5
    )
    assert best.available
    assert [seat.seat_id for seat in best.available_seats] == ["A-1", "A-2", "A-3"]
    assert best.available_count == 99


async def test_the_hold_table_counts_match(services: Booking) -> None:
    event_id = await services.seed()
    await reserve(services, event_id, "h1", quantity=5)
    async with services.running.inventory.database.read() as conn:
        count = (
            await conn.execute(
                select(tables.holds.c.seat_count).where(tables.holds.c.hold_id == "h1")
            )
        ).scalar_one()
        held = (
            await conn.execute(
                select(func.count()).select_from(tables.seats).where(tables.seats.c.hold_id == "h1")
            )
        ).scalar_one()
    assert count == held == 5
