"""Background loops: one way to run a round periodically, and one to shut such a task down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has unwound (its `finally` blocks ran), so whatever it
    held is released before the caller closes what the task used. None and a task that
    already ended are fine; the task's own CancelledError is not re-raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def every(
    interval_sec: float,
    work: Callable[[], Awaitable[object]],
    logger: logging.Logger,
    what: str,
    *,
    reported: tuple[type[Exception], ...] = (),
) -> None:
    """Run `work` every `interval_sec` until cancelled (the ghost sweeper, the reference
    services' recovery and sweeper loops). A failed round is logged as "<what> failed" and
    the next one runs anyway, so a database or Redis blip, or a bug one round trips on,
    delays the work by one interval instead of ending it for the life of the process.
    Errors of the `reported` types were reported by `work` itself and are not logged again
    (the ghost sweeper's QueueUnavailable, counted by the room's observer)."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except reported:
            pass
        except Exception as exc:
            logger.warning("%s failed: %s", what, exc, exc_info=True)
        await asyncio.sleep(interval_sec)
