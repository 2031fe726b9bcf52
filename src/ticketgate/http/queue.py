"""Queue endpoints: join, status, enter, leave (README, API table)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Idempotency, Route
from ticketgate.http.schemas import (
    EnterRequest,
    EnterResponse,
    JoinRequest,
    JoinResponse,
    LeaveRequest,
    LeaveResponse,
    StatusResponse,
    TokenParam,
    frontier_body,
)
from ticketgate.middleware.idempotency import idempotency_key_of
from ticketgate.waitingroom.model import QueueError
from ticketgate.waitingroom.service import WaitingRoom

_NO_STORE = ((b"cache-control", b"no-store"),)


def _required_token(value: str) -> str:
    if not value:
        raise ApiError("MISSING_TOKEN", "a waiting token is required ('token' query parameter)")
    return value


def _unobserved(operation: str, status: str) -> None:
    return None


class QueueRoutes:
    """The queue's four handlers. Each reports its outcome to the room's observer itself
    ("ok" or the refusal's code, as the handler saw it: an idempotent replay answered by the
    interceptor is not an operation): a wrapper coroutine per handler cost a layer of
    awaiting on join and status, the calls every fan makes."""

    def __init__(self, room: WaitingRoom) -> None:
        self.room = room
        observer = room.observer
        self._report: Callable[[str, str], None] = (
            _unobserved if observer is None else observer.operation
        )

    async def join(self, request: Request) -> Response:
        try:
            body = request.json(JoinRequest)
            if not body.event_id:
                raise ApiError("MISSING_EVENT_ID", "event_id is required")
            user = request.user_id
            if body.user_id and user and body.user_id != user:
                raise ApiError("FORBIDDEN", "user_id does not match the authenticated user")
            # The key as the idempotency interceptor scoped it to this caller (the store's
            # own replay, atomic with the join, then cannot hand one client another's token).
            key = request.idempotency_scope or idempotency_key_of(request)
            outcome = await self.room.join(body.event_id, user, key)
            if outcome.duplicate:
                raise ApiError(
                    "DUPLICATE_REQUEST",
                    "this user is already waiting for this event",
                    extra={
                        "waiting_token": outcome.waiting_token,
                        "position_hint": outcome.position,
                    },
                )
        except Exception as exc:
            self._failed("join", exc)
            raise
        self._report("join", "ok")
        return Response.json(202, JoinResponse(outcome.waiting_token, outcome.position), _NO_STORE)

    async def status(self, request: Request) -> Response:
        try:
            view = await self.room.status(_required_token(request.query_param("token")))
        except Exception as exc:
            self._failed("status", exc)
            raise
        self._report("status", "ok")
        # Positional: the call every waiting fan repeats, and a Struct made from keywords
        # costs ~0.3 µs more (the fields are StatusView's, in the same order). `_value_` is
        # the member's value as a plain attribute; `.value` is a Python-level descriptor.
        return Response.json(
            200,
            StatusResponse(
                view.status,  # type: ignore[arg-type]
                view.position,
                view.eta_sec,
                view.eta_confidence,
                view.waiting_time,
                view.ready_for_entry,
                view.poll_after_ms,
                frontier_body(view.frontier),
                view.event_state._value_,
            ),
            _NO_STORE,
        )

    async def enter(self, request: Request) -> Response:
        try:
            body = request.json(EnterRequest)
            admission = await self.room.enter(_required_token(body.waiting_token), request.user_id)
        except Exception as exc:
            self._failed("enter", exc)
            raise
        self._report("enter", "ok")
        return Response.json(
            200, EnterResponse(admission.reservation_token, admission.ttl_sec), _NO_STORE
        )

    async def leave(self, request: Request) -> Response:
        try:
            token = request.query_param("token")
            if not token and request.body:
                try:
                    body = msgspec.json.decode(request.body, type=LeaveRequest)
                except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
                    raise ApiError(
                        "INVALID_REQUEST", 'body must be {"waiting_token": ...}'
                    ) from None
                token = body.waiting_token or body.token
            left = await self.room.leave(_required_token(token))
        except Exception as exc:
            self._failed("leave", exc)
            raise
        self._report("leave", "ok")
        message = (
            "left the queue" if left else "not in the queue (already left, admitted or expired)"
        )
        return Response.json(200, LeaveResponse("left", message))

    def _failed(self, operation: str, error: Exception) -> None:
        """Report a refused or failed operation: the refusal's code, else INTERNAL_ERROR."""
        code = error.code if isinstance(error, ApiError | QueueError) else "INTERNAL_ERROR"
        self._report(operation, code)

    def routes(self) -> list[Route]:
        base = "/api/v1/queue"
        err = None
        join, status, enter, leave = self.join, self.status, self.enter, self.leave
        return [
            Route(
                "POST",
                f"{base}/join",
                join,
                AuthPolicy.OPTIONAL,
                "Join an event's waiting queue",
                JoinRequest,
                (
                    (202, JoinResponse, "Joined; poll status with the token"),
                    (400, err, "MISSING_EVENT_ID, INVALID_REQUEST, INVALID_IDEMPOTENCY_KEY"),
                    (401, err, "INVALID_TOKEN_FORMAT, INVALID_TOKEN"),
                    (403, err, "FORBIDDEN: user_id differs from the token's user"),
                    (
                        404,
                        err,
                        "EVENT_NOT_FOUND: the event is not registered "
                        "(QUEUE_AUTO_CREATE_EVENTS=false)",
                    ),
                    (
                        409,
                        err,
                        "DUPLICATE_REQUEST: carries the existing waiting_token; "
                        "QUEUE_CLOSED: an operator closed the queue to newcomers; "
                        "SOLD_OUT: the event is sold out; "
                        "ALREADY_ADMITTED: this signed-in user was admitted to the event already",
                    ),
                    (503, err, "QUEUE_UNAVAILABLE; UPSTREAM_UNAVAILABLE: idempotency store"),
                ),
                idempotency=Idempotency.OPTIONAL,
            ),
            Route(
                "GET",
                f"{base}/status",
                status,
                AuthPolicy.NONE,
                "Position, ETA and readiness; also the heartbeat",
                None,
                (
                    (200, StatusResponse, "Current place in the queue"),
                    (400, err, "MISSING_TOKEN"),
                    (404, err, "TOKEN_NOT_FOUND: forged or malformed token"),
                    (503, err, "QUEUE_UNAVAILABLE"),
                ),
                (("token", "Waiting token from join"),),
                params=(("token", TokenParam),),
            ),
            Route(
                "POST",
                f"{base}/enter",
                enter,
                AuthPolicy.REQUIRED,
                "Leave the queue through the door: get a single-use reservation token",
                EnterRequest,
                (
                    (200, EnterResponse, "Admission granted"),
                    (400, err, "MISSING_TOKEN, INVALID_REQUEST"),
                    (401, err, "MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT, INVALID_TOKEN"),
                    (403, err, "FORBIDDEN: token belongs to another user"),
                    (404, err, "TOKEN_NOT_FOUND"),
                    (
                        409,
                        err,
                        "NOT_READY; DUPLICATE_REQUEST: this token was admitted already; "
                        "ALREADY_ADMITTED: this user was admitted to the event already "
                        "(one admission per person and event, whatever the token); "
                        "SOLD_OUT: the event is sold out",
                    ),
                    (410, err, "TOKEN_EXPIRED"),
                    (429, err, "ADMISSION_THROTTLED (Retry-After)"),
                    (503, err, "QUEUE_UNAVAILABLE, ADMISSIONS_PAUSED by an operator (Retry-After)"),
                ),
                idempotency=Idempotency.OPTIONAL,
            ),
            *(
                Route(
                    method,
                    f"{base}/leave",
                    leave,
                    AuthPolicy.NONE,
                    "Leave the queue (POST for navigator.sendBeacon)",
                    LeaveRequest if method == "POST" else None,
                    (
                        (200, LeaveResponse, "Left (idempotent)"),
                        (400, err, "MISSING_TOKEN, INVALID_REQUEST"),
                        (404, err, "TOKEN_NOT_FOUND"),
                        (503, err, "QUEUE_UNAVAILABLE"),
                    ),
                    # POST may carry it in its body instead (older sendBeacon callers).
                    (("token", "Waiting token from join"),),
                    body_required=False,
                    params=(("token", TokenParam),),
                    any_media_type=True,  # navigator.sendBeacon posts a string as text/plain
                )
                for method in ("DELETE", "POST")
            ),
        ]
