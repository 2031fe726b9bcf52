"""The waiting room as the HTTP edge sees it: tokens in, views out.

It verifies signatures before touching the store (a forged token costs no Redis call),
turns the store's raw facts into ETA, readiness and poll hints, and decides what one sweeper
round sweeps (the app runs the rounds).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from ticketgate.waitingroom.admission import AdmissionPolicy
from ticketgate.waitingroom.eta import Rate, poll_after_ms, rate_of, turn
from ticketgate.waitingroom.model import (
    Admission,
    AdmissionCounts,
    AdmissionsPaused,
    AdmissionThrottled,
    AlreadyAdmitted,
    ClaimOutcome,
    EnterOutcome,
    EventOverrides,
    EventState,
    Forbidden,
    Frontier,
    LeaveOutcome,
    NotReady,
    QueueError,
    QueueUnavailable,
    SoldOut,
    StatusView,
    TokenExpired,
    TokenNotFound,
    UserAlreadyAdmitted,
    WaiterState,
)
from ticketgate.waitingroom.settings import QueueSettings
from ticketgate.waitingroom.store import QueueStore
from ticketgate.waitingroom.tokens import (
    InvalidToken,
    ReservationClaims,
    TokenSigner,
    WaitingClaims,
)

EVENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
USER_ID_MAX = 128
NOT_READY_RETRY_SEC = 5.0
PAUSED_RETRY_SEC = 10.0
SWEEP_NOW_ROUNDS = 1_000  # an operator's sweep drains at most this many batches per call


@dataclass(frozen=True, slots=True)
class ReservationClaim:
    """One reservation attempt's claim on an armed reservation (see ClaimOutcome)."""

    outcome: ClaimOutcome
    event_id: str
    seq: int
    lease_id: str


_POLICY_CACHE = 1_024
# Release rates kept (one per event and millisecond at most: the counts' covered span and a
# refilling bucket move with the clock); emptied when full, so old instants do not pile up.
_RATE_CACHE = 1_024


# Enum members read on every status call: a module global is a dict look-up, a member read off
# its class goes through the enum metaclass' __getattr__ hook (~70 ns a read on 3.11; ~9 ns).
_WAITING = WaiterState.WAITING
_ADMITTED = WaiterState.ADMITTED
_PAUSED = EventState.PAUSED
_SOLD_OUT = EventState.SOLD_OUT


class InvalidEventId(QueueError):
    code = "INVALID_REQUEST"


class JoinOutcome:
    __slots__ = ("duplicate", "position", "waiting_token")

    def __init__(self, waiting_token: str, position: int, duplicate: bool) -> None:
        self.waiting_token = waiting_token
        self.position = position
        self.duplicate = duplicate


class QueueObserver(Protocol):
    """What instrumentation learns from the waiting room; metrics implement it, so the domain
    never imports them. The HTTP adapter reports join/status/enter/leave through the same
    observer; the domain reports what only it sees (sweeps, the wait of a granted enter)."""

    def operation(self, name: str, status: str) -> None:
        """`status` is "ok" or the error code (a small fixed set)."""

    def admitted(self, waited_ms: int) -> None:
        """A waiter was admitted `waited_ms` after joining."""


class WaitingRoom:
    def __init__(
        self, store: QueueStore, settings: QueueSettings, observer: QueueObserver | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.observer = observer
        self.signer = TokenSigner(settings.token_secret)
        self.active_events: set[str] = set()
        # The effective policies met so far (operators' overrides are few): none is built per call.
        self._policies: dict[tuple[int, int, float], AdmissionPolicy] = {}
        # Every fan polling one event at one instant gets the same policy and release rate
        # (eta.rate_of): measured once per (settings, counts, frontier), not once per fan.
        self._rates: dict[
            tuple[int, int, float, AdmissionCounts, Frontier], tuple[AdmissionPolicy, Rate]
        ] = {}

    @staticmethod
    def check_event_id(event_id: str) -> None:
        if EVENT_ID_PATTERN.fullmatch(event_id) is None:
            raise InvalidEventId(
                "event_id must be 1-64 characters of letters, digits, '_', '.', ':' or '-'"
            )

    def _claims(self, token: str) -> WaitingClaims:
        try:
            return self.signer.verify_waiting(token)
        except InvalidToken:
            raise TokenNotFound("waiting token not found") from None

    async def join(self, event_id: str, user_id: str, idempotency_key: str = "") -> JoinOutcome:
        if event_id not in self.active_events:  # those passed this check already
            self.check_event_id(event_id)
        result = await self.store.join(event_id, user_id, idempotency_key)
        self.active_events.add(event_id)
        token = self.signer.sign_waiting(
            WaitingClaims(event_id, result.seq, result.joined_ms, user_id)
        )
        return JoinOutcome(token, result.position, result.duplicate)

    async def status(self, token: str) -> StatusView:
        claims = self._claims(token)
        result = await self.store.status(claims.event_id, claims.seq, claims.joined_ms)
        self.active_events.add(claims.event_id)
        waited_ms = result.now_ms - claims.joined_ms
        if waited_ms < 0:
            waited_ms = 0
        event_state = result.event_state
        frontier = result.frontier
        if result.state is not _WAITING:
            return StatusView(
                "admitted" if result.state is _ADMITTED else "expired",
                0,
                0,
                1.0,
                waited_ms // 1000,
                False,
                0,
                frontier,
                event_state,
            )
        # The event's effective settings (an operator may have overridden them) and its
        # frontier, read in the same store step: ready means an enter now would be granted.
        # While admissions are paused or the event is sold out nobody is ready and no ETA is
        # promised (eta_sec null): nobody knows when, or whether, the door opens again.
        # (Identity, not `in` a set: an Enum member hashes in Python, on every call.)
        stalled = event_state is _PAUSED or event_state is _SOLD_OUT
        position = result.position
        counts = result.counts
        # The policy and the release rate of this event state: the same for every fan polling
        # the event at this instant, found with one look-up.
        window, capacity, refill = result.admission_window, result.capacity, result.refill_per_sec
        state_key = (window, capacity, refill, counts, frontier)
        kept = self._rates.get(state_key)
        if kept is None:
            policy = self._policies.get((window, capacity, refill))
            if policy is None:
                if len(self._policies) >= _POLICY_CACHE:
                    self._policies.clear()
                policy = self._policies[window, capacity, refill] = AdmissionPolicy.of(
                    self.settings, EventOverrides(window, capacity, refill)
                )
            if len(self._rates) >= _RATE_CACHE:
                self._rates.clear()
            kept = self._rates[state_key] = (policy, rate_of(policy, frontier, counts))
        policy, rate = kept
        # decide and estimate in one pass (eta.turn)
        granted, eta_ms, turn_in_ms = turn(
            policy, frontier.tokens + frontier.held, rate.per_sec, position, waited_ms
        )
        ready = granted and not stalled
        # positional (StatusView's field order): made on every call
        return StatusView(
            "ready" if ready else "waiting",
            position,
            None if stalled else 0 if ready else round(eta_ms / 1000) or 1,
            0.0 if stalled else rate.confidence,
            waited_ms // 1000,
            ready,
            poll_after_ms(ready, turn_in_ms, self.settings.heartbeat_ttl_ms, position),
            frontier,
            event_state,
        )

    async def enter(self, token: str, user_id: str) -> Admission:
        claims = self._claims(token)
        if claims.user_id and claims.user_id != user_id:
            raise Forbidden("this waiting token belongs to another user")
        result = await self.store.enter(claims.event_id, claims.seq, claims.joined_ms, user_id)
        outcome = result.outcome
        if outcome is EnterOutcome.GRANTED:
            if self.observer is not None:
                self.observer.admitted(max(0, result.now_ms - claims.joined_ms))
            ttl_ms = self.settings.reservation_token_ttl_ms
            reservation = self.signer.sign_reservation(
                ReservationClaims(claims.event_id, claims.seq, user_id, result.now_ms + ttl_ms)
            )
            return Admission(reservation_token=reservation, ttl_sec=ttl_ms // 1000)
        if outcome is EnterOutcome.NOT_READY:
            # Outside the window nobody knows when; still say "later", never "now".
            retry = result.retry_after_ms / 1000 if result.retry_after_ms else NOT_READY_RETRY_SEC
            raise NotReady(
                f"not ready to enter yet (position {result.position})", retry_after_sec=retry
            )
        if outcome is EnterOutcome.THROTTLED:
            raise AdmissionThrottled(
                "admissions are throttled; retry shortly",
                retry_after_sec=result.retry_after_ms / 1000,
            )
        if outcome is EnterOutcome.PAUSED:
            raise AdmissionsPaused(
                "admissions to this event are paused; keep polling status",
                retry_after_sec=PAUSED_RETRY_SEC,
            )
        if outcome is EnterOutcome.ALREADY_ADMITTED:
            raise AlreadyAdmitted("this waiting token was already admitted")
        if outcome is EnterOutcome.USER_ADMITTED:
            raise UserAlreadyAdmitted(
                "this user was admitted to this event already (one admission per person)"
            )
        if outcome is EnterOutcome.SOLD_OUT:
            raise SoldOut("this event is sold out")
        raise TokenExpired("waiting token expired or left the queue")

    async def leave(self, token: str) -> bool:
        """True when the waiter was removed; False when it was no longer waiting."""
        claims = self._claims(token)
        outcome = await self.store.leave(
            claims.event_id, claims.seq, claims.user_id, claims.joined_ms
        )
        return outcome is LeaveOutcome.LEFT

    async def claim_reservation(
        self, token: str, user_id: str, event_id: str, lease_ms: int
    ) -> ReservationClaim:
        """Lease the reservation token from enter to one attempt, by its user, for its event.

        A token that does not verify, or is another user's or event's, is GONE without a
        store call. Settle every CLAIMED claim with `settle_reservation`.
        """
        try:
            claims = self.signer.verify_reservation(token)
        except InvalidToken:
            return ReservationClaim(ClaimOutcome.GONE, event_id, 0, "")
        if claims.user_id != user_id or claims.event_id != event_id:
            return ReservationClaim(ClaimOutcome.GONE, event_id, 0, "")
        lease_id = secrets.token_hex(8)
        outcome = await self.store.claim_reservation(
            claims.event_id, claims.seq, user_id, lease_id, lease_ms
        )
        return ReservationClaim(outcome, claims.event_id, claims.seq, lease_id)

    async def settle_reservation(self, claim: ReservationClaim, used: bool) -> None:
        """Use the reservation up (`used`: the attempt held seats) or give it back."""
        if claim.outcome is ClaimOutcome.CLAIMED:
            await self.store.settle_reservation(claim.event_id, claim.seq, claim.lease_id, used)

    async def sweep_once(self) -> int:
        """One sweeper round: drain ghosts of every event this process has seen, a bounded
        batch at a time, and record those events with their waiting counts in the store's
        event registry (one batched write per round, off the hot path, so join stays one
        round trip). A round with events to sweep is reported to the observer as the "sweep"
        operation, a QueueUnavailable one with its code before it is raised. The app runs
        rounds periodically (app.queue.sweep_ghosts)."""
        events = list(self.active_events)
        try:
            removed = await self._sweep(events)
        except QueueUnavailable as exc:
            self._report_sweep(events, exc.code)
            raise
        self._report_sweep(events, "ok")
        return removed

    async def _sweep(self, events: list[str]) -> int:
        removed = 0
        waiting: dict[str, int] = {}
        for event_id in events:
            removed += await self.sweep_event(event_id)
            waiting[event_id] = await self.store.waiting_count(event_id)
            if waiting[event_id] == 0:
                self.active_events.discard(event_id)
        if waiting:
            await self.store.register_events(waiting)
        return removed

    def _report_sweep(self, events: list[str], status: str) -> None:
        if events and self.observer is not None:
            self.observer.operation("sweep", status)

    async def sweep_event(self, event_id: str, rounds: int = SWEEP_NOW_ROUNDS) -> int:
        """Remove one event's ghosts now, `sweep_batch` at a time, for at most `rounds`."""
        removed = 0
        for _ in range(rounds):
            count = await self.store.sweep(event_id, self.settings.sweep_batch)
            removed += count
            if count < self.settings.sweep_batch:
                break
        return removed
