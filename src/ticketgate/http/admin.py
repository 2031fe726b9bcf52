"""Operator endpoints under /api/v1/admin (role `admin`): registering events, events with
live stats, runtime settings per event (pause, close, sold out), sweeping ghosts on demand.

A change is written to the queue store, where the join/status/enter steps read it, so it is
in effect on every worker and pod at their next call; each change is audit-logged
(`ticketgate.audit`: actor, action, event_id, before, after, trace_id).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any, ClassVar, TypeVar, cast

import msgspec

from ticketgate.digits import ascii_int
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.schemas import (
    EventId,
    EventIdParam,
    EventStateName,
    FrontierBody,
    frontier_body,
)
from ticketgate.waitingroom.events import (
    CAPACITY_RANGE,
    LIST_DEFAULT,
    LIST_MAX,
    RATE_RANGE,
    WINDOW_MIN,
    EventAdmin,
    EventSettings,
    EventView,
    SettingsChange,
)

audit = logging.getLogger("ticketgate.audit")
_NO_STORE = ((b"cache-control", b"no-store"),)
BASE = "/api/v1/admin/events"

Window = Annotated[int, msgspec.Meta(ge=WINDOW_MIN, le=1_000_000)]
Capacity = Annotated[int, msgspec.Meta(ge=CAPACITY_RANGE[0], le=CAPACITY_RANGE[1])]
Rate = Annotated[float, msgspec.Meta(ge=RATE_RANGE[0], le=RATE_RANGE[1])]


class EventSettingsBody(msgspec.Struct):
    """The settings in effect: the operator's override where set, else the process setting."""

    admission_window: int
    bucket_capacity: int
    bucket_refill_per_sec: float
    paused: bool
    closed: bool
    sold_out: bool


class EventResponse(msgspec.Struct):
    event_id: str
    state: Annotated[
        EventStateName,
        msgspec.Meta(
            description="What waiters see as event_state: sold_out, else paused, else closed, "
            "else open"
        ),
    ]
    registered: Annotated[
        bool,
        msgspec.Meta(description="Registered by an operator (else created by a join)"),
    ]
    waiting: Annotated[int, msgspec.Meta(description="Waiters in the queue now")]
    admitted_last_minute: int
    admission_rate_per_sec: Annotated[
        float,
        msgspec.Meta(
            description="Measured release rate: admissions per second over the time the "
            "last 1/5/15 minutes really cover, weighted, net of the bucket's initial fill"
        ),
    ]
    tail_eta_sec: Annotated[
        int, msgspec.Meta(description="ETA of a newcomer joining now (the fans' estimator)")
    ]
    eta_confidence: Annotated[
        float, msgspec.Meta(description="0 while the configured rate stands in for a measured one")
    ]
    frontier: FrontierBody
    oldest_wait_sec: Annotated[
        int, msgspec.Meta(description="How long the head of the queue has waited (±32 joins)")
    ]
    settings: EventSettingsBody
    overridden: Annotated[
        list[str], msgspec.Meta(description="Settings changed at runtime for this event")
    ]


class EventListResponse(msgspec.Struct):
    events: list[EventResponse]
    limit: int


class EventPatch(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update: absent fields stay as they are; `null` returns a number to the
    process setting. Pausing stops admissions (enter answers 503 ADMISSIONS_PAUSED);
    closing refuses new joins (409 QUEUE_CLOSED) while those inside keep their places;
    sold out refuses joins and enters (409 SOLD_OUT) and every waiter's status says so."""

    admission_window: Window | msgspec.UnsetType | None = msgspec.UNSET
    bucket_capacity: Capacity | msgspec.UnsetType | None = msgspec.UNSET
    bucket_refill_per_sec: Rate | msgspec.UnsetType | None = msgspec.UNSET
    paused: bool | msgspec.UnsetType = msgspec.UNSET
    closed: bool | msgspec.UnsetType = msgspec.UNSET
    sold_out: bool | msgspec.UnsetType = msgspec.UNSET


class EventCreate(EventPatch, forbid_unknown_fields=True):
    """Register an event, optionally with its first settings (e.g. paused until the sale)."""

    __openapi_required__: ClassVar[tuple[str, ...]] = ("event_id",)  # empty: MISSING_EVENT_ID

    event_id: EventId = ""


_P = TypeVar("_P", bound=EventPatch)


def with_window_max(base: type[_P], window_max: int) -> type[_P]:
    """`base` (EventPatch, EventCreate) with this gateway's admission_window bound (the last
    QUEUE_MIN_WAIT position), so the body is refused, and documented, with the limit the
    update enforces."""
    window = Annotated[int, msgspec.Meta(ge=WINDOW_MIN, le=window_max)]
    schema = msgspec.defstruct(
        base.__name__,
        [("admission_window", window | msgspec.UnsetType | None, msgspec.UNSET)],
        bases=(base,),
        forbid_unknown_fields=True,
    )
    schema.__doc__ = base.__doc__
    return cast(type[_P], schema)


ListLimit = Annotated[int, msgspec.Meta(ge=1, le=LIST_MAX)]


class SweepResponse(msgspec.Struct):
    event_id: str
    removed: Annotated[int, msgspec.Meta(description="Ghost waiters removed")]


def event_response(view: EventView) -> EventResponse:
    settings = view.settings
    overrides = view.overrides
    overridden = [
        name
        for name, value in (
            ("admission_window", overrides.admission_window),
            ("bucket_capacity", overrides.bucket_capacity),
            ("bucket_refill_per_sec", overrides.bucket_refill_per_sec),
            ("paused", overrides.paused or None),
            ("closed", overrides.closed or None),
            ("sold_out", overrides.sold_out or None),
        )
        if value is not None
    ]
    return EventResponse(
        event_id=view.event_id,
        state=view.state.value,
        registered=view.registered,
        waiting=view.waiting,
        admitted_last_minute=view.admitted_last_minute,
        admission_rate_per_sec=round(view.admission_rate, 3),
        tail_eta_sec=view.tail_eta_sec,
        eta_confidence=view.eta_confidence,
        frontier=frontier_body(view.frontier),
        oldest_wait_sec=view.oldest_wait_sec,
        settings=EventSettingsBody(
            settings.admission_window,
            settings.bucket_capacity,
            settings.bucket_refill_per_sec,
            settings.paused,
            settings.closed,
            settings.sold_out,
        ),
        overridden=overridden,
    )


def _change(patch: EventPatch) -> SettingsChange:
    values: dict[str, Any] = {}
    reset: set[str] = set()
    for name in ("admission_window", "bucket_capacity", "bucket_refill_per_sec"):
        value = getattr(patch, name)
        if value is None:
            reset.add(name)
        elif value is not msgspec.UNSET:
            values[name] = value
    for name in ("paused", "closed", "sold_out"):
        value = getattr(patch, name)
        if value is not msgspec.UNSET:
            values[name] = value
    return SettingsChange(**values, reset=frozenset(reset))


class AdminRoutes:
    def __init__(self, admin: EventAdmin) -> None:
        self.admin = admin
        self._patch = with_window_max(EventPatch, admin.window_max)
        self._create = with_window_max(EventCreate, admin.window_max)

    async def list_events(self, request: Request) -> Response:
        raw = request.query_value("limit")
        limit = LIST_DEFAULT
        if raw is not None:
            parsed = ascii_int(raw)
            if parsed is None or not 1 <= parsed <= LIST_MAX:
                raise ApiError("INVALID_REQUEST", f"limit must be an integer from 1 to {LIST_MAX}")
            limit = parsed
        views = await self.admin.list(limit)
        body = EventListResponse([event_response(v) for v in views], limit)
        return Response.json(200, body, _NO_STORE)

    async def get_event(self, request: Request) -> Response:
        view = await self.admin.get(request.path_params["event_id"])
        return Response.json(200, event_response(view), _NO_STORE)

    async def create_event(self, request: Request) -> Response:
        body = request.json(self._create)
        if not body.event_id:
            raise ApiError("MISSING_EVENT_ID", "event_id is required")
        view = await self.admin.create(body.event_id, _change(body))
        _audit(request, "event.create", body.event_id, None, _settings(view))
        return Response.json(201, event_response(view), _NO_STORE)

    async def update_event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        change = _change(request.json(self._patch))
        before, view = await self.admin.update(event_id, change)
        old = EventSettings.effective(before, self.admin.settings)
        _audit(request, "event.update", event_id, dataclasses.asdict(old), _settings(view))
        return Response.json(200, event_response(view), _NO_STORE)

    async def sweep_event(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        removed = await self.admin.sweep(event_id)
        _audit(request, "event.sweep", event_id, None, {"removed": removed})
        return Response.json(200, SweepResponse(event_id, removed), _NO_STORE)

    def routes(self) -> list[Route]:
        return [
            dataclasses.replace(route, params=(("event_id", EventIdParam),))
            if "{event_id}" in route.path
            else route
            for route in self._routes()
        ]

    def _routes(self) -> list[Route]:
        err = None
        common: tuple[tuple[int, type | None, str], ...] = (
            (401, err, "MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT, INVALID_TOKEN"),
            (403, err, "FORBIDDEN: the caller lacks the admin role"),
            (503, err, "QUEUE_UNAVAILABLE"),
        )
        not_found = (
            404,
            err,
            "EVENT_NOT_FOUND: not registered (QUEUE_AUTO_CREATE_EVENTS=false)",
        )
        return [
            Route(
                "GET",
                BASE,
                self.list_events,
                AuthPolicy.ADMIN,
                "Events with live stats, most waiters first",
                None,
                (
                    (200, EventListResponse, "Events by waiting count, descending"),
                    (400, err, "INVALID_REQUEST: limit out of range"),
                    *common,
                ),
                query=(("limit?", f"How many events, 1-{LIST_MAX} (default {LIST_DEFAULT})"),),
                params=(("limit", ListLimit),),
            ),
            Route(
                "POST",
                BASE,
                self.create_event,
                AuthPolicy.ADMIN,
                "Register an event (needed before its first join unless "
                "QUEUE_AUTO_CREATE_EVENTS=true)",
                self._create,
                (
                    (201, EventResponse, "The registered event with its settings"),
                    (
                        400,
                        err,
                        "MISSING_EVENT_ID, INVALID_REQUEST: malformed body, event_id or "
                        "out-of-range value",
                    ),
                    (409, err, "EVENT_EXISTS: the event is registered already"),
                    *common,
                ),
            ),
            Route(
                "GET",
                f"{BASE}/{{event_id}}",
                self.get_event,
                AuthPolicy.ADMIN,
                "One event's live stats and effective settings",
                None,
                (
                    (200, EventResponse, "The event (zeros for one nobody has joined)"),
                    (400, err, "INVALID_REQUEST: malformed event_id"),
                    not_found,
                    *common,
                ),
            ),
            Route(
                "PATCH",
                f"{BASE}/{{event_id}}",
                self.update_event,
                AuthPolicy.ADMIN,
                "Change an event's settings at runtime (every worker, within a second)",
                self._patch,
                (
                    (200, EventResponse, "The event with its new settings"),
                    (400, err, "INVALID_REQUEST: malformed body, event_id or out-of-range value"),
                    not_found,
                    *common,
                ),
            ),
            Route(
                "POST",
                f"{BASE}/{{event_id}}/sweep",
                self.sweep_event,
                AuthPolicy.ADMIN,
                "Remove the event's ghost waiters (unseen for the heartbeat TTL) now",
                None,
                (
                    (200, SweepResponse, "How many were removed"),
                    (400, err, "INVALID_REQUEST: malformed event_id"),
                    not_found,
                    *common,
                ),
            ),
        ]


def _settings(view: EventView) -> dict[str, Any]:
    return dataclasses.asdict(view.settings)


def _audit(
    request: Request,
    action: str,
    event_id: str,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    """One record per change; the fields ride in `extra` for the structured log renderer."""
    actor = request.user_id
    audit.info(
        "%s %s by %s",
        action,
        event_id,
        actor,
        extra={
            "actor": actor,
            "action": action,
            "event_id": event_id,
            "before": before,
            "after": after,
            "trace_id": request.trace_id,
        },
    )
