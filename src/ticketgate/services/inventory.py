"""Inventory: seat maps, holds with a TTL, commit and release, and never a seat sold twice.

Every hold is one write transaction of conditional UPDATEs: a seat moves to HELD only
`WHERE status = 'AVAILABLE' OR (status = 'HELD' AND hold_expires_ms < now)`, the row count
is checked, and any shortfall rolls the whole hold back (all or nothing). The candidate rows
are locked first in one global order (seat id for named seats; best-available rows with
`FOR UPDATE SKIP LOCKED`), so concurrent holds on PostgreSQL neither deadlock nor queue
behind each other; on SQLite the transaction holds the write lock from its first statement
(`BEGIN IMMEDIATE`). Expired holds need no sweeper here: the condition above treats them as
free, and the reservation service releases the holds it abandons.

One person gets at most `max_seats_per_user` seats of an event (BOOKING_MAX_SEATS_PER_USER),
held or sold, counted in the same write transaction that takes the seats. Parallel holds of
one user are serialised for that count: on PostgreSQL by a transaction-scoped advisory lock
on (event, user), taken before any seat lock (so the lock order stays global and deadlock
free); on SQLite by the write lock every hold already holds.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, FromClause, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketgate.database import Database
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import (
    AnyRow,
    Context,
    ServiceError,
    invalid,
    not_found,
    now_ms,
    rpc,
    timestamp_from_ms,
    write_transaction,
)

log = logging.getLogger("ticketgate.services.inventory")

DEMO_EVENT_ID = "evt_2025_1001"
CURRENCY = "KRW"
MAX_SEATS_PER_HOLD = 10
DEFAULT_MAX_SEATS_PER_USER = 4
MAX_HOLD_TTL_SEC = 3_600
EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SEAT_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
HOLD_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

# Korean concert grades, front to back: (section, price in won).
DEMO_GRADES: Mapping[str, tuple[str, int]] = {
    "A": ("VIP", 165_000),
    "B": ("VIP", 165_000),
    "C": ("R", 143_000),
    "D": ("R", 143_000),
    "E": ("R", 143_000),
    "F": ("S", 121_000),
    "G": ("S", 121_000),
    "H": ("S", 121_000),
    "I": ("A", 110_000),
    "J": ("A", 110_000),
}
DEMO_SEATS_PER_ROW = 30


@dataclass(frozen=True, slots=True)
class Seat:
    seat_id: str
    section: str
    row: str
    number: int
    price: int
    currency: str = CURRENCY
    rank: int = 0

    def to_proto(self) -> common_pb2.Seat:
        return common_pb2.Seat(
            seat_id=self.seat_id,
            section=self.section,
            row=self.row,
            number=self.number,
            price=common_pb2.Money(amount=self.price, currency=self.currency),
        )


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    seats: tuple[Seat, ...]
    expires_ms: int


def seat_map(
    grades: Mapping[str, tuple[str, int]], seats_per_row: int, currency: str = CURRENCY
) -> list[Seat]:
    """Seats named `<row>-<number>`, ranked front row first (best available = lowest rank)."""
    seats: list[Seat] = []
    for row_index, (row, (section, price)) in enumerate(grades.items()):
        for number in range(1, seats_per_row + 1):
            seats.append(
                Seat(
                    seat_id=f"{row}-{number}",
                    section=section,
                    row=row,
                    number=number,
                    price=price,
                    currency=currency,
                    rank=row_index * 10_000 + number,
                )
            )
    return seats


def demo_seat_map() -> list[Seat]:
    """The demo event's 300 seats: rows A–J × 30, 110,000–165,000 won by grade."""
    return seat_map(DEMO_GRADES, DEMO_SEATS_PER_ROW)


def _seat(row: AnyRow) -> Seat:
    return Seat(row.seat_id, row.section, row.row, row.number, row.price, row.currency, row.rank)


_SEAT_COLUMNS = (
    tables.seats.c.seat_id,
    tables.seats.c.section,
    tables.seats.c.row,
    tables.seats.c.number,
    tables.seats.c.price,
    tables.seats.c.currency,
    tables.seats.c.rank,
    tables.seats.c.status,
    tables.seats.c.hold_expires_ms,
)


def _free(now: int, table: FromClause = tables.seats) -> ColumnElement[bool]:
    """Holdable: available, or held by a hold that has expired."""
    seats = table.c
    return or_(
        seats.status == tables.SEAT_AVAILABLE,
        and_(seats.status == tables.SEAT_HELD, seats.hold_expires_ms < now),
    )


def _rank(item: Seat | AnyRow) -> int:
    return int(item.rank)


class _Shortfall(Exception):
    """Inside a hold's transaction: fewer seats than asked; roll back, then explain."""


def _is_free(row: AnyRow, now: int) -> bool:
    if row.status == tables.SEAT_AVAILABLE:
        return True
    return bool(
        row.status == tables.SEAT_HELD
        and row.hold_expires_ms is not None
        and row.hold_expires_ms < now
    )


def validate_event(event_id: str) -> None:
    if EVENT_ID.fullmatch(event_id) is None:
        raise invalid("event_id must be 1-64 characters of letters, digits and _ . : -")


def validate_selection(seat_ids: Sequence[str], quantity: int) -> tuple[list[str], int]:
    """The named seats (sorted, the lock order) or the quantity to pick; refuses nonsense."""
    if seat_ids:
        if len(set(seat_ids)) != len(seat_ids):
            raise invalid("seat_ids contains duplicates")
        if quantity not in (0, len(seat_ids)):
            raise invalid("quantity must be 0 or the number of seat_ids")
        if len(seat_ids) > MAX_SEATS_PER_HOLD:
            raise invalid(f"at most {MAX_SEATS_PER_HOLD} seats per hold")
        for seat_id in seat_ids:
            if SEAT_ID.fullmatch(seat_id) is None:
                raise invalid(f"seat id {seat_id[:40]!r} is malformed")
        return sorted(seat_ids), len(seat_ids)
    if not 1 <= quantity <= MAX_SEATS_PER_HOLD:
        raise invalid(f"quantity must be between 1 and {MAX_SEATS_PER_HOLD} without seat_ids")
    return [], quantity


def _over_limit(limit: int, already: int) -> ServiceError:
    return ServiceError(
        common_pb2.ERROR_CODE_QUOTA_EXCEEDED,
        f"at most {limit} seats per person for this event; {already} already held or bought",
    )


def request_key(named: Sequence[str], quantity: int) -> str:
    return "seats:" + ",".join(named) if named else f"quantity:{quantity}"


class InventoryStore:
    """The inventory's SQL: safe to share across tasks, processes and replicas."""

    def __init__(
        self,
        database: Database,
        *,
        default_ttl_sec: int = 60,
        max_seats_per_user: int = DEFAULT_MAX_SEATS_PER_USER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.default_ttl_sec = default_ttl_sec
        self.max_seats_per_user = max_seats_per_user
        self._clock = clock
        self._events: set[str] = set()  # known to have a seat map
        database.register(tables.inventory_metadata)

    async def seed_event(self, event_id: str, seats: Iterable[Seat]) -> int:
        """Create the event's seats that do not exist yet (never touches existing ones);
        returns how many seats the event has."""
        validate_event(event_id)
        now = now_ms(self._clock)
        rows = [
            {
                "event_id": event_id,
                "seat_id": seat.seat_id,
                "section": seat.section,
                "row": seat.row,
                "number": seat.number,
                "rank": seat.rank,
                "price": seat.price,
                "currency": seat.currency,
                "status": tables.SEAT_AVAILABLE,
                "hold_id": None,
                "hold_expires_ms": None,
                "updated_ms": now,
            }
            for seat in seats
        ]

        async def insert(conn: AsyncConnection) -> int:
            if rows:
                statement = self.database.insert(tables.seats).on_conflict_do_nothing()
                await conn.execute(statement, rows)
            return await self._seat_count(conn, event_id)

        return await write_transaction(self.database, insert)

    async def _seat_count(self, conn: AsyncConnection, event_id: str) -> int:
        count = await conn.execute(
            select(func.count())
            .select_from(tables.seats)
            .where(tables.seats.c.event_id == event_id)
        )
        return int(count.scalar_one())

    async def _require_event(self, conn: AsyncConnection, event_id: str) -> None:
        if event_id in self._events:  # seat maps are never deleted
            return
        if await self._seat_count(conn, event_id) == 0:
            raise not_found(f"event {event_id!r} has no seat map")
        self._events.add(event_id)

    # --- holds ---------------------------------------------------------------------------

    async def reserve(
        self,
        event_id: str,
        seat_ids: Sequence[str],
        quantity: int,
        hold_id: str,
        ttl_sec: int = 0,
        user_id: str = "",
    ) -> Hold:
        """Hold the named seats, or the `quantity` best available, all or nothing.

        Idempotent per hold_id: the same request again answers the same hold (even once
        committed); a different request under the same hold_id is an IDEMPOTENCY_CONFLICT.

        A read first answers replays and refuses what cannot succeed right now, outside any
        write lock: when 2,000 fans want the last 100 seats, 1,900 refusals must not queue
        for the writer. The write transaction alone decides who gets a seat.
        """
        validate_event(event_id)
        if HOLD_ID.fullmatch(hold_id) is None:
            raise invalid("hold_id must be 1-64 characters of letters, digits and _ . : -")
        named, count = validate_selection(seat_ids, quantity)
        ttl = ttl_sec or self.default_ttl_sec
        if not 1 <= ttl <= MAX_HOLD_TTL_SEC:
            raise invalid(f"hold_ttl_seconds must be between 1 and {MAX_HOLD_TTL_SEC}")
        request = request_key(named, count)

        if user_id and count > self.max_seats_per_user:
            raise _over_limit(self.max_seats_per_user, 0)

        async def hold(conn: AsyncConnection) -> Hold:
            now = now_ms(self._clock)
            expires = now + ttl * 1000
            seats = tables.seats.c
            if user_id:
                await self._check_user_limit(conn, event_id, user_id[:128], count, now)
            if named:
                if not self.database.is_sqlite:
                    # Lock in one global order (seat id): overlapping holds cannot deadlock.
                    await conn.execute(
                        select(seats.seat_id)
                        .where(seats.event_id == event_id, seats.seat_id.in_(named))
                        .order_by(seats.seat_id)
                        .with_for_update()
                    )
                chosen: ColumnElement[bool] = seats.seat_id.in_(named)
            elif self.database.is_sqlite:
                # One statement: SQLite runs an uncorrelated IN (SELECT ...) once, and this
                # transaction holds the write lock.
                candidate = tables.seats.alias("candidate")
                chosen = seats.seat_id.in_(
                    select(candidate.c.seat_id)
                    .where(candidate.c.event_id == event_id, _free(now, candidate))
                    .order_by(candidate.c.rank)
                    .limit(count)
                )
            else:
                # Pick and lock first, skipping seats other holds are taking right now. Not
                # as a sub-select of the UPDATE: PostgreSQL may re-run that per row (nested
                # loop semi join) and so pick more seats than asked.
                picked = await conn.execute(
                    select(seats.seat_id)
                    .where(seats.event_id == event_id, _free(now))
                    .order_by(seats.rank)
                    .limit(count)
                    .with_for_update(skip_locked=True)
                )
                chosen = seats.seat_id.in_([row.seat_id for row in picked])
            rows = (
                await conn.execute(
                    update(tables.seats)
                    .where(seats.event_id == event_id, chosen, _free(now))
                    .values(
                        status=tables.SEAT_HELD,
                        hold_id=hold_id,
                        hold_expires_ms=expires,
                        updated_ms=now,
                    )
                    .returning(*_SEAT_COLUMNS)
                )
            ).all()
            if len(rows) != count:
                raise _Shortfall  # rolls back the seats already taken
            claimed = await conn.execute(
                self.database.insert(tables.holds)
                .values(
                    hold_id=hold_id,
                    event_id=event_id,
                    user_id=user_id[:128],
                    request=request,
                    seat_count=count,
                    status=tables.HOLD_HELD,
                    expires_ms=expires,
                    created_ms=now,
                )
                .on_conflict_do_nothing()
                .returning(tables.holds.c.hold_id)
            )
            if claimed.first() is None:
                raise _Shortfall  # a concurrent duplicate made this hold first
            return Hold(hold_id, tuple(sorted(map(_seat, rows), key=_rank)), expires)

        for _ in range(2):
            async with self.database.read() as conn:
                existing = await self._existing_or_refusal(
                    conn, hold_id, event_id, request, named, count
                )
            if existing is not None:
                return existing
            try:
                return await write_transaction(self.database, hold)
            except _Shortfall:
                pass  # lost a race: to a duplicate of this request, or for the seats
        if named:
            raise ServiceError(
                common_pb2.ERROR_CODE_INVENTORY_CONFLICT, "seats were taken concurrently"
            )
        raise ServiceError(
            common_pb2.ERROR_CODE_INSUFFICIENT_INVENTORY, "seats were taken concurrently"
        )

    async def _check_user_limit(
        self, conn: AsyncConnection, event_id: str, user_id: str, count: int, now: int
    ) -> None:
        """Refuse a hold that would give `user_id` more than the cap of this event's seats.

        Inside the hold's write transaction: concurrent holds of the same user wait here for
        each other, so each counts the seats the others took.
        """
        if not self.database.is_sqlite:
            await conn.execute(
                select(
                    func.pg_advisory_xact_lock(func.hashtextextended(f"{event_id}\n{user_id}", 0))
                )
            )
        holds = tables.holds.c
        owned = await conn.execute(
            select(func.coalesce(func.sum(holds.seat_count), 0)).where(
                holds.event_id == event_id,
                holds.user_id == user_id,
                or_(
                    holds.status == tables.HOLD_COMMITTED,
                    and_(holds.status == tables.HOLD_HELD, holds.expires_ms >= now),
                ),
            )
        )
        already = int(owned.scalar_one())
        if already + count > self.max_seats_per_user:
            raise _over_limit(self.max_seats_per_user, already)

    async def _existing_or_refusal(
        self,
        conn: AsyncConnection,
        hold_id: str,
        event_id: str,
        request: str,
        named: Sequence[str],
        count: int,
    ) -> Hold | None:
        """The hold this request already made, or a refusal; None to go ahead and hold.

        The seats are checked before the hold: a duplicate that took them committed before
        this snapshot, so its hold row is visible to the lookup that follows.
        """
        try:
            await self._precheck(conn, event_id, named, count)
        except ServiceError:
            existing = await self._replay(conn, hold_id, event_id, request)
            if existing is not None:
                return existing
            raise
        return await self._replay(conn, hold_id, event_id, request)

    async def _precheck(
        self, conn: AsyncConnection, event_id: str, named: Sequence[str], count: int
    ) -> None:
        """Refuse, with the precise reason, a hold that cannot succeed on this snapshot."""
        now = now_ms(self._clock)
        seats = tables.seats.c
        if named:
            rows = (
                await conn.execute(
                    select(*_SEAT_COLUMNS).where(
                        seats.event_id == event_id, seats.seat_id.in_(named)
                    )
                )
            ).all()
            if len(rows) != len(named):
                await self._require_event(conn, event_id)
                missing = sorted(set(named) - {row.seat_id for row in rows})
                raise not_found(f"no such seats in {event_id}: {', '.join(missing)}")
            taken = sorted(row.seat_id for row in rows if not _is_free(row, now))
            if taken:
                raise ServiceError(
                    common_pb2.ERROR_CODE_INVENTORY_CONFLICT,
                    f"seats not available: {', '.join(taken)}",
                )
            return
        free = (
            await conn.execute(
                select(seats.seat_id).where(seats.event_id == event_id, _free(now)).limit(count)
            )
        ).all()
        if len(free) < count:
            await self._require_event(conn, event_id)
            raise ServiceError(
                common_pb2.ERROR_CODE_INSUFFICIENT_INVENTORY,
                f"{count} seats requested, {len(free)} available",
            )

    async def _lock_hold(self, conn: AsyncConnection, hold_id: str) -> AnyRow | None:
        return (
            await conn.execute(
                select(tables.holds).where(tables.holds.c.hold_id == hold_id).with_for_update()
            )
        ).first()

    async def _hold_seats(
        self, conn: AsyncConnection, event_id: str, hold_id: str
    ) -> Sequence[AnyRow]:
        """The seats still held by (or sold to) this hold, locked in seat id order."""
        seats = tables.seats.c
        rows = (
            await conn.execute(
                select(*_SEAT_COLUMNS)
                .where(
                    seats.event_id == event_id,
                    seats.hold_id == hold_id,
                    seats.status.in_((tables.SEAT_HELD, tables.SEAT_SOLD)),
                )
                .order_by(seats.seat_id)
                .with_for_update()
            )
        ).all()
        return sorted(rows, key=_rank)

    async def _replay(
        self, conn: AsyncConnection, hold_id: str, event_id: str, request: str
    ) -> Hold | None:
        """The existing hold `hold_id` made by this same request; None when there is none."""
        hold = (
            await conn.execute(select(tables.holds).where(tables.holds.c.hold_id == hold_id))
        ).first()
        if hold is None:
            return None
        if hold.event_id != event_id or hold.request != request:
            raise ServiceError(
                common_pb2.ERROR_CODE_IDEMPOTENCY_CONFLICT,
                "hold_id was already used for a different request",
            )
        if hold.status == tables.HOLD_RELEASED:
            raise ServiceError(common_pb2.ERROR_CODE_FAILED_PRECONDITION, "hold was released")
        seats = tables.seats.c
        rows = (
            await conn.execute(
                select(*_SEAT_COLUMNS).where(
                    seats.event_id == event_id,
                    seats.hold_id == hold_id,
                    seats.status.in_((tables.SEAT_HELD, tables.SEAT_SOLD)),
                )
            )
        ).all()
        if len(rows) != hold.seat_count:
            raise ServiceError(
                common_pb2.ERROR_CODE_RESERVATION_EXPIRED,
                "hold expired and some of its seats were taken",
            )
        return Hold(hold_id, tuple(sorted(map(_seat, rows), key=_rank)), hold.expires_ms)

    async def commit(self, event_id: str, hold_id: str) -> int:
        """Sell the hold's seats (HELD → SOLD); idempotent.

        An expired hold still commits if none of its seats went to someone else: expiry is
        the reservation service's call, this only guarantees no seat is sold twice.
        """
        validate_event(event_id)

        async def sell(conn: AsyncConnection) -> int:
            hold = await self._lock_hold(conn, hold_id)
            if hold is None or hold.event_id != event_id:
                raise not_found(f"no hold {hold_id!r} for {event_id}")
            if hold.status == tables.HOLD_RELEASED:
                raise ServiceError(common_pb2.ERROR_CODE_FAILED_PRECONDITION, "hold was released")
            rows = await self._hold_seats(conn, event_id, hold_id)
            if hold.status == tables.HOLD_COMMITTED:
                return len(rows)
            if len(rows) != hold.seat_count:
                raise ServiceError(
                    common_pb2.ERROR_CODE_RESERVATION_EXPIRED,
                    "hold expired and some of its seats were taken",
                )
            now = now_ms(self._clock)
            seats = tables.seats.c
            await conn.execute(
                update(tables.seats)
                .where(
                    seats.event_id == event_id,
                    seats.hold_id == hold_id,
                    seats.status == tables.SEAT_HELD,
                )
                .values(status=tables.SEAT_SOLD, hold_expires_ms=None, updated_ms=now)
            )
            await conn.execute(
                update(tables.holds)
                .where(tables.holds.c.hold_id == hold_id)
                .values(status=tables.HOLD_COMMITTED)
            )
            return len(rows)

        return await write_transaction(self.database, sell)

    async def release(self, event_id: str, hold_id: str) -> int:
        """Give the hold's seats back (HELD → AVAILABLE); idempotent, 0 for an unknown hold.

        Seats that expired and went to another hold are not touched: they carry that hold's
        id now.
        """
        validate_event(event_id)

        async def give_back(conn: AsyncConnection) -> int:
            hold = await self._lock_hold(conn, hold_id)
            if hold is None:
                return 0
            if hold.event_id != event_id:
                raise not_found(f"no hold {hold_id!r} for {event_id}")
            if hold.status == tables.HOLD_COMMITTED:
                raise ServiceError(
                    common_pb2.ERROR_CODE_FAILED_PRECONDITION, "hold is committed: seats are sold"
                )
            await self._hold_seats(conn, event_id, hold_id)  # lock order: seat id
            seats = tables.seats.c
            result = await conn.execute(
                update(tables.seats)
                .where(
                    seats.event_id == event_id,
                    seats.hold_id == hold_id,
                    seats.status == tables.SEAT_HELD,
                )
                .values(
                    status=tables.SEAT_AVAILABLE,
                    hold_id=None,
                    hold_expires_ms=None,
                    updated_ms=now_ms(self._clock),
                )
            )
            await conn.execute(
                update(tables.holds)
                .where(tables.holds.c.hold_id == hold_id)
                .values(status=tables.HOLD_RELEASED)
            )
            return int(result.rowcount)

        return await write_transaction(self.database, give_back)

    async def availability(
        self, event_id: str, seat_ids: Sequence[str], quantity: int
    ) -> tuple[bool, list[Seat], int]:
        """(available?, the free seats among those asked, how many are free).

        With seat_ids: whether all of them are free. Without: whether `quantity` (default 1)
        seats are free, listing the best `quantity` (all free seats when quantity is 0).
        """
        validate_event(event_id)
        if seat_ids:
            named, _ = validate_selection(seat_ids, 0)
        elif quantity < 0:
            raise invalid("quantity must not be negative")
        now = now_ms(self._clock)
        seats = tables.seats.c
        async with self.database.read() as conn:
            if seat_ids:
                rows = (
                    await conn.execute(
                        select(*_SEAT_COLUMNS)
                        .where(seats.event_id == event_id, seats.seat_id.in_(named))
                        .order_by(seats.rank)
                    )
                ).all()
                if len(rows) != len(named):
                    await self._require_event(conn, event_id)
                    missing = sorted(set(named) - {row.seat_id for row in rows})
                    raise not_found(f"no such seats in {event_id}: {', '.join(missing)}")
                free = [_seat(row) for row in rows if _is_free(row, now)]
                return len(free) == len(named), free, len(free)
            free_count = int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(tables.seats)
                        .where(seats.event_id == event_id, _free(now))
                    )
                ).scalar_one()
            )
            if free_count == 0:
                await self._require_event(conn, event_id)
            listing = select(*_SEAT_COLUMNS).where(seats.event_id == event_id, _free(now))
            listing = listing.order_by(seats.rank)
            if quantity > 0:
                listing = listing.limit(quantity)
            rows = (await conn.execute(listing)).all()
        return free_count >= max(quantity, 1), [_seat(row) for row in rows], free_count


class InventoryServicer(reservation_pb2_grpc.InventoryServiceServicer):
    """The gRPC face of `InventoryStore`: refusals in the response's `error` field."""

    def __init__(self, store: InventoryStore) -> None:
        self.store = store

    @rpc(reservation_pb2.CheckAvailabilityResponse)
    async def CheckAvailability(
        self, request: reservation_pb2.CheckAvailabilityRequest, context: Context
    ) -> reservation_pb2.CheckAvailabilityResponse:
        available, seats, count = await self.store.availability(
            request.event_id, list(request.seat_ids), request.quantity
        )
        return reservation_pb2.CheckAvailabilityResponse(
            available=available,
            available_seats=[seat.to_proto() for seat in seats],
            available_count=count,
        )

    @rpc(reservation_pb2.ReserveSeatResponse, "hold_id")
    async def ReserveSeat(
        self, request: reservation_pb2.ReserveSeatRequest, context: Context
    ) -> reservation_pb2.ReserveSeatResponse:
        hold = await self.store.reserve(
            request.event_id,
            list(request.seat_ids),
            request.quantity,
            request.hold_id,
            request.hold_ttl_seconds,
            request.user_id,
        )
        return reservation_pb2.ReserveSeatResponse(
            hold_id=hold.hold_id,
            seats=[seat.to_proto() for seat in hold.seats],
            expires_at=timestamp_from_ms(hold.expires_ms),
        )

    @rpc(reservation_pb2.CommitReservationResponse)
    async def CommitReservation(
        self, request: reservation_pb2.CommitReservationRequest, context: Context
    ) -> reservation_pb2.CommitReservationResponse:
        count = await self.store.commit(request.event_id, request.hold_id)
        return reservation_pb2.CommitReservationResponse(committed_count=count)

    @rpc(reservation_pb2.ReleaseHoldResponse)
    async def ReleaseHold(
        self, request: reservation_pb2.ReleaseHoldRequest, context: Context
    ) -> reservation_pb2.ReleaseHoldResponse:
        count = await self.store.release(request.event_id, request.hold_id)
        return reservation_pb2.ReleaseHoldResponse(released_count=count)
