"""services/common.py's `every`, the loop under payment recovery and the reservation sweeper:
a failed round must not end it (a database blip would stop recovery for good), and a
cancel must (closing a service waits for it)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ticketgate.background import cancel_and_wait
from ticketgate.services.common import every

LOGGER = "ticketgate.services.test_every"


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
