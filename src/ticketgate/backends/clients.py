"""gRPC clients of the reservation and payment services.

Each backend gets one grpc.aio channel (opened on first use, closed at shutdown), a deadline
per call from the settings, a circuit breaker, and metadata that ties the call to the HTTP
request: W3C `traceparent` (the request's trace id with a new span id), `x-request-id`, and
`idempotency-key`, which also travels in the request message for backends that dedupe on it.

Retries are where they cannot double an effect: reads (GetReservation, GetPaymentStatus) and
writes that carry an idempotency key get one more attempt on UNAVAILABLE, inside the same
deadline. A timed-out write is never retried: it may have happened.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import grpc

from ticketgate.backends.breaker import BreakerOpen, BreakerState, CircuitBreaker
from ticketgate.backends.errors import BackendError, from_error, from_status
from ticketgate.backends.observer import RpcObserver
from ticketgate.backends.settings import BackendSettings
from ticketgate.booking.ports import CallContext
from ticketgate.proto.common.v1 import common_pb2
from ticketgate.proto.payment.v1 import payment_pb2, payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2, reservation_pb2_grpc

log = logging.getLogger("ticketgate.backends")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Stub = TypeVar("Stub")
Metadata = tuple[tuple[str, str], ...]
# (timeout in seconds, metadata, wait_for_ready) -> the response
Invoke = Callable[[float, Metadata, bool], Awaitable[Resp]]

# Reconnect quickly once a backend is back: the default backoff grows to two minutes, which
# would fail the breaker's half-open probe long after the backend recovered. A refused
# connection attempt to a dead backend twice a second costs nothing worth saving.
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)
# A retry needs time to be worth starting; below this it could only end as a timeout.
MIN_RETRY_BUDGET_SEC = 0.02

SCENARIOS: dict[str, payment_pb2.PaymentScenario.ValueType] = {
    "approve": payment_pb2.PAYMENT_SCENARIO_APPROVE,
    "fail": payment_pb2.PAYMENT_SCENARIO_FAIL,
    "delay": payment_pb2.PAYMENT_SCENARIO_DELAY,
    "random": payment_pb2.PAYMENT_SCENARIO_RANDOM,
    "timeout": payment_pb2.PAYMENT_SCENARIO_TIMEOUT,
}


def _metadata(context: CallContext, traceparent: str = "") -> Metadata:
    """`traceparent` names the call's CLIENT span when tracing is on; without one the call
    still carries the request's trace id (with a span id of its own)."""
    traceparent = traceparent or f"00-{context.trace_id}-{os.urandom(8).hex()}-01"
    pairs = [("traceparent", traceparent)]
    if context.request_id:
        pairs.append(("x-request-id", context.request_id))
    if context.idempotency_key:
        pairs.append(("idempotency-key", context.idempotency_key))
    return tuple(pairs)


class _Backend:
    """One backend: channel, deadline, breaker and the call discipline shared by its RPCs."""

    def __init__(
        self,
        name: str,
        address: str,
        tls: bool,
        timeout_ms: int,
        breaker: CircuitBreaker,
        observers: tuple[RpcObserver, ...] = (),
    ) -> None:
        self.name = name
        self.address = address
        self.tls = tls
        self.timeout_sec = timeout_ms / 1000
        self.breaker = breaker
        self.observers = observers
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        """Opened lazily: grpc.aio binds a channel to the running loop, which the app
        factory does not have yet."""
        if self._channel is None:
            if not self.address:
                raise RuntimeError(f"no address configured for the {self.name} service")
            if self.tls:
                self._channel = grpc.aio.secure_channel(
                    self.address, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS
                )
            else:
                self._channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return self._channel

    def retarget(self, address: str) -> None:
        """Aim at `address` (embedded services get their ports at start-up); before any call."""
        if self._channel is not None:
            raise RuntimeError(f"the {self.name} channel is already open")
        self.address = address

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace=None)

    def check(self) -> None:
        """Raise the breaker's fast 503 now, before the caller spends anything single-use."""
        try:
            self.breaker.check()
        except BreakerOpen as exc:
            raise self._open_error(exc) from None

    async def call(
        self,
        method: str,
        invoke: Invoke[Resp],
        error_of: Callable[[Resp], common_pb2.Error | None],
        context: CallContext,
        *,
        retry: bool,
    ) -> Resp:
        """One RPC under the backend's deadline and breaker, its failures mapped to
        `BackendError`, seen by the observers."""
        observers = self.observers
        states: list[object] = []
        traceparent = ""
        for observer in observers:
            state, carried = observer.begin(self.name, method, self.address, context.trace_id)
            states.append(state)
            traceparent = traceparent or carried
        started = time.perf_counter()
        status = "OK"
        try:
            return await self._call(invoke, error_of, context, retry, traceparent)
        except BreakerOpen as exc:
            status = "BREAKER_OPEN"
            raise self._open_error(exc) from None
        except BackendError as exc:
            status = exc.code
            raise
        finally:
            duration = time.perf_counter() - started
            for index, observer in enumerate(observers):
                observer.end(self.name, method, states[index], status, duration)

    async def _call(
        self,
        invoke: Invoke[Resp],
        error_of: Callable[[Resp], common_pb2.Error | None],
        context: CallContext,
        retry: bool,
        traceparent: str,
    ) -> Resp:
        breaker = self.breaker
        probe = breaker.acquire()  # BreakerOpen: refused without a call
        deadline = time.monotonic() + self.timeout_sec
        metadata = _metadata(context, traceparent)
        attempts_left = 2 if retry else 1
        try:
            while True:
                attempts_left -= 1
                try:
                    # The probe waits for the channel to connect (within its deadline): a
                    # channel still in reconnect backoff would otherwise fail it at once.
                    response = await invoke(max(0.0, deadline - time.monotonic()), metadata, probe)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if (
                        code is grpc.StatusCode.UNAVAILABLE
                        and attempts_left > 0
                        and deadline - time.monotonic() > MIN_RETRY_BUDGET_SEC
                    ):
                        continue
                    failure = from_status(code, self.name)
                    break
                refusal = error_of(response)
                if refusal is None:
                    breaker.success(probe)
                    return response
                failure = from_error(refusal, self.name)
                break
        except BaseException:
            breaker.release(probe)  # cancelled: the call told us nothing about the backend
            raise
        if failure.trips_breaker:
            was_open = breaker.state is not BreakerState.CLOSED
            breaker.failure(probe)
            if not was_open and breaker.state is BreakerState.OPEN:
                log.warning(
                    "%s circuit opened after %d failures (%s); fast 503 for %.1f s",
                    self.name,
                    breaker.failures,
                    failure.code,
                    breaker.reset_sec,
                )
        else:
            breaker.success(probe)
        raise failure

    def _open_error(self, exc: BreakerOpen) -> BackendError:
        return BackendError(
            503,
            "UPSTREAM_UNAVAILABLE",
            f"the {self.name} service is unavailable; retry shortly",
            retry_after_sec=exc.retry_after_sec,
            backend=self.name,
        )


# Every response of the backends: a result or a `common.v1.Error` in its `error` field.
_Answers = (
    reservation_pb2.CreateReservationResponse
    | reservation_pb2.GetReservationResponse
    | reservation_pb2.ConfirmReservationResponse
    | reservation_pb2.CancelReservationResponse
    | payment_pb2.CreatePaymentIntentResponse
    | payment_pb2.GetPaymentStatusResponse
)
Answer = TypeVar("Answer", bound=_Answers)


def _error_of(response: _Answers) -> common_pb2.Error | None:
    return response.error if response.HasField("error") else None


def _breaker(name: str, settings: BackendSettings, clock: Callable[[], float]) -> CircuitBreaker:
    return CircuitBreaker(name, settings.breaker_failures, settings.breaker_reset_sec, clock)


class _ServiceClient(Generic[Stub]):
    """One backend: its channel (opened on first use), breaker and stub. A subclass names
    its service and says where it is (`_endpoint`) and how to make its stub (`_new_stub`)."""

    service: ClassVar[str]

    def __init__(
        self,
        settings: BackendSettings,
        clock: Callable[[], float] = time.monotonic,
        observers: tuple[RpcObserver, ...] = (),
    ) -> None:
        address, tls, timeout_ms = self._endpoint(settings)
        breaker = _breaker(self.service, settings, clock)
        self.backend = _Backend(self.service, address, tls, timeout_ms, breaker, observers)
        self._stub: Stub | None = None

    @staticmethod
    def _endpoint(settings: BackendSettings) -> tuple[str, bool, int]:
        """(address, TLS on, deadline in ms) of this service."""
        raise NotImplementedError

    @staticmethod
    def _new_stub(channel: grpc.aio.Channel) -> Stub:
        raise NotImplementedError

    def _rpc(self) -> Stub:
        if self._stub is None:
            self._stub = self._new_stub(self.backend.channel())
        return self._stub

    async def _unary(
        self,
        method: str,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Req, Answer],
        request: Req,
        context: CallContext,
        *,
        read: bool = False,
    ) -> Answer:
        """The one wrapper every RPC of the clients goes through: `_Backend.call` adds the
        deadline, breaker, error mapping and observers. Retried (once, on UNAVAILABLE) only
        where that cannot double an effect: a read, or a write carrying an idempotency key."""
        return await self.backend.call(
            method,
            lambda timeout, md, ready: rpc(
                request, timeout=timeout, metadata=md, wait_for_ready=ready
            ),
            _error_of,
            context,
            retry=read or bool(context.idempotency_key),
        )

    @property
    def breaker(self) -> CircuitBreaker:
        return self.backend.breaker

    def check_available(self) -> None:
        self.backend.check()

    async def close(self) -> None:
        self._stub = None
        await self.backend.close()


# The async stub types exist only in the generated .pyi files, so only the type checker
# sees the parameterised bases.
if TYPE_CHECKING:
    _ReservationBase = _ServiceClient[reservation_pb2_grpc.ReservationServiceAsyncStub]
    _PaymentBase = _ServiceClient[payment_pb2_grpc.PaymentServiceAsyncStub]
else:
    _ReservationBase = _PaymentBase = _ServiceClient


class ReservationClient(_ReservationBase):
    """ReservationService over one channel. Errors come out as `BackendError`."""

    service = "reservation"

    @staticmethod
    def _endpoint(settings: BackendSettings) -> tuple[str, bool, int]:
        return (
            settings.reservation_address,
            settings.reservation_tls,
            settings.reservation_timeout_ms,
        )

    @staticmethod
    def _new_stub(channel: grpc.aio.Channel) -> reservation_pb2_grpc.ReservationServiceAsyncStub:
        return reservation_pb2_grpc.ReservationServiceStub(channel)

    async def create(
        self,
        context: CallContext,
        *,
        event_id: str,
        seat_ids: Sequence[str],
        quantity: int,
        user_id: str,
        reservation_token: str,
    ) -> reservation_pb2.CreateReservationResponse:
        request = reservation_pb2.CreateReservationRequest(
            event_id=event_id,
            seat_ids=seat_ids,
            quantity=quantity,
            user_id=user_id,
            reservation_token=reservation_token,
            idempotency_key=context.idempotency_key,
        )
        return await self._unary(
            "CreateReservation", self._rpc().CreateReservation, request, context
        )

    async def get(
        self, context: CallContext, *, reservation_id: str, user_id: str
    ) -> reservation_pb2.GetReservationResponse:
        request = reservation_pb2.GetReservationRequest(
            reservation_id=reservation_id, user_id=user_id
        )
        return await self._unary(
            "GetReservation", self._rpc().GetReservation, request, context, read=True
        )

    async def confirm(
        self, context: CallContext, *, reservation_id: str, user_id: str, payment_intent_id: str
    ) -> reservation_pb2.ConfirmReservationResponse:
        request = reservation_pb2.ConfirmReservationRequest(
            reservation_id=reservation_id,
            user_id=user_id,
            payment_intent_id=payment_intent_id,
            idempotency_key=context.idempotency_key,
        )
        return await self._unary(
            "ConfirmReservation", self._rpc().ConfirmReservation, request, context
        )

    async def cancel(
        self, context: CallContext, *, reservation_id: str, user_id: str, reason: str = ""
    ) -> reservation_pb2.CancelReservationResponse:
        request = reservation_pb2.CancelReservationRequest(
            reservation_id=reservation_id,
            user_id=user_id,
            idempotency_key=context.idempotency_key,
            reason=reason,
        )
        return await self._unary(
            "CancelReservation", self._rpc().CancelReservation, request, context
        )


class PaymentClient(_PaymentBase):
    """PaymentService over one channel. Errors come out as `BackendError`."""

    service = "payment"

    @staticmethod
    def _endpoint(settings: BackendSettings) -> tuple[str, bool, int]:
        return settings.payment_address, settings.payment_tls, settings.payment_timeout_ms

    @staticmethod
    def _new_stub(channel: grpc.aio.Channel) -> payment_pb2_grpc.PaymentServiceAsyncStub:
        return payment_pb2_grpc.PaymentServiceStub(channel)

    async def create_intent(
        self,
        context: CallContext,
        *,
        reservation_id: str,
        amount: int,
        currency: str,
        user_id: str,
        scenario: str,
        webhook_url: str,
    ) -> payment_pb2.CreatePaymentIntentResponse:
        request = payment_pb2.CreatePaymentIntentRequest(
            reservation_id=reservation_id,
            amount=common_pb2.Money(amount=amount, currency=currency),
            user_id=user_id,
            scenario=SCENARIOS[scenario],
            webhook_url=webhook_url,
            idempotency_key=context.idempotency_key,
        )
        return await self._unary(
            "CreatePaymentIntent", self._rpc().CreatePaymentIntent, request, context
        )

    async def status(
        self, context: CallContext, *, payment_intent_id: str
    ) -> payment_pb2.GetPaymentStatusResponse:
        request = payment_pb2.GetPaymentStatusRequest(payment_intent_id=payment_intent_id)
        return await self._unary(
            "GetPaymentStatus", self._rpc().GetPaymentStatus, request, context, read=True
        )
