"""background.py's `every`, the loop under the ghost sweeper, payment recovery and the
reservation sweeper: a failed round must not end it (a database or Redis blip, or a bug one
round trips on, would stop the work for good), and a cancel must (closing waits for it)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ticketgate.background import cancel_and_wait, every
from ticketgate.waitingroom.model import QueueUnavailable

LOGGER = "ticketgate.test_every"


async def test_a_failed_round_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise OSError("database blip")
        if len(rounds) == 3:
            third.set()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    task = asyncio.get_running_loop().create_task(
        every(0.01, work, logging.getLogger(LOGGER), "the test round")
    )
    await asyncio.wait_for(third.wait(), timeout=5)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert [record.getMessage() for record in caplog.records if record.name == LOGGER] == [
        "the test round failed: database blip"
    ]


async def test_a_round_failing_with_an_error_its_work_reported_is_not_logged_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ghost sweeper's QueueUnavailable is counted by the room's observer: a Redis outage
    must not also write a warning every interval. Any other error still is, and the loop
    goes on after both (before, any error but QueueUnavailable ended the sweeper)."""
    failures: list[Exception] = [QueueUnavailable("redis down"), ValueError("a bug")]
    done = asyncio.Event()

    async def work() -> None:
        if failures:
            raise failures.pop(0)
        done.set()

    caplog.set_level(logging.WARNING, logger=LOGGER)
    task = asyncio.get_running_loop().create_task(
        every(0.01, work, logging.getLogger(LOGGER), "ghost sweep", reported=(QueueUnavailable,))
    )
    await asyncio.wait_for(done.wait(), timeout=5)
    await cancel_and_wait(task)
    assert [record.getMessage() for record in caplog.records if record.name == LOGGER] == [
        "ghost sweep failed: a bug"
    ]
