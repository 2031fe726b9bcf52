"""Backend failures as the public API states them: two tables, never a match on error text.

A backend says "no" in one of two structured ways: a `common.v1.Error` inside an otherwise
normal response (the platform's convention: business refusals such as a seat already taken),
or a gRPC status on the call (transport and server failures: unavailable, deadline exceeded).
Each way has one table from its code to the HTTP status and wire code of the public API
(README), and a `trips_breaker` flag: only "the backend is not answering in time" counts
against the circuit breaker; a refusal is an answer.

This module does not import the HTTP layer (dependencies point from the edge inward): the edge
turns a `BackendError` into its error envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from ticketgate.booking.errors import BackendRefusal
from ticketgate.proto.common.v1 import common_pb2

ErrorCode = common_pb2.ErrorCode


@dataclass(frozen=True, slots=True)
class Mapping:
    status: int
    code: str  # wire code of the public API
    trips_breaker: bool = False
    retry_after_sec: float | None = None  # sent as Retry-After when set


class BackendError(BackendRefusal):
    """A backend refusal or failure, already translated to the public status and code (the
    refusal booking's ports promise, plus what only the transport knows)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        trips_breaker: bool = False,
        retry_after_sec: float | None = None,
        backend: str = "",
    ) -> None:
        super().__init__(code, message, retry_after_sec=retry_after_sec)
        self.status = status
        self.trips_breaker = trips_breaker
        self.backend = backend


_RETRY_SOON = 1.0
_MAX_MESSAGE = 300
_BAD_GATEWAY = Mapping(502, "INTERNAL_ERROR")

# common.v1.ErrorCode -> HTTP. Every enum value has a row (a test walks the enum).
BY_ERROR_CODE: dict[int, Mapping] = {
    # An `error` present but unspecified: the backend broke its contract.
    ErrorCode.ERROR_CODE_UNSPECIFIED: _BAD_GATEWAY,
    # The gateway authenticated the caller; the backend refusing the user is a refusal.
    ErrorCode.ERROR_CODE_UNAUTHENTICATED: Mapping(403, "FORBIDDEN"),
    ErrorCode.ERROR_CODE_FORBIDDEN: Mapping(403, "FORBIDDEN"),
    ErrorCode.ERROR_CODE_UNAUTHORIZED: Mapping(403, "FORBIDDEN"),
    ErrorCode.ERROR_CODE_INVALID_ARGUMENT: Mapping(400, "INVALID_REQUEST"),
    ErrorCode.ERROR_CODE_NOT_FOUND: Mapping(404, "RESERVATION_NOT_FOUND"),
    ErrorCode.ERROR_CODE_ALREADY_EXISTS: Mapping(409, "DUPLICATE_REQUEST"),
    # The reservation is in no state for this (cancelled, sold, failed): PAYMENT_NOT_APPROVED
    # has its own code, so a precondition is not reported as a payment problem.
    ErrorCode.ERROR_CODE_FAILED_PRECONDITION: Mapping(409, "RESERVATION_NOT_HELD"),
    ErrorCode.ERROR_CODE_RATE_LIMITED: Mapping(429, "RATE_LIMITED", retry_after_sec=_RETRY_SOON),
    # The per-person seat quota of an event (BOOKING_MAX_SEATS_PER_USER): not "try again
    # soon" but "you hold enough": cancel a reservation or let a hold expire first.
    ErrorCode.ERROR_CODE_QUOTA_EXCEEDED: Mapping(409, "SEAT_LIMIT_EXCEEDED"),
    ErrorCode.ERROR_CODE_IDEMPOTENCY_REQUIRED: Mapping(400, "IDEMPOTENCY_REQUIRED"),
    ErrorCode.ERROR_CODE_IDEMPOTENCY_CONFLICT: Mapping(409, "IDEMPOTENCY_CONFLICT"),
    ErrorCode.ERROR_CODE_RESERVATION_EXPIRED: Mapping(410, "RESERVATION_EXPIRED"),
    ErrorCode.ERROR_CODE_PAYMENT_NOT_APPROVED: Mapping(412, "PAYMENT_NOT_APPROVED"),
    ErrorCode.ERROR_CODE_INVENTORY_CONFLICT: Mapping(409, "SEAT_UNAVAILABLE"),
    ErrorCode.ERROR_CODE_INSUFFICIENT_INVENTORY: Mapping(409, "INSUFFICIENT_INVENTORY"),
    ErrorCode.ERROR_CODE_INTERNAL: _BAD_GATEWAY,
    ErrorCode.ERROR_CODE_UNAVAILABLE: Mapping(
        503, "UPSTREAM_UNAVAILABLE", trips_breaker=True, retry_after_sec=_RETRY_SOON
    ),
    ErrorCode.ERROR_CODE_TIMEOUT: Mapping(504, "UPSTREAM_TIMEOUT", trips_breaker=True),
    ErrorCode.ERROR_CODE_UPSTREAM_TIMEOUT: Mapping(504, "UPSTREAM_TIMEOUT", trips_breaker=True),
    ErrorCode.ERROR_CODE_UPSTREAM_ERROR: _BAD_GATEWAY,
    ErrorCode.ERROR_CODE_DATA_CORRUPTION: _BAD_GATEWAY,
    # A lost optimistic race inside the backend: transient, worth one more try by the client.
    ErrorCode.ERROR_CODE_CONCURRENT_MODIFICATION: Mapping(
        503, "UPSTREAM_UNAVAILABLE", retry_after_sec=_RETRY_SOON
    ),
}

# grpc.StatusCode -> HTTP, for calls that failed as calls. OK has no row.
BY_STATUS: dict[grpc.StatusCode, Mapping] = {
    # Cancelled under us (shutdown, client gone): not the backend's fault, nothing to count.
    grpc.StatusCode.CANCELLED: Mapping(503, "UPSTREAM_UNAVAILABLE", retry_after_sec=_RETRY_SOON),
    grpc.StatusCode.UNKNOWN: _BAD_GATEWAY,  # the servicer raised
    grpc.StatusCode.INVALID_ARGUMENT: Mapping(400, "INVALID_REQUEST"),
    grpc.StatusCode.DEADLINE_EXCEEDED: Mapping(504, "UPSTREAM_TIMEOUT", trips_breaker=True),
    grpc.StatusCode.NOT_FOUND: Mapping(404, "RESERVATION_NOT_FOUND"),
    grpc.StatusCode.ALREADY_EXISTS: Mapping(409, "DUPLICATE_REQUEST"),
    grpc.StatusCode.PERMISSION_DENIED: Mapping(403, "FORBIDDEN"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: Mapping(429, "RATE_LIMITED", retry_after_sec=_RETRY_SOON),
    grpc.StatusCode.FAILED_PRECONDITION: Mapping(409, "RESERVATION_NOT_HELD"),
    grpc.StatusCode.ABORTED: Mapping(503, "UPSTREAM_UNAVAILABLE", retry_after_sec=_RETRY_SOON),
    grpc.StatusCode.OUT_OF_RANGE: Mapping(400, "INVALID_REQUEST"),
    grpc.StatusCode.UNIMPLEMENTED: _BAD_GATEWAY,  # gateway and backend disagree on contract
    grpc.StatusCode.INTERNAL: _BAD_GATEWAY,
    grpc.StatusCode.UNAVAILABLE: Mapping(
        503, "UPSTREAM_UNAVAILABLE", trips_breaker=True, retry_after_sec=_RETRY_SOON
    ),
    grpc.StatusCode.DATA_LOSS: _BAD_GATEWAY,
    # The gateway's own credentials towards the backend: a deployment fault, not the caller's.
    grpc.StatusCode.UNAUTHENTICATED: _BAD_GATEWAY,
}

_MESSAGES = {
    "UPSTREAM_UNAVAILABLE": "the {backend} service is unavailable; retry shortly",
    "UPSTREAM_TIMEOUT": "the {backend} service did not answer in time",
    "INTERNAL_ERROR": "the {backend} service failed; quote the trace_id",
}


def from_error(error: common_pb2.Error, backend: str) -> BackendError:
    """The `error` field of a response. The backend's message is passed on for refusals (it is
    written for callers: "seat A-12 is taken"), but not for failures, which may leak internals.
    """
    mapping = BY_ERROR_CODE.get(error.code, _BAD_GATEWAY)
    if mapping.code in _MESSAGES or not error.message:
        message = _default_message(mapping.code, backend)
    else:
        message = error.message[:_MAX_MESSAGE]
    return _error(mapping, message, backend)


def from_status(code: grpc.StatusCode, backend: str) -> BackendError:
    """A failed call. The status details are never shown: they are the backend's internals."""
    mapping = BY_STATUS.get(code, _BAD_GATEWAY)
    return _error(mapping, _default_message(mapping.code, backend), backend)


def _default_message(code: str, backend: str) -> str:
    template = _MESSAGES.get(code)
    if template is not None:
        return template.format(backend=backend)
    return f"the {backend} service refused the request ({code})"


def _error(mapping: Mapping, message: str, backend: str) -> BackendError:
    return BackendError(
        mapping.status,
        mapping.code,
        message,
        trips_breaker=mapping.trips_breaker,
        retry_after_sec=mapping.retry_after_sec,
        backend=backend,
    )
