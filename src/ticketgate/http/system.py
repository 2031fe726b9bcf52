"""Liveness, readiness, version and the OpenAPI document.

Readiness reports each dependency the gateway serves with: Redis (the queue store) and the
reservation and payment backends. A required one that is unavailable makes /readyz a fast 503
with Retry-After, so a load balancer stops sending fans to a pod that would only fail them;
READINESS_REQUIRED names the required ones (all three by default), and an optional one that is
down is reported but keeps the pod in rotation. Backend probes are gRPC health checks whose
answers are kept for PROBE_CACHE_SEC, so a load balancer polling every pod often costs each
backend at most one check per second per worker; all probes run at once, each within
READY_TIMEOUT_SEC, which bounds the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from ticketgate import __version__
from ticketgate.edge.errors import ErrorDetail
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.openapi import build_openapi
from ticketgate.http.schemas import (
    DependencyState,
    HealthResponse,
    ReadyDependencies,
    ReadyResponse,
    VersionResponse,
)
from ticketgate.http.settings import DEPENDENCIES, ReadinessSettings
from ticketgate.redisio.settings import RedisSettings
from ticketgate.waitingroom.store import QueueStore

log = logging.getLogger("ticketgate.readiness")

READY_TIMEOUT_SEC = 0.5
PROBE_CACHE_SEC = 1.0
CONNECTED: DependencyState = "connected"
UNAVAILABLE: DependencyState = "unavailable"
NOT_CONFIGURED: DependencyState = "not_configured"

# `await probe(within_sec)` -> "connected" or "unavailable" (backends/health.GrpcHealthProbe).
Probe = Callable[[float], Awaitable[str]]


class CachedProbe:
    """One backend's probe: its last answer is kept for `ttl` seconds, and concurrent readiness
    requests share the one probe in flight instead of each sending their own."""

    def __init__(
        self,
        probe: Probe,
        ttl: float = PROBE_CACHE_SEC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl = ttl
        self._clock = clock
        self._answer: DependencyState | None = None
        self._at = 0.0
        self._running: asyncio.Task[DependencyState] | None = None

    async def __call__(self, within_sec: float) -> DependencyState:
        if self._answer is not None and self._clock() - self._at < self._ttl:
            return self._answer
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._run(within_sec))
        # Shielded: a client that hangs up must not cancel the probe other requests await.
        return await asyncio.shield(self._running)

    async def _run(self, within_sec: float) -> DependencyState:
        try:
            answer = await asyncio.wait_for(self._probe(within_sec), within_sec)
        except TimeoutError:
            answer = UNAVAILABLE
        except Exception:  # a probe bug must not make readiness a 500
            log.exception("readiness probe failed")
            answer = UNAVAILABLE
        state: DependencyState = CONNECTED if answer == CONNECTED else UNAVAILABLE
        self._answer, self._at, self._running = state, self._clock(), None
        return state


class SystemRoutes:
    def __init__(
        self,
        environment: str,
        redis: RedisSettings,
        store: QueueStore,
        backends: Mapping[str, Probe],
        readiness: ReadinessSettings,
    ) -> None:
        """`backends` maps "reservation" and "payment" to their probes; one without a probe
        is reported as not configured."""
        self.environment = environment
        self.redis = redis
        self.store = store
        self._backends = {name: CachedProbe(probe) for name, probe in backends.items()}
        self._required = readiness.required
        self._openapi: bytes | None = None
        self._routes: list[Route] = []

    async def healthz(self, request: Request) -> Response:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Response.json(200, HealthResponse("healthy", now))

    async def _redis(self) -> DependencyState:
        """Not cached: a ping rides the pipelined connection and costs next to nothing."""
        if not self.redis.enabled:
            return NOT_CONFIGURED
        try:
            up = await asyncio.wait_for(self.store.ping(), READY_TIMEOUT_SEC)
        except TimeoutError:
            up = False
        return CONNECTED if up else UNAVAILABLE

    async def _backend(self, name: str) -> DependencyState:
        probe = self._backends.get(name)
        return NOT_CONFIGURED if probe is None else await probe(READY_TIMEOUT_SEC)

    async def readyz(self, request: Request) -> Response:
        redis, reservation, payment = await asyncio.gather(
            self._redis(), self._backend("reservation"), self._backend("payment")
        )
        dependencies = ReadyDependencies(redis, reservation, payment)
        states = {"redis": redis, "reservation": reservation, "payment": payment}
        down = [
            name for name in DEPENDENCIES if name in self._required and states[name] == UNAVAILABLE
        ]
        if not down:
            return Response.json(200, ReadyResponse("ready", dependencies))
        # The code a client of the queue or of booking would get from the same outage.
        code = "QUEUE_UNAVAILABLE" if "redis" in down else "UPSTREAM_UNAVAILABLE"
        error = ErrorDetail(code, f"not ready: {', '.join(down)} unavailable", request.trace_id)
        return Response.json(
            503, ReadyResponse("not_ready", dependencies, error), ((b"retry-after", b"1"),)
        )

    async def version(self, request: Request) -> Response:
        return Response.json(
            200,
            VersionResponse(
                __version__,
                self.environment,
                self.redis.store_name,
                platform.python_version(),
            ),
        )

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = build_openapi(self._routes)
        return Response(200, self._openapi)

    def routes(self, all_routes: list[Route]) -> list[Route]:
        self._routes = all_routes
        return [
            Route(
                "GET",
                "/healthz",
                self.healthz,
                AuthPolicy.NONE,
                "Liveness",
                None,
                ((200, HealthResponse, "The process is alive"),),
                rate_limited=False,
            ),
            Route(
                "GET",
                "/readyz",
                self.readyz,
                AuthPolicy.NONE,
                "Readiness: each dependency's state",
                None,
                (
                    (200, ReadyResponse, "Ready (an optional dependency may be unavailable)"),
                    (
                        503,
                        ReadyResponse,
                        "A required dependency (READINESS_REQUIRED) is unavailable; "
                        "Retry-After, and `error` names it (QUEUE_UNAVAILABLE for Redis, "
                        "else UPSTREAM_UNAVAILABLE)",
                    ),
                ),
                rate_limited=False,
            ),
            Route(
                "GET",
                "/version",
                self.version,
                AuthPolicy.NONE,
                "Build and runtime",
                None,
                ((200, VersionResponse, "Version"),),
                rate_limited=False,
            ),
            Route(
                "GET",
                "/openapi.json",
                self.openapi,
                AuthPolicy.NONE,
                "This document",
                None,
                ((200, None, "OpenAPI 3.1 document"),),
                rate_limited=False,
            ),
        ]
