"""One simulated fan's journey, as a real browser tab would make it.

sign in → join → poll exactly when `poll_after_ms` says → (give up: leave, or go silent as a
ghost) → enter when `ready_for_entry`, honouring Retry-After → reserve → pay → confirm.
Every answer is recorded on the fan's `FanRecord` and in the run's `Stats`; the fan never
retries faster than the gateway asks it to.
"""

from __future__ import annotations

import asyncio
import base64
import random
import uuid
from typing import Any, Protocol

import msgspec

from ticketgate.rehearsal.record import FanRecord, Poll, Stats
from ticketgate.rehearsal.scenario import Scenario
from ticketgate.rehearsal.transport import Reply, Transport, TransportError

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
JSON = "application/json"
BACKOFF_SEC = 1.0  # pause after an answer without Retry-After that asks for one
MAX_JOIN_TRIES = 5
PROBE_MARGIN_SEC = 0.05  # a ghost's deadline probe, just after the sweep must have happened
WEBHOOK_POLL_SEC = 1.0
EARLY_PROBE_SHARE = 0.25  # ghosts that probe before the deadline (how soon sweeping happens)


class Clock(Protocol):
    def __call__(self) -> float: ...


class Context:
    """What every fan of one run shares."""

    def __init__(
        self,
        scenario: Scenario,
        transport: Transport,
        stats: Stats,
        clock: Clock,
        tokens: list[str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.transport = transport
        self.stats = stats
        self.clock = clock
        self.tokens = tokens  # pre-minted JWTs, one per fan, for sign_in.mode "jwt"
        self.frontier_seen = False


class Refused(Exception):
    """An answer that ends this step of the journey (not the run)."""

    def __init__(self, reply: Reply | None, code: str) -> None:
        super().__init__(code)
        self.reply = reply
        self.code = code


def error_code(reply: Reply) -> str:
    if reply.status < 300:
        return ""
    try:
        body = _decode(reply.body)
        code = body["error"]["code"]
        return str(code)
    except (msgspec.DecodeError, KeyError, TypeError):
        return f"HTTP_{reply.status}"


def token_subject(token: str) -> str:
    """The `sub` of a JWT the gateway issued (read, not verified: it is ours)."""
    try:
        payload = token.split(".")[1]
        return str(_decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])
    except (IndexError, ValueError, KeyError, TypeError, msgspec.DecodeError):
        return ""


class Fan:
    def __init__(self, ctx: Context, record: FanRecord, rng: random.Random) -> None:
        self.ctx = ctx
        self.rec = record
        self.rng = rng
        self.headers: dict[str, str] = {"Content-Type": JSON}
        if ctx.scenario.client.forwarded_for:
            n = record.n
            self.headers["X-Forwarded-For"] = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        self.token = ""
        self.waiting_token = ""
        self.reservation_token = ""
        self.poll_after = BACKOFF_SEC
        self.event_state = ""

    # -- plumbing ---------------------------------------------------------------------------

    async def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotent_key: bool = False,
    ) -> Reply:
        """One request, recorded; raises TransportError when no answer came."""
        ctx = self.ctx
        headers = self.headers
        if idempotent_key:
            headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        payload = None if body is None else _encode(body)
        sent = ctx.clock()
        try:
            reply = await ctx.transport.request(method, path, payload, headers)
        except TransportError as exc:
            now = ctx.clock()
            ctx.stats.request(endpoint, sent, now - sent, 0, exc.kind)
            self.rec.disturbed = True
            raise
        now = ctx.clock()
        code = error_code(reply)
        if ctx.stats.request(endpoint, sent, now - sent, reply.status, code):
            self.rec.disturbed = True
        return reply

    async def pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    # -- the journey ------------------------------------------------------------------------

    async def run(self) -> None:
        rec = self.rec
        try:
            await self.sign_in()
            if not await self.join():
                return
            await self.wait_and_enter()
        except TransportError as exc:
            rec.outcome = rec.outcome or f"no_answer:{exc.kind}"
            rec.failed_at = self.ctx.clock()
        except Refused as exc:
            rec.outcome = rec.outcome or f"refused:{exc.code}"
        finally:
            rec.state = "done"

    async def sign_in(self) -> None:
        sign_in = self.ctx.scenario.sign_in
        n = self.rec.n
        if sign_in.mode == "none":
            return
        if sign_in.mode == "bypass":
            self.token = f"load-test-bypass-token-{sign_in.user_prefix}-{n}"
            self.rec.user_id = f"load-test-{sign_in.user_prefix}-{n}"
        elif sign_in.mode == "jwt":
            assert self.ctx.tokens is not None
            self.token = self.ctx.tokens[n]
            self.rec.user_id = f"{sign_in.user_prefix}-{n}"
        else:
            self.rec.state = "signing_in"
            credentials = {"username": f"{sign_in.user_prefix}-{n}", "password": sign_in.password}
            reply = await self.call("signin", "POST", "/api/v1/auth/register", credentials)
            if reply.status not in (201, 409):
                raise Refused(reply, error_code(reply))
            reply = await self.call("signin", "POST", "/api/v1/auth/login", credentials)
            if reply.status != 200:
                raise Refused(reply, error_code(reply))
            self.token = str(_decode(reply.body)["access_token"])
            self.rec.user_id = token_subject(self.token)
        self.headers["Authorization"] = f"Bearer {self.token}"

    async def join(self) -> bool:
        rec, ctx = self.rec, self.ctx
        rec.state = "joining"
        # The first attempt's send time: a retry after a lost answer (a 5xx from a gateway
        # that died mid-request, a 503 while Redis failed over) returns the place the first
        # attempt took, so the fan's place in the line dates from then. Fairness compares
        # "B sent its join after A's join was answered" and must not see a retry as a late
        # joiner.
        first_sent = ctx.clock()
        for _ in range(MAX_JOIN_TRIES):
            reply = await self.call(
                "join", "POST", "/api/v1/queue/join", {"event_id": ctx.scenario.event_id}
            )
            if reply.status in (202, 409) and (
                reply.status == 202 or error_code(reply) == "DUPLICATE_REQUEST"
            ):
                # A 409 DUPLICATE_REQUEST carries the existing place beside its "error"
                # object (a join retried after its answer was lost), as a 202 does.
                body = _decode(reply.body)
                self.waiting_token = str(body["waiting_token"])
                rec.waiting_token = self.waiting_token
                rec.join_sent, rec.join_recv = first_sent, ctx.clock()
                rec.position_hint = int(body.get("position_hint") or 0)
                rec.state = "waiting"
                return True
            if reply.status in (429, 503) or reply.status >= 500:
                await self.pause(reply.retry_after or BACKOFF_SEC)
                continue
            rec.outcome = f"join_refused:{error_code(reply)}"
            return False
        rec.outcome = "join_failed"
        return False

    def _abandon_after(self) -> int:
        return self.rng.randint(0, self.ctx.scenario.abandon.after_polls_max)

    async def status(self) -> tuple[Reply, Poll | None]:
        ctx = self.ctx
        sent = ctx.clock()
        reply = await self.call("status", "GET", f"/api/v1/queue/status?token={self.waiting_token}")
        if reply.status != 200:
            return reply, None
        body = _decode(reply.body)
        if not ctx.frontier_seen and any(key.startswith("frontier") for key in body):
            ctx.frontier_seen = True
        poll = Poll(
            sent,
            ctx.clock(),
            str(body.get("status", "")),
            int(body.get("position") or 0),
            -1 if body.get("eta_sec") is None else int(body["eta_sec"]),
            bool(body.get("ready_for_entry")),
        )
        self.poll_after = max(0.0, int(body.get("poll_after_ms") or 1000) / 1000.0)
        self.event_state = str(body.get("event_state") or "")
        return reply, poll

    async def wait_and_enter(self) -> None:
        rec = self.rec
        give_up_after = self._abandon_after() if rec.kind != "stay" else -1
        polls = 0
        while True:
            reply, poll = await self.status()
            if poll is None:
                code = error_code(reply)
                if reply.status in (404, 410):
                    rec.outcome = f"lost:{code}"
                    return
                await self.pause(reply.retry_after or BACKOFF_SEC)
                continue
            rec.polls.append(poll)
            polls += 1
            if poll.status in ("expired", "admitted"):
                rec.outcome = f"status_{poll.status}"
                return
            if self.event_state == "sold_out":  # the page says so; the fan closes it
                rec.outcome = "event_sold_out"
                return
            # Those who give up do it after their polls, or on reaching the door at the
            # latest: a ghost never enters, so the scenario's shares are exact.
            if give_up_after >= 0 and (polls > give_up_after or poll.ready):
                await (self.leave() if rec.kind == "leave" else self.go_silent(poll.recv))
                return
            if poll.ready:
                rec.state = "entering"
                granted = await self.enter()
                if granted:
                    if self.ctx.scenario.booking.enabled and self.token:
                        await self.book()
                    else:
                        rec.outcome = "admitted"
                    return
                continue
            rec.state = (
                "near_door"
                if poll.position <= self.ctx.scenario.queue.admission_window
                else "waiting"
            )
            await self.pause(self.poll_after)

    async def enter(self) -> bool:
        rec, ctx = self.rec, self.ctx
        sent = ctx.clock()
        reply = await self.call(
            "enter", "POST", "/api/v1/queue/enter", {"waiting_token": self.waiting_token}
        )
        now = ctx.clock()
        if reply.status == 200:
            rec.grant_sent, rec.grant_recv = sent, now
            ctx.stats.grant(now)
            self.reservation_token = str(_decode(reply.body)["reservation_token"])
            return True
        code = error_code(reply)
        if code == "SOLD_OUT":
            rec.outcome = "event_sold_out"
            raise Refused(reply, code)
        if reply.status in (404, 410) or code == "DUPLICATE_REQUEST":
            raise Refused(reply, code)
        rec.refusals.append((sent, now, code))
        rec.state = "throttled"
        await self.pause(reply.retry_after or self.poll_after or BACKOFF_SEC)
        return False

    async def leave(self) -> None:
        await self.call("leave", "DELETE", f"/api/v1/queue/leave?token={self.waiting_token}")
        self.rec.outcome = "left"

    async def go_silent(self, last_seen: float) -> None:
        """Close the tab: no more calls. Then check, as an outsider would, that the
        gateway's sweeper removed this fan in time.

        The probe is a leave, not a status: a status is a heartbeat, and the gateway answers
        `expired` for any waiter past its TTL whether or not the sweeper has removed it from
        the line, so it would prove nothing about the fans behind. A leave neither refreshes
        nor expires anything: "not in the queue" means someone already removed the ghost
        (only the sweeper can have), "left the queue" means it still held its place, and
        the leave removes it. One probe per ghost, then: most probe just after the deadline
        (TTL + one sweep interval) and must find it gone; a quarter probe at a random point
        of the interval after the TTL, to see how soon sweeping happens."""
        rec, ctx = self.rec, self.ctx
        queue = ctx.scenario.queue
        rec.state = "ghost"
        rec.silent_at = last_seen
        ttl, interval = queue.heartbeat_ttl_sec, queue.sweep_interval_ms / 1000.0
        early = self.rng.random() < EARLY_PROBE_SHARE
        offset = self.rng.uniform(0.0, interval) if early else interval + PROBE_MARGIN_SEC
        await self.pause(last_seen + ttl + offset - ctx.clock())
        for _ in range(MAX_JOIN_TRIES):
            reply = await self.call(
                "leave", "DELETE", f"/api/v1/queue/leave?token={self.waiting_token}"
            )
            if reply.status == 200:
                break
            await self.pause(reply.retry_after or BACKOFF_SEC)  # an error answer: ask again
        else:
            rec.outcome = "ghost_unprobed"
            return
        message = str(_decode(reply.body).get("message", ""))
        swept = not message.startswith("left")
        rec.probes.append((offset - interval, swept))
        if swept:
            rec.outcome = "ghost_swept"
        else:
            rec.outcome = "ghost_not_swept" if not early else "ghost_removed_by_probe"

    # -- booking ----------------------------------------------------------------------------

    def _quantity(self) -> int:
        weights = self.ctx.scenario.booking.quantity_weights
        return self.rng.choices(range(1, len(weights) + 1), weights=weights)[0]

    def _named_seats(self, quantity: int) -> list[str]:
        booking = self.ctx.scenario.booking
        row = self.rng.choice(booking.rows)
        first = self.rng.randint(1, max(1, booking.seats_per_row - quantity + 1))
        return [f"{row}-{number}" for number in range(first, first + quantity)]

    async def book(self) -> None:
        rec, booking = self.rec, self.ctx.scenario.booking
        rec.state = "booking"
        rec.quantity = quantity = self._quantity()
        body: dict[str, Any] = {
            "event_id": self.ctx.scenario.event_id,
            "quantity": quantity,
            "reservation_token": self.reservation_token,
        }
        if self.rng.random() < booking.named_share:
            body["seat_ids"] = self._named_seats(quantity)
        reply = await self.call(
            "reserve", "POST", "/api/v1/reservations", body, idempotent_key=True
        )
        if reply.status != 201:
            code = error_code(reply)
            rec.outcome = "sold_out" if code == "INSUFFICIENT_INVENTORY" else f"reserve:{code}"
            return
        held = _decode(reply.body)
        rec.reservation_id = str(held["reservation_id"])
        seats = tuple(str(seat.get("seat_id", "")) for seat in held.get("reserved_seats") or ())
        rec.state = "paying"
        mix = booking.payment_mix
        rec.payment = scenario = self.rng.choices(list(mix), weights=list(mix.values()))[0]
        reply = await self.call(
            "pay",
            "POST",
            "/api/v1/payment/intent",
            {
                "reservation_id": rec.reservation_id,
                "amount": held.get("total_amount", 0),
                "currency": held.get("currency", "KRW"),
                "scenario": scenario,
            },
            idempotent_key=True,
        )
        if reply.status != 200:
            rec.outcome = f"pay:{error_code(reply)}"
            return
        intent = str(_decode(reply.body)["payment_intent_id"])
        await self.confirm(intent, seats, settles=scenario in ("approve", "delay", "random"))

    async def confirm(self, intent: str, seats: tuple[str, ...], *, settles: bool) -> None:
        """Wait for the payment's webhook to confirm (as the walk-through's client does),
        then confirm explicitly: a delayed payment may need a few tries, a failed one stays
        unapproved until the hold lapses."""
        rec, ctx = self.rec, self.ctx
        booking = ctx.scenario.booking
        path = f"/api/v1/reservations/{rec.reservation_id}"
        if settles:
            webhook_deadline = ctx.clock() + booking.webhook_wait_sec
            while ctx.clock() < webhook_deadline:
                await self.pause(WEBHOOK_POLL_SEC)
                if await self.confirmed(path):
                    rec.sold, rec.seats, rec.outcome = True, seats, "bought"
                    return
        deadline = ctx.clock() + booking.confirm_timeout_sec
        while True:
            reply = await self.call(
                "confirm",
                "POST",
                f"{path}/confirm",
                {"payment_intent_id": intent},
                idempotent_key=True,
            )
            code = error_code(reply)
            if reply.status == 200 or code == "RESERVATION_NOT_HELD":
                if await self.confirmed(path):
                    rec.sold, rec.seats, rec.outcome = True, seats, "bought"
                else:
                    rec.outcome = f"confirm:{code or 'not_confirmed'}"
                return
            if code == "PAYMENT_NOT_APPROVED" and settles and ctx.clock() < deadline:
                await self.pause(1.0)
                continue
            rec.outcome = "payment_failed" if code == "PAYMENT_NOT_APPROVED" else f"confirm:{code}"
            return

    async def confirmed(self, path: str) -> bool:
        found = await self.call("reservation", "GET", path)
        return found.status == 200 and _decode(found.body).get("status") == "CONFIRMED"
