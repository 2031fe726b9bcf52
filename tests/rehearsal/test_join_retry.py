"""A fan whose join answer was lost retries, and its place dates from the first attempt.

A balancer answers 502 when the gateway that took the join dies before answering; the fan's
retry then gets its existing place back (409 DUPLICATE_REQUEST). The fairness analysis asks
"did B send its join after A's join was answered?", so B's join time must be the first
attempt's: dated from the retry, B looked like a late joiner that overtook earlier fans
(the multi-host rehearsal's gateway SIGKILL produced exactly such false inversions).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import msgspec

from tests.rehearsal.gateway import serve_gateway
from ticketgate.rehearsal import load_scenario
from ticketgate.rehearsal.fan import Context, Fan
from ticketgate.rehearsal.record import FanRecord, Stats
from ticketgate.rehearsal.transport import Reply, Transport, make_transport

JOIN = "/api/v1/queue/join"


class FirstJoinAnswerLost:
    """The first join reaches the gateway and is served; its answer never reaches the fan."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.lost_at: float | None = None

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        reply = await self.inner.request(method, path, body, headers)
        if path == JOIN and self.lost_at is None:
            assert reply.status == 202, reply
            self.lost_at = time.monotonic()
            return Reply(502, b"", None)
        return reply

    async def close(self) -> None:
        await self.inner.close()


async def _join_with_a_lost_answer(base: str) -> tuple[FanRecord, float, dict[str, Any]]:
    scenario = load_scenario(
        None,
        {"base_url": base, "event_id": "evt_retry", "fans": 1, "booking": {"enabled": False}},
    )
    transport = FirstJoinAnswerLost(make_transport(base, scenario.client))
    started = time.monotonic()
    ctx = Context(scenario, transport, Stats(), lambda: time.monotonic() - started)
    record = FanRecord(0, "stay", 0.0)
    fan = Fan(ctx, record, random.Random(0))
    try:
        await fan.sign_in()
        assert await fan.join()
        status = await transport.request(
            "GET", f"/api/v1/queue/status?token={fan.waiting_token}", None, fan.headers
        )
    finally:
        await transport.close()
    assert transport.lost_at is not None
    assert status.status == 200, status
    return record, transport.lost_at - started, msgspec.json.decode(status.body)


def test_a_retried_join_keeps_the_first_attempts_send_time(tmp_path: Path) -> None:
    with serve_gateway(tmp_path) as base:
        record, first_answer_lost_at, status = asyncio.run(_join_with_a_lost_answer(base))
    # One place, the first attempt's: the retry took no second one.
    assert (record.position_hint, status["position"]) == (1, 1), status
    # The retry was sent after a ~1 s back-off, well after the lost answer; the join counts
    # from before it.
    assert record.join_sent < first_answer_lost_at < record.join_recv
    assert record.join_recv - record.join_sent >= 0.9
