"""A minimal gateway for the rate-limit tests' server processes (`uvicorn --factory`).

One limited route and one exempt health route, the rate-limit interceptor, and Redis from
REDIS_ADDRESS; the limits come from RATE_LIMIT_* like in production.
"""

from __future__ import annotations

import os

from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.core import Gateway
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.ratelimit import RateLimit
from ticketgate.middleware.settings import RateLimitSettings
from ticketgate.redisio.executor import build_executor
from ticketgate.redisio.settings import RedisSettings


async def ping(request: Request) -> Response:
    return Response.json(200, {"ok": True})


def create() -> Gateway:
    settings = RateLimitSettings.from_env(os.environ)
    executor = build_executor(RedisSettings(address=os.environ["REDIS_ADDRESS"]))
    limit = RateLimit(settings, executor)

    async def shutdown() -> None:
        await limit.stop()
        await executor.close()

    return Gateway(
        [
            Route("GET", "/ping", ping),
            Route("GET", "/healthz", ping, AuthPolicy.NONE),
        ],
        DevBypassAuthenticator(False),
        max_body_bytes=1024,
        guard=limit,
        on_startup=limit.start,
        on_shutdown=shutdown,
    )
