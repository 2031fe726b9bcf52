"""Routes and the two kinds of step the gateway runs around their handlers.

A `Route` declares its auth policy, rate-limit budget and idempotency need; a `Guard`
(rate limiting) checks a request before the handler, an `Interceptor` (idempotency) wraps
the handler. Both are asked once per route at start-up, so a route they leave alone pays
nothing per request.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ticketgate.edge.request import Request, Response


class AuthPolicy(enum.Enum):
    NONE = "none"  # credentials ignored (health, version)
    OPTIONAL = "optional"  # anonymous allowed; a valid token still identifies the caller
    REQUIRED = "required"
    ADMIN = "admin"  # required, and the principal must hold the `admin` role


Handler = Callable[[Request], Awaitable[Response]]


class Idempotency(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"
    ADMIN = "admin"  # required, and the principal must hold the `admin` role


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    auth: AuthPolicy = AuthPolicy.OPTIONAL
    summary: str = ""
    request_schema: type | None = None
    responses: tuple[tuple[int, type | None, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()  # (name, description); `name?` is optional
    rate_limited: bool = True
    idempotency: Idempotency = Idempotency.NONE
    body_required: bool = True  # only read when request_schema is set
    # A body of a route with request_schema must be sent as JSON (415 otherwise), except
    # on a route that takes any media type (leave's POST: navigator.sendBeacon sends a
    # string as text/plain and cannot choose).
    any_media_type: bool = False
    # Which rate-limit budget the route draws from: "default" (per user, else per IP) or
    # "auth" (the lower per-IP budget of login and register).
    rate_budget: str = "default"
    # The type of each path or query parameter the handler parses (an Annotated msgspec
    # type); the OpenAPI document states its constraints. Unlisted parameters are strings.
    params: tuple[tuple[str, Any], ...] = ()


Headers = tuple[tuple[bytes, bytes], ...]
Check = Callable[[Request], Headers]


class Guard(Protocol):
    """A synchronous admission check run after auth, before the handler (rate limiting).

    `check` is called once per route at start-up and returns the per-request check, or None
    for a route the guard leaves alone. The check raises ApiError to refuse the request, or
    returns headers the gateway adds to whatever answer follows (errors included). Being a
    plain call inlined in the edge's request loop rather than a wrapper around the handler,
    it costs no coroutine layer and no copy of the response.
    """

    def check(self, route: Route) -> Check | None: ...


class Interceptor(Protocol):
    """A step around a route's handler (idempotency, ...), run after auth and the guard.

    `wrap` is called once per route at start-up; returning the handler unchanged costs
    nothing per request, which keeps unaffected routes on the bare path.
    """

    def wrap(self, route: Route, handler: Handler) -> Handler: ...
