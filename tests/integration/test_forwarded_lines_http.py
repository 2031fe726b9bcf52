"""X-Forwarded-For sent on two lines: a client's (or CDN's) line, then the one a load balancer
appends (HAProxy's `option forwardfor` adds a line rather than extending the client's). The
gateway used to keep only the last line, so behind such a balancer every fan was keyed by one
address and shared one rate-limit budget (the multi-host test saw 210,475 429s)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import JOIN, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.http.core import combine_repeated

BALANCER = "10.0.0.5"


@pytest.fixture
async def behind_balancer() -> AsyncIterator[httpx.AsyncClient]:
    env = dev_env(
        RATE_LIMIT_ENABLED="true",
        RATE_LIMIT_RPS="0.1",
        RATE_LIMIT_BURST="3",
        RATE_LIMIT_TRUSTED_PROXIES=f"127.0.0.1,{BALANCER}",
    )
    async with serve(create_app(load_settings(env))) as client:
        yield client


def two_lines(fan: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-For", fan), ("X-Forwarded-For", BALANCER)]


async def test_each_fan_behind_a_balancer_that_appends_a_line_has_its_own_budget(
    behind_balancer: httpx.AsyncClient,
) -> None:
    first = [
        (
            await behind_balancer.post(
                JOIN, json={"event_id": "evt_xff"}, headers=two_lines("203.0.113.1")
            )
        ).status_code
        for _ in range(4)
    ]
    assert first == [202, 202, 202, 429], first
    other = await behind_balancer.post(
        JOIN, json={"event_id": "evt_xff"}, headers=two_lines("203.0.113.2")
    )
    assert other.status_code == 202, other.text


def test_repeated_fields_are_joined_in_order_and_single_ones_kept() -> None:
    raw = [
        (b"x-forwarded-for", b"203.0.113.1, 198.51.100.7"),
        (b"host", b"gw"),
        (b"x-forwarded-for", b"10.0.0.5"),
    ]
    assert combine_repeated(raw) == {
        b"x-forwarded-for": b"203.0.113.1, 198.51.100.7, 10.0.0.5",
        b"host": b"gw",
    }
