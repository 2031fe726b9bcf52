"""Request and response bodies: the handlers validate with these and the OpenAPI spec is
generated from these, so the documentation cannot drift from the code."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from ticketgate.edge.errors import ErrorDetail
from ticketgate.waitingroom.model import Frontier
from ticketgate.waitingroom.service import EVENT_ID_PATTERN

# The pattern is enforced by WaitingRoom.check_event_id (an empty value gets its own code,
# MISSING_EVENT_ID); the document states it from the same regular expression.
EVENT_ID_REGEX = f"^{EVENT_ID_PATTERN.pattern}$"
EventId = Annotated[
    str,
    msgspec.Meta(
        max_length=64, description="Event identifier", extra_json_schema={"pattern": EVENT_ID_REGEX}
    ),
]
# The same, as a path parameter (always present, so checked whole).
EventIdParam = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=EVENT_ID_REGEX, description="Event")
]
WaitingToken = Annotated[str, msgspec.Meta(max_length=512, description="Signed waiting token")]
# The `token` query parameter of status and leave (empty is MISSING_TOKEN).
TokenParam = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True):
    __openapi_required__: ClassVar[tuple[str, ...]] = ("event_id",)

    event_id: EventId = ""
    user_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


# The bodies of the calls every fan makes hold only numbers and strings: not tracked by the
# garbage collector (gc=False), so each response made adds nothing to its next young pass.
class JoinResponse(msgspec.Struct, gc=False):
    waiting_token: str
    position_hint: int
    status: Literal["waiting"] = "waiting"


class FrontierBody(msgspec.Struct, gc=False):
    """The event's serving frontier: the bucket's released capacity goes to the head of the
    line in order, so positions 1..earmarked may enter now and a waiter's turn comes when
    `earmarked` reaches its position."""

    released: Annotated[
        int, msgspec.Meta(description="Admission capacity released so far (used + earmarked)")
    ]
    used: Annotated[int, msgspec.Meta(description="Admissions granted so far")]
    earmarked: Annotated[
        int,
        msgspec.Meta(description="Released, unused capacity: positions 1..earmarked may enter"),
    ]


def frontier_body(frontier: Frontier) -> FrontierBody:
    """Frontier.released and .earmarked, with `earmarked` worked out once, not once per
    property (on every status response)."""
    used = frontier.used
    whole = int(frontier.tokens)
    earmarked = (whole if whole > 0 else 0) + frontier.held
    return FrontierBody(used + earmarked + frontier.lapsed, used, earmarked)


EventStateName = Literal["open", "paused", "closed", "sold_out"]


class StatusResponse(msgspec.Struct, gc=False):
    status: Literal["waiting", "ready", "admitted", "expired"]
    position: int
    eta_sec: Annotated[
        int | None,
        msgspec.Meta(
            description="Seconds until this waiter may enter: its distance to the frontier "
            "over the measured release rate (0 when ready); null while no ETA can be "
            "promised (event_state paused or sold_out)"
        ),
    ]
    eta_confidence: float
    waiting_time: int
    ready_for_entry: Annotated[
        bool, msgspec.Meta(description="An enter now would be granted (the waiter's turn)")
    ]
    poll_after_ms: Annotated[
        int, msgspec.Meta(description="Poll again after this long: when the turn comes")
    ]
    frontier: FrontierBody
    event_state: Annotated[
        EventStateName,
        msgspec.Meta(
            description="open; paused (nobody is admitted for now); closed (no newcomers, "
            "those inside still go through); sold_out (nothing left: stop waiting). "
            "sold_out wins over paused, paused over closed"
        ),
    ] = "open"


class EnterRequest(msgspec.Struct, forbid_unknown_fields=True):
    __openapi_required__: ClassVar[tuple[str, ...]] = ("waiting_token",)

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
