"""The seams request instrumentation hangs on, declared beside the `Request` it observes.

Metrics, tracing and access logs each implement a `RequestObserver`; the gateway calls every
observer it was given and nothing else, so an instrument that is switched off costs nothing
per request (no observer, no call). An `AuthObserver` sees the gateway's authentication
refusals (none given: nothing recorded).
"""

from __future__ import annotations

from typing import Protocol

from ticketgate.edge.request import Request


class RequestObserver(Protocol):
    """Sees each HTTP request the gateway answers.

    `begin` runs first, before routing and authentication, in the task that serves the
    request (so it may set context variables, e.g. the current span, and must undo them in
    `end`). `end` runs after the response was sent, with the route's template (never the raw
    path: `/api/v1/reservations/{reservation_id}`) or "unmatched" when no route matched.
    """

    def begin(self, request: Request) -> object: ...

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None: ...


class AuthObserver(Protocol):
    def refused(self, code: str) -> None:
        """A request refused by authentication (the gateway's auth policy): the error code,
        MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT, INVALID_TOKEN or FORBIDDEN."""
