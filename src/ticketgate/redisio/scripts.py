"""Lua scripts run by SHA, with the source sent again only when Redis forgot it (NOSCRIPT)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from ticketgate.redisio.executor import PackedHead, RedisExecutor, pack_head


class Script:
    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    @classmethod
    def load(cls, package: str, name: str, prelude: tuple[str, ...] = ()) -> Script:
        """`name`.lua from `package`, after the `prelude` files (Lua has no include: shared
        local functions are prepended, so one definition serves several scripts)."""
        files = resources.files(package)
        parts = [files.joinpath(f"{part}.lua").read_text(encoding="utf-8") for part in prelude]
        parts.append(files.joinpath(f"{name}.lua").read_text(encoding="utf-8"))
        return cls(name, "\n".join(parts))

    def head(self, keys: tuple[str, ...], *leading: Any) -> PackedHead:
        """This script's EVALSHA on `keys` and its `leading` arguments, packed once for calls
        that repeat them (the keys of one event): pass it to `run` as `head`, with `keys`,
        and only the arguments after `leading`."""
        return pack_head("EVALSHA", self.sha, len(keys), *keys, *leading)

    async def run(
        self,
        executor: RedisExecutor,
        keys: tuple[str, ...],
        *args: Any,
        head: PackedHead | None = None,
    ) -> Any:
        """One EVALSHA; after a Redis restart or failover, one EVAL that reloads the script.
        `head` is `self.head(keys, ...)` kept by the caller (`args` then follow its leading
        arguments). The executor's observers (the app's instruments) see the call."""
        observers = executor.observers
        if not observers:
            try:
                return await self._evalsha(executor, keys, args, head)
            except NoScriptError:
                return await self._reload(executor, keys, args, head)
        # Plain loops, not a comprehension and zip: on every script call of a join or
        # status, and ~0.4 µs cheaper with one or two observers (bench.metrics_cost).
        name = self.name
        states: list[object] = []
        for observer in observers:
            states.append(observer.begin(name))
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            try:
                return await self._evalsha(executor, keys, args, head)
            except NoScriptError:
                return await self._reload(executor, keys, args, head)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = time.perf_counter() - started
            for index, observer in enumerate(observers):
                observer.end(name, states[index], duration, error)

    def _evalsha(
        self,
        executor: RedisExecutor,
        keys: tuple[str, ...],
        args: tuple[Any, ...],
        head: PackedHead | None,
    ) -> Awaitable[Any]:
        """The EVALSHA call (a plain function handing back the awaitable: no layer)."""
        if head is None:
            return executor.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        return executor.execute_after(head, *args)

    async def _reload(
        self,
        executor: RedisExecutor,
        keys: tuple[str, ...],
        args: tuple[Any, ...],
        head: PackedHead | None,
    ) -> Any:
        """After a Redis restart or failover forgot the script: one EVAL loads it again."""
        if head is not None:  # its arguments after EVALSHA and the SHA: count, keys, leading
            return await executor.execute("EVAL", self.source, *head.args[2:], *args)
        return await executor.execute("EVAL", self.source, len(keys), *keys, *args)

    async def preload(self, executor: RedisExecutor) -> None:
        await executor.load_script(self.source)
