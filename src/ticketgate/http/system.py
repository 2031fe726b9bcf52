"""Liveness, readiness, version and the OpenAPI document."""

from __future__ import annotations

import asyncio
import platform
from datetime import UTC, datetime

from ticketgate import __version__
from ticketgate.config import Settings
from ticketgate.http.core import AuthPolicy, Request, Response, Route
from ticketgate.http.openapi import build_openapi
from ticketgate.http.schemas import HealthResponse, ReadyResponse, VersionResponse
from ticketgate.waitingroom.store import QueueStore

READY_TIMEOUT_SEC = 0.5


class SystemRoutes:
    def __init__(self, settings: Settings, store: QueueStore) -> None:
        self.settings = settings
        self.store = store
        self._openapi: bytes | None = None
        self._routes: list[Route] = []

    async def healthz(self, request: Request) -> Response:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return Response.json(200, HealthResponse("healthy", now))

    async def readyz(self, request: Request) -> Response:
        if not self.settings.redis.enabled:
            return Response.json(
                200, ReadyResponse("ready", {"redis": "not_configured", "store": "memory"})
            )
        try:
            up = await asyncio.wait_for(self.store.ping(), READY_TIMEOUT_SEC)
        except TimeoutError:
            up = False
        if up:
            return Response.json(200, ReadyResponse("ready", {"redis": "connected"}))
        body = {
            "status": "not_ready",
            "dependencies": {"redis": "unavailable"},
            "error": {
                "code": "QUEUE_UNAVAILABLE",
                "message": "Redis is unavailable",
                "trace_id": request.trace_id,
            },
        }
        return Response.json(503, body, ((b"retry-after", b"1"),))

    async def version(self, request: Request) -> Response:
        return Response.json(
            200,
            VersionResponse(
                __version__,
                self.settings.environment,
                self.settings.store_name,
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
                "Readiness",
                None,
                ((200, ReadyResponse, "Ready"), (503, ReadyResponse, "Redis unavailable")),
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
