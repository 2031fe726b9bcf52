"""The one protocol both queue stores implement (Redis for production, memory embedded).

Every method is one atomic step on one event: for Redis, one Lua script in one round trip;
for memory, one synchronous block with no await inside. The store owns the clock (Redis TIME),
so pods with skewed clocks still agree on order and ages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ticketgate.waitingroom.model import (
    ClaimOutcome,
    EnterResult,
    EventOverrides,
    EventStats,
    JoinResult,
    LeaveOutcome,
    Registration,
    StatusResult,
)


class QueueStore(Protocol):
    name: str

    async def start(self) -> None:
        """Get ready to serve, once, before the first call (Redis loads its scripts here).

        Never fails because the store is unreachable: the app starts anyway and every call
        answers QueueUnavailable (503) until the store is back."""

    async def close(self) -> None:
        """Release what the store holds; no call is made after it."""

    async def join(self, event_id: str, user_id: str, idempotency_key: str) -> JoinResult:
        """Append a waiter at the tail (or return the user's or the key's existing place).

        Refuses (raises) a newcomer when the event is sold out (SoldOut) or closed
        (QueueClosed), a signed-in user admitted to the event already (UserAlreadyAdmitted),
        and, unless `auto_create_events`, an event nobody registered (EventNotFound)."""

    async def status(self, event_id: str, seq: int, joined_ms: int | None = None) -> StatusResult:
        """Read the waiter's place and refresh its heartbeat in the same step.

        `joined_ms` is the token's. A token issued before the event's sequence began (the
        store lost its data and counts from 1 again) names a newcomer's place now, so it is
        EXPIRED; the same check guards enter and leave. None skips it (no token at hand).
        """

    async def enter(self, event_id: str, seq: int, joined_ms: int, user_id: str) -> EnterResult:
        """Check eligibility, draw from the bucket, remove the waiter and arm the reservation.

        One admission per person and event: a user admitted once (with any token) is refused
        (USER_ADMITTED) in the same step, so parallel enters with several tokens grant one."""

    async def leave(
        self, event_id: str, seq: int, user_id: str, joined_ms: int | None = None
    ) -> LeaveOutcome:
        """Remove a waiter; everyone behind moves up by one."""

    async def sweep(self, event_id: str, batch: int) -> int:
        """Remove up to `batch` waiters unseen for the heartbeat TTL; return how many."""

    async def claim_reservation(
        self, event_id: str, seq: int, user_id: str, lease_id: str, lease_ms: int
    ) -> ClaimOutcome:
        """Lease the armed reservation to one attempt for `lease_ms`: GONE when expired, used
        or someone else's, BUSY while another attempt holds an unexpired lease."""

    async def settle_reservation(self, event_id: str, seq: int, lease_id: str, used: bool) -> None:
        """End an attempt: `used` uses the reservation up (whoever holds the lease now);
        otherwise only the lease `lease_id` is dropped and the reservation stays armed."""

    async def waiting_count(self, event_id: str) -> int:
        """How many are waiting for `event_id` now."""

    async def event_stats(self, event_id: str) -> EventStats:
        """Waiting count, admission counts, head age and overrides of one event, in one step."""

    async def configure(
        self,
        event_id: str,
        changes: Mapping[str, str],
        registration: Registration = Registration.ANY,
    ) -> tuple[EventOverrides, EventOverrides]:
        """Set (or, for an empty value, remove) override fields (model.OVERRIDE_FIELDS) in
        one atomic step; return the overrides before and after. Join, status and enter read
        them in their own step, so every worker sees a change on its next call.
        `registration` CREATE registers the event in the same step (EventExists when it is
        already); REGISTERED changes a registered event only (else EventNotFound)."""

    async def register_events(self, waiting: Mapping[str, int]) -> None:
        """Record events (with their waiting counts) in the registry that lists them; bounded,
        so made-up event ids cannot grow it without limit."""

    async def list_events(self, limit: int) -> list[str]:
        """Up to `limit` registered events, most waiters first (counts as last recorded)."""

    async def ping(self) -> bool:
        """True when the store answers now."""
