"""The edge's guards: the rate limit every request passes and the idempotency interceptor
that replays keyed writes. Both keep their state in Redis when the app has an executor."""

from __future__ import annotations

from dataclasses import dataclass

from ticketgate.config import Settings
from ticketgate.middleware.idempotency import IdempotencyInterceptor, build_idempotency
from ticketgate.middleware.ratelimit import RateLimit
from ticketgate.observability.instruments import Instruments
from ticketgate.redisio.executor import RedisExecutor


@dataclass(frozen=True, slots=True)
class Guards:
    rate_limit: RateLimit
    idempotency: IdempotencyInterceptor


def build_guards(
    settings: Settings, executor: RedisExecutor | None, instruments: Instruments
) -> Guards:
    rate_limit = RateLimit(settings.rate_limit, executor, observer=instruments.guards)
    idempotency = build_idempotency(
        settings.idempotency, executor, rate_limit.keys.client_ip, instruments.guards
    )
    return Guards(rate_limit, idempotency)
