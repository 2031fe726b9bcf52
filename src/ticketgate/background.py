"""Background tasks' shutdown, one way for every owner of a long-running task."""

from __future__ import annotations

import asyncio
import contextlib
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
