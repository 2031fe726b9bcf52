"""The two seams instrumentation hangs on: HTTP requests and Redis operations.

Metrics, tracing and access logs each implement an observer; the edge and the script runner
call every observer they were given and nothing else, so an instrument that is switched off
costs nothing per request (no observer, no call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ticketgate.http.core import Request


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


class OperationObserver(Protocol):
    """Sees each Redis script call (`operation` is the script's name, a fixed small set)."""

    def begin(self, operation: str) -> object: ...

    def end(
        self, operation: str, state: object, duration_s: float, error: BaseException | None
    ) -> None: ...


_redis_observers: tuple[OperationObserver, ...] = ()


def redis_observers() -> tuple[OperationObserver, ...]:
    return _redis_observers


def set_redis_observers(observers: tuple[OperationObserver, ...]) -> None:
    """Process-wide, like the metric registry and the tracer provider they feed.

    Replaces (never appends), so building several apps in one process does not count twice.
    """
    global _redis_observers
    _redis_observers = observers
