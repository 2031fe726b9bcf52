"""Lua scripts run by SHA, with the source sent again only when Redis forgot it (NOSCRIPT)."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from ticketgate.redisio.executor import RedisExecutor


class Script:
    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    @classmethod
    def load(cls, package: str, name: str) -> Script:
        text = resources.files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")
        return cls(name, text)

    async def run(self, executor: RedisExecutor, keys: tuple[str, ...], *args: Any) -> Any:
        """One EVALSHA; after a Redis restart or failover, one EVAL that reloads the script."""
        try:
            return await executor.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await executor.execute("EVAL", self.source, len(keys), *keys, *args)

    async def preload(self, executor: RedisExecutor) -> None:
        await executor.load_script(self.source)
