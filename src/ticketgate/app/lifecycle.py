"""What an app starts and stops, as one ordered list: started in order, stopped in reverse.

A part listed after another may use it: it starts once that one is up, and stops while that
one is still up (the rate limit pushes its last counts before the Redis executor closes;
tracing, listed first, sees everything else start and stop and sends those spans last). The
order is data, read and tested in one place, instead of a start-up and a shutdown function
that must be kept in mirror order by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from ticketgate.background import cancel_and_wait

Hook = Callable[[], Awaitable[object]]
log = logging.getLogger("ticketgate.app")


@dataclass(frozen=True, slots=True)
class Part:
    """One thing with a start and/or a stop (either may be None: a connection pool is only
    closed, a buffer only flushed)."""

    name: str
    start: Hook | None = None
    stop: Hook | None = None


class BackgroundTask:
    """A loop that runs while the app does: created on the running loop at start, cancelled
    (and awaited until it has unwound) at stop."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)


class Lifecycle:
    """`parts` started in the order given and stopped in the reverse order; a None entry
    (a part this configuration does not have) is left out.

    Only the parts that started are stopped. A start that raises stops the parts started
    before it, then the error reaches the server (which reports it and exits): uvicorn sends
    no shutdown after a failed start-up, so nothing else would close them. A stop that raises
    is logged and the others still stop (a failed flush must not leave Redis connections or
    loops behind); the first such error is raised once all have stopped."""

    def __init__(self, parts: Iterable[Part | None]) -> None:
        self.parts = tuple(part for part in parts if part is not None)
        self._started: list[Part] = []

    @property
    def names(self) -> list[str]:
        """The parts' names in start order (stop order is its reverse)."""
        return [part.name for part in self.parts]

    async def start(self) -> None:
        try:
            for part in self.parts:
                if part.start is not None:
                    await part.start()
                self._started.append(part)
        except BaseException:
            with contextlib.suppress(Exception):  # logged by stop; the start error is the news
                await self.stop()
            raise

    async def stop(self) -> None:
        first: Exception | None = None
        while self._started:
            part = self._started.pop()
            if part.stop is None:
                continue
            try:
                await part.stop()
            except Exception as exc:
                log.exception("stopping %s failed", part.name)
                first = first or exc
        if first is not None:
            raise first
