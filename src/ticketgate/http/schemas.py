"""Request and response bodies: the handlers validate with these and the OpenAPI spec is
generated from these, so the documentation cannot drift from the code."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ticketgate.http.errors import ErrorDetail

EventId = Annotated[str, msgspec.Meta(max_length=64, description="Event identifier")]
WaitingToken = Annotated[str, msgspec.Meta(max_length=512, description="Signed waiting token")]


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True):
    event_id: EventId = ""
    user_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


class JoinResponse(msgspec.Struct):
    waiting_token: str
    position_hint: int
    status: Literal["waiting"] = "waiting"


EventStateName = Literal["open", "paused", "closed", "sold_out"]


class StatusResponse(msgspec.Struct):
    status: Literal["waiting", "ready", "admitted", "expired"]
    position: int
    eta_sec: Annotated[
        int | None,
        msgspec.Meta(
            description="Seconds until admission; null while no ETA can be promised "
            "(event_state paused or sold_out)"
        ),
    ]
    eta_confidence: float
    waiting_time: int
    ready_for_entry: bool
    poll_after_ms: int
    event_state: Annotated[
        EventStateName,
        msgspec.Meta(
            description="open; paused (nobody is admitted for now); closed (no newcomers, "
            "those inside still go through); sold_out (nothing left: stop waiting). "
            "sold_out wins over paused, paused over closed"
        ),
    ] = "open"


class EnterRequest(msgspec.Struct, forbid_unknown_fields=True):
    waiting_token: WaitingToken = ""


class EnterResponse(msgspec.Struct):
    reservation_token: str
    ttl_sec: int
    admission: Literal["granted"] = "granted"


class LeaveRequest(msgspec.Struct):
    """sendBeacon bodies may carry the token instead of the query string."""

    waiting_token: WaitingToken = ""
    token: WaitingToken = ""


class LeaveResponse(msgspec.Struct):
    status: Literal["left"]
    message: str


class HealthResponse(msgspec.Struct):
    status: Literal["healthy"]
    timestamp: str


DependencyState = Literal["connected", "unavailable", "not_configured"]


class ReadyDependencies(msgspec.Struct):
    """What /readyz found; READINESS_REQUIRED says which of them may not be unavailable."""

    redis: DependencyState
    reservation: DependencyState
    payment: DependencyState


class ReadyResponse(msgspec.Struct, omit_defaults=True):
    status: Literal["ready", "not_ready"]
    dependencies: ReadyDependencies
    error: ErrorDetail | None = None  # with 503: why, in the envelope's fields


class VersionResponse(msgspec.Struct):
    version: str
    environment: str
    store: str
    python: str
