"""Payment simulator: intents with scripted outcomes, kept in SQL, announced by signed webhook.

The reference simulator kept intents in process memory, so a second replica (or a restart)
lost them. Here an intent is a row: its outcome is decided when it is created (RANDOM
included) and applied at `due_ms` by whichever process gets there first (a conditional
UPDATE), and webhook delivery is claimed with a lease, so several replicas and restarts
neither lose nor double-apply anything. A webhook may still arrive more than once (at least
once delivery); the receiver's confirm is idempotent.

Scenarios: APPROVE (the default) completes after a short delay; FAIL fails likewise; DELAY
completes after `delay_sec`; RANDOM approves with `approve_probability`; TIMEOUT makes the
CreatePaymentIntent call itself hang (cancelled with the caller's deadline) and stores nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketgate import webhooks
from ticketgate.background import cancel_and_wait, every
from ticketgate.database import Database
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2, payment_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import (
    AnyRow,
    Context,
    Replays,
    ServiceError,
    invalid,
    not_found,
    now_ms,
    rpc,
    timestamp_from_ms,
    write_transaction,
)

log = logging.getLogger("ticketgate.services.payment")

INTENT_PREFIX = "pi_"
MAX_AMOUNT = 10**12
CURRENCY = re.compile(r"[A-Z]{3}")
SCENARIOS = {
    payment_pb2.PAYMENT_SCENARIO_UNSPECIFIED: "APPROVE",
    payment_pb2.PAYMENT_SCENARIO_APPROVE: "APPROVE",
    payment_pb2.PAYMENT_SCENARIO_FAIL: "FAIL",
    payment_pb2.PAYMENT_SCENARIO_DELAY: "DELAY",
    payment_pb2.PAYMENT_SCENARIO_RANDOM: "RANDOM",
    payment_pb2.PAYMENT_SCENARIO_TIMEOUT: "TIMEOUT",
}
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STATUSES = {
    "PENDING": payment_pb2.PAYMENT_STATUS_PENDING,
    PROCESSING: payment_pb2.PAYMENT_STATUS_PROCESSING,
    COMPLETED: payment_pb2.PAYMENT_STATUS_COMPLETED,
    FAILED: payment_pb2.PAYMENT_STATUS_FAILED,
}
_SETTLED = (COMPLETED, FAILED)
_RETRYABLE_HTTP = {408, 425, 429}
_MAX_BACKOFF_SEC = 30.0


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    reservation_id: str
    user_id: str
    amount: int
    currency: str
    status: str
    updated_ms: int

    def status_proto(self) -> payment_pb2.PaymentStatus.ValueType:
        return STATUSES.get(self.status, payment_pb2.PAYMENT_STATUS_UNSPECIFIED)


def _intent(row: AnyRow) -> Intent:
    return Intent(
        row.id, row.reservation_id, row.user_id, row.amount, row.currency, row.status,
        row.updated_ms,
    )  # fmt: skip


def webhook_body(intent: Intent) -> bytes:
    """The exact bytes POSTed (and signed): the seven documented fields, compact JSON."""
    occurred = datetime.fromtimestamp(intent.updated_ms / 1000, UTC)
    return json.dumps(
        {
            "payment_intent_id": intent.id,
            "reservation_id": intent.reservation_id,
            "user_id": intent.user_id,
            "status": intent.status,
            "amount": intent.amount,
            "currency": intent.currency,
            "occurred_at": occurred.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    ).encode()


def _valid_webhook_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and len(url) <= 2048


class PaymentSimulator:
    """Intents, their settlement and their webhooks; `start()` runs the recovery loop that
    settles and announces whatever is due (after a restart, or when a timer was lost)."""

    def __init__(
        self,
        database: Database,
        *,
        webhook_secret: bytes,
        approve_delay_sec: float = 0.1,
        delay_sec: float = 3.0,
        timeout_stall_sec: float = 30.0,
        approve_probability: float = 0.8,
        webhook_timeout_sec: float = 2.0,
        webhook_max_attempts: int = 5,
        webhook_backoff_sec: float = 0.2,
        recovery_interval_sec: float = 1.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not webhook_secret:
            raise ValueError("webhook_secret is required")
        self.database = database
        self.webhook_secret = webhook_secret
        self.approve_delay_sec = approve_delay_sec
        self.delay_sec = delay_sec
        self.timeout_stall_sec = timeout_stall_sec
        self.approve_probability = approve_probability
        self.webhook_timeout_sec = webhook_timeout_sec
        self.webhook_max_attempts = webhook_max_attempts
        self.webhook_backoff_sec = webhook_backoff_sec
        self.recovery_interval_sec = recovery_interval_sec
        self._rng = rng or random.SystemRandom()
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._webhooks: set[asyncio.Task[None]] = set()  # deliveries, a subset of _tasks
        self._closing = False
        self._busy: set[tuple[str, str]] = set()  # (job, intent id) running in this process
        self._http: httpx.AsyncClient | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._replays = Replays(database, tables.payment_intents, "payment", _intent)
        database.register(tables.payment_metadata)

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            timeout=self.webhook_timeout_sec,
            follow_redirects=False,
            headers={"User-Agent": "ticketgate-payment-simulator"},
        )
        self._recovery = asyncio.get_running_loop().create_task(
            every(self.recovery_interval_sec, self.recover_once, log, "payment recovery")
        )

    async def close(self, grace_sec: float = 0.0) -> None:
        """Stop, draining webhooks: nothing new starts, a delivery being posted gets up to
        `grace_sec` to finish (so a rollout does not cut a confirmation off mid-request), and
        whatever is left (a retry waiting out its backoff, a settlement timer) is cancelled.
        Nothing is lost either way: an outcome not yet delivered stays pending in the database
        with its next attempt time, and the next process's recovery loop sends it."""
        self._closing = True
        await cancel_and_wait(self._recovery)
        self._recovery = None
        if self._webhooks and grace_sec > 0:
            await asyncio.wait(self._webhooks, timeout=grace_sec)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _spawn(self, job: str, intent_id: str, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background unless the same job for the intent already runs."""
        key = (job, intent_id)
        if key in self._busy or self._closing:
            work.close()
            return
        self._busy.add(key)

        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("payment %s for %s failed; the recovery loop retries", job, intent_id)
            finally:
                self._busy.discard(key)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if job == "webhook":
            self._webhooks.add(task)
            task.add_done_callback(self._webhooks.discard)

    # --- the RPCs -----------------------------------------------------------------------

    async def create(
        self,
        *,
        reservation_id: str,
        user_id: str,
        amount: int,
        currency: str,
        method: str = "",
        scenario: payment_pb2.PaymentScenario.ValueType = payment_pb2.PAYMENT_SCENARIO_APPROVE,
        webhook_url: str = "",
        idempotency_key: str = "",
    ) -> Intent:
        if not reservation_id or len(reservation_id) > 64:
            raise invalid("reservation_id is required (at most 64 characters)")
        if not user_id or len(user_id) > 128:
            raise invalid("user_id is required (at most 128 characters)")
        if not 0 < amount <= MAX_AMOUNT:
            raise invalid("amount must be positive")
        if CURRENCY.fullmatch(currency) is None:
            raise invalid("currency must be an ISO 4217 code such as KRW")
        if len(method) > 32:
            raise invalid("method is at most 32 characters")
        if len(idempotency_key) > 255:
            raise invalid("idempotency_key is at most 255 characters")
        if webhook_url and not _valid_webhook_url(webhook_url):
            raise invalid("webhook_url must be an http(s) URL")
        name = SCENARIOS.get(scenario)
        if name is None:
            raise invalid(f"unknown scenario {scenario}")
        if name == "TIMEOUT":
            # The provider never answers; the caller's deadline cancels this sleep.
            await asyncio.sleep(self.timeout_stall_sec)
            raise ServiceError(common_pb2.ERROR_CODE_TIMEOUT, "payment provider did not answer")

        fields = [reservation_id, user_id, amount, currency, method, name, webhook_url]
        request_hash = hashlib.sha256(json.dumps(fields).encode()).hexdigest()
        existing = await self._replays.find(user_id, idempotency_key, request_hash)
        if existing is not None:
            return existing
        if name == "RANDOM":
            outcome = COMPLETED if self._rng.random() < self.approve_probability else FAILED
        else:
            outcome = FAILED if name == "FAIL" else COMPLETED
        now = now_ms(self._clock)
        delay = self.delay_sec if name == "DELAY" else self.approve_delay_sec
        due = now + int(delay * 1000)
        intent_id = INTENT_PREFIX + secrets.token_hex(12)

        async def insert(conn: AsyncConnection) -> AnyRow | None:
            statement = (
                self.database.insert(tables.payment_intents)
                .values(
                    id=intent_id,
                    reservation_id=reservation_id,
                    user_id=user_id,
                    amount=amount,
                    currency=currency,
                    method=method or "card",
                    scenario=name,
                    idempotency_key=idempotency_key or None,
                    request_hash=request_hash,
                    status=PROCESSING,
                    outcome=outcome,
                    due_ms=due,
                    webhook_url=webhook_url,
                    webhook_state=tables.WEBHOOK_PENDING if webhook_url else tables.WEBHOOK_NONE,
                    webhook_attempts=0,
                    webhook_next_ms=due,
                    created_ms=now,
                    updated_ms=now,
                )
                .on_conflict_do_nothing()
                .returning(*tables.payment_intents.c)
            )
            return (await conn.execute(statement)).first()

        row = await write_transaction(self.database, insert)
        if row is None:  # a concurrent call with the same key won
            existing = await self._replays.find(user_id, idempotency_key, request_hash)
            if existing is None:
                raise ServiceError(common_pb2.ERROR_CODE_CONCURRENT_MODIFICATION, "retry")
            return existing
        self._spawn("settle", intent_id, self._settle_when_due(intent_id, due))
        return _intent(row)

    async def _load(self, intent_id: str) -> AnyRow:
        if not intent_id or len(intent_id) > 40:
            raise not_found("payment intent not found")
        async with self.database.read() as conn:
            row = (
                await conn.execute(
                    select(tables.payment_intents).where(tables.payment_intents.c.id == intent_id)
                )
            ).first()
        if row is None:
            raise not_found("payment intent not found")
        return row

    async def status(self, intent_id: str) -> Intent:
        """The intent as it stands, settled on the spot if its outcome is due (so a caller
        never sees PROCESSING past the due time just because a timer ran late)."""
        row = await self._load(intent_id)
        if row.status == PROCESSING and row.due_ms <= now_ms(self._clock):
            return await self._settle_now(intent_id) or _intent(await self._load(intent_id))
        return _intent(row)

    async def process(self, intent_id: str) -> Intent:
        """Apply the intent's outcome now, whatever its delay (idempotent)."""
        await self._load(intent_id)
        return await self._settle_now(intent_id, force=True) or _intent(await self._load(intent_id))

    # --- settlement and webhooks --------------------------------------------------------

    async def _settle_when_due(self, intent_id: str, due_ms: int) -> None:
        await asyncio.sleep(max(0.0, due_ms / 1000 - self._clock()))
        await self._settle_now(intent_id)

    async def _settle_now(self, intent_id: str, *, force: bool = False) -> Intent | None:
        """PROCESSING → its outcome, once, by whoever comes first; None if already settled
        (or not due)."""
        now = now_ms(self._clock)
        intents = tables.payment_intents.c
        condition = [intents.id == intent_id, intents.status == PROCESSING]
        if not force:
            condition.append(intents.due_ms <= now)

        async def settle(conn: AsyncConnection) -> AnyRow | None:
            statement = (
                update(tables.payment_intents)
                .where(*condition)
                .values(status=intents.outcome, updated_ms=now, webhook_next_ms=now)
                .returning(*tables.payment_intents.c)
            )
            return (await conn.execute(statement)).first()

        row = await write_transaction(self.database, settle)
        if row is None:
            return None
        log.info("payment %s %s", intent_id, row.status)
        if row.webhook_state == tables.WEBHOOK_PENDING:
            self._spawn("webhook", intent_id, self._deliver(intent_id))
        return _intent(row)

    async def _deliver(self, intent_id: str) -> None:
        """POST the signed outcome until it is accepted, refused for good, or out of tries."""
        intents = tables.payment_intents.c
        lease_ms = int((self.webhook_timeout_sec + 5) * 1000)
        while True:
            now = now_ms(self._clock)

            async def claim(conn: AsyncConnection, now: int = now) -> AnyRow | None:
                statement = (
                    update(tables.payment_intents)
                    .where(
                        intents.id == intent_id,
                        intents.webhook_state == tables.WEBHOOK_PENDING,
                        intents.status.in_(_SETTLED),
                        intents.webhook_next_ms <= now,
                    )
                    .values(
                        webhook_attempts=intents.webhook_attempts + 1,
                        webhook_next_ms=now + lease_ms,
                    )
                    .returning(*tables.payment_intents.c)
                )
                return (await conn.execute(statement)).first()

            row = await write_transaction(self.database, claim)
            if row is None:
                return
            accepted, retry = await self._post(row.webhook_url, webhook_body(_intent(row)))
            if accepted or not retry or row.webhook_attempts >= self.webhook_max_attempts:
                state = tables.WEBHOOK_DELIVERED if accepted else tables.WEBHOOK_FAILED
                if not accepted:
                    log.warning(
                        "webhook for payment %s given up after %d attempts",
                        intent_id,
                        row.webhook_attempts,
                    )
                await self._set_webhook(intent_id, state=state)
                return
            backoff = min(
                self.webhook_backoff_sec * 2 ** (row.webhook_attempts - 1), _MAX_BACKOFF_SEC
            )
            await self._set_webhook(intent_id, next_ms=now_ms(self._clock) + int(backoff * 1000))
            if self._closing:
                return  # the next attempt is recorded; the next process's recovery makes it
            await asyncio.sleep(backoff)

    async def _set_webhook(
        self, intent_id: str, *, state: str | None = None, next_ms: int | None = None
    ) -> None:
        values: dict[str, Any] = {}
        if state is not None:
            values["webhook_state"] = state
        if next_ms is not None:
            values["webhook_next_ms"] = next_ms

        async def store(conn: AsyncConnection) -> None:
            await conn.execute(
                update(tables.payment_intents)
                .where(tables.payment_intents.c.id == intent_id)
                .values(**values)
            )

        await write_transaction(self.database, store)

    async def _post(self, url: str, body: bytes) -> tuple[bool, bool]:
        """(accepted, worth retrying)."""
        assert self._http is not None, "PaymentSimulator.start() was not called"
        headers = {
            "Content-Type": "application/json",
            webhooks.HEADER: webhooks.sign(self.webhook_secret, body, self._clock()),
        }
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("webhook to %s failed: %s", url, exc)
            return False, True
        if 200 <= response.status_code < 300:
            return True, False
        log.info("webhook to %s answered %d", url, response.status_code)
        return False, response.status_code >= 500 or response.status_code in _RETRYABLE_HTTP

    async def recover_once(self, limit: int = 200) -> None:
        """Settle intents whose outcome is due and resend webhooks that are owed."""
        now = now_ms(self._clock)
        intents = tables.payment_intents.c
        async with self.database.read() as conn:
            due: Sequence[AnyRow] = (
                await conn.execute(
                    select(intents.id)
                    .where(intents.status == PROCESSING, intents.due_ms <= now)
                    .limit(limit)
                )
            ).all()
            owed: Sequence[AnyRow] = (
                await conn.execute(
                    select(intents.id)
                    .where(
                        intents.webhook_state == tables.WEBHOOK_PENDING,
                        intents.status.in_(_SETTLED),
                        intents.webhook_next_ms <= now,
                    )
                    .limit(limit)
                )
            ).all()
        for row in due:
            self._spawn("settle", row.id, self._settle_when_due(row.id, now))
        for row in owed:
            self._spawn("webhook", row.id, self._deliver(row.id))


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(self, simulator: PaymentSimulator) -> None:
        self.simulator = simulator

    @rpc(payment_pb2.CreatePaymentIntentResponse)
    async def CreatePaymentIntent(
        self, request: payment_pb2.CreatePaymentIntentRequest, context: Context
    ) -> payment_pb2.CreatePaymentIntentResponse:
        intent = await self.simulator.create(
            reservation_id=request.reservation_id,
            user_id=request.user_id,
            amount=request.amount.amount,
            currency=request.amount.currency,
            method=request.method,
            scenario=request.scenario,
            webhook_url=request.webhook_url,
            idempotency_key=request.idempotency_key,
        )
        return payment_pb2.CreatePaymentIntentResponse(
            payment_intent_id=intent.id,
            status=intent.status_proto(),
            next_action="webhook" if request.webhook_url else "poll",
        )

    @rpc(payment_pb2.GetPaymentStatusResponse, "payment_intent_id")
    async def GetPaymentStatus(
        self, request: payment_pb2.GetPaymentStatusRequest, context: Context
    ) -> payment_pb2.GetPaymentStatusResponse:
        intent = await self.simulator.status(request.payment_intent_id)
        return payment_pb2.GetPaymentStatusResponse(
            payment_intent_id=intent.id,
            reservation_id=intent.reservation_id,
            status=intent.status_proto(),
            amount=common_pb2.Money(amount=intent.amount, currency=intent.currency),
            user_id=intent.user_id,
            updated_at=timestamp_from_ms(intent.updated_ms),
        )

    @rpc(payment_pb2.ProcessPaymentResponse, "payment_intent_id")
    async def ProcessPayment(
        self, request: payment_pb2.ProcessPaymentRequest, context: Context
    ) -> payment_pb2.ProcessPaymentResponse:
        intent = await self.simulator.process(request.payment_intent_id)
        return payment_pb2.ProcessPaymentResponse(
            payment_intent_id=intent.id, status=intent.status_proto()
        )
