"""Seats checked through the reservation service itself (gRPC), when the rehearsal can reach
it: every reservation a fan created is read back, so "sold" and "sold twice" are the
service's records, not only what the fans saw. A webhook that confirmed after a fan gave up
counts as sold here, and a fan that saw CONFIRMED for an order the service does not hold as
confirmed is reported."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.rehearsal.record import FanRecord

CONCURRENCY = 32
TIMEOUT_SEC = 5.0


async def check_reservations(address: str, records: list[FanRecord]) -> dict[str, Any]:
    created = [fan for fan in records if fan.reservation_id]
    gate = asyncio.Semaphore(CONCURRENCY)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reservation_pb2_grpc.ReservationServiceStub(channel)

        async def read(fan: FanRecord) -> reservation_pb2.GetReservationResponse | str:
            async with gate:
                try:
                    return await stub.GetReservation(
                        reservation_pb2.GetReservationRequest(
                            reservation_id=fan.reservation_id, user_id=fan.user_id
                        ),
                        timeout=TIMEOUT_SEC,
                    )
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name

        answers = await asyncio.gather(*(read(fan) for fan in created))
    owners: dict[str, list[str]] = {}
    unreadable: dict[str, int] = {}
    fan_saw_confirmed_service_not: list[str] = []
    confirmed = 0
    for fan, answer in zip(created, answers, strict=True):
        if isinstance(answer, str):
            unreadable[answer] = unreadable.get(answer, 0) + 1
            continue
        is_confirmed = answer.status == reservation_pb2.RESERVATION_STATUS_CONFIRMED
        if fan.sold and not is_confirmed:
            fan_saw_confirmed_service_not.append(fan.reservation_id)
        if is_confirmed:
            confirmed += 1
            for seat in answer.reserved_seats:
                owners.setdefault(seat.seat_id, []).append(fan.reservation_id)
    twice = {seat: ids for seat, ids in owners.items() if len(ids) > 1}
    return {
        "address": address,
        "reservations_read": len(created) - sum(unreadable.values()),
        "unreadable": unreadable,
        "orders": confirmed,
        "sold": len(owners) + sum(len(ids) - 1 for ids in twice.values()),
        "sold_twice": len(twice),
        "sold_twice_seats": dict(sorted(twice.items())[:100]),
        "fan_saw_confirmed_service_not": fan_saw_confirmed_service_not[:100],
    }
