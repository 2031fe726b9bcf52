"""The one error envelope: `{"error": {"code", "message", "trace_id"}}` with the right status."""

from __future__ import annotations

from typing import Protocol

import msgspec

STATUS_BY_CODE: dict[str, int] = {
    "MISSING_EVENT_ID": 400,
    "MISSING_TOKEN": 400,
    "INVALID_REQUEST": 400,
    "IDEMPOTENCY_REQUIRED": 400,
    "INVALID_IDEMPOTENCY_KEY": 400,
    "MISSING_AUTHORIZATION": 401,
    "INVALID_TOKEN_FORMAT": 401,
    "INVALID_TOKEN": 401,
    "INVALID_SIGNATURE": 401,
    "FORBIDDEN": 403,
    "TOKEN_NOT_FOUND": 404,
    "RESERVATION_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "EVENT_NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "DUPLICATE_REQUEST": 409,
    "NOT_READY": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "IDEMPOTENCY_IN_PROGRESS": 409,
    "SEAT_UNAVAILABLE": 409,
    "INSUFFICIENT_INVENTORY": 409,
    "RESERVATION_NOT_HELD": 409,
    "QUEUE_CLOSED": 409,
    "RESERVATION_IN_PROGRESS": 409,
    "SEAT_LIMIT_EXCEEDED": 409,
    "SOLD_OUT": 409,
    "ALREADY_ADMITTED": 409,
    "EVENT_EXISTS": 409,
    "TOKEN_EXPIRED": 410,
    "RESERVATION_EXPIRED": 410,
    "PAYMENT_NOT_APPROVED": 412,
    "REQUEST_TIMEOUT": 408,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "ADMISSION_THROTTLED": 429,
    "RATE_LIMITED": 429,
    "INTERNAL_ERROR": 500,
    "QUEUE_UNAVAILABLE": 503,
    "ADMISSIONS_PAUSED": 503,
    "UPSTREAM_UNAVAILABLE": 503,
    "SHUTTING_DOWN": 503,
    "UPSTREAM_TIMEOUT": 504,
}


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    trace_id: str


class ErrorEnvelope(msgspec.Struct):
    error: ErrorDetail


class Refusal(Protocol):
    """What a domain refuses with (waitingroom's QueueError, booking's BookingError): a wire
    code of the table above, a message for the caller, and when a retry may succeed."""

    @property
    def code(self) -> str: ...

    @property
    def message(self) -> str: ...

    @property
    def retry_after_sec(self) -> float | None: ...


class ApiError(Exception):
    """Raised anywhere in the edge; the gateway renders it as the envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 500)
        self.headers = headers
        self.extra = extra or {}

    @classmethod
    def from_refusal(cls, refusal: Refusal, *, status: int | None = None) -> ApiError:
        """The envelope of a domain's refusal (the queue's, booking's); `status` overrides
        the code's own (a backend's INTERNAL_ERROR is a 502, not a 500)."""
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if refusal.retry_after_sec is not None:
            seconds = max(1, int(-(-refusal.retry_after_sec // 1)))
            headers = ((b"retry-after", str(seconds).encode()),)
        return cls(refusal.code, refusal.message, status=status, headers=headers)


_encode = msgspec.json.Encoder().encode


def error_body(code: str, message: str, trace_id: str, extra: dict[str, object] | None) -> bytes:
    body: dict[str, object] = {"error": {"code": code, "message": message, "trace_id": trace_id}}
    if extra:
        body.update(extra)
    return _encode(body)
