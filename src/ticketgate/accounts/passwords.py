"""Password hashing with argon2id, kept off the event loop.

One argon2id hash costs tens of milliseconds of CPU and, by default, 64 MiB of memory. Run on
the event loop it would freeze every queue request of the worker for that long, so hashing
runs in threads; a semaphore caps how many run at once, so a burst of logins costs bounded
memory and leaves cores for the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

log = logging.getLogger("ticketgate.accounts")


class PasswordHasher:
    """argon2id with configurable cost; defaults are argon2-cffi's (RFC 9106 low-memory)."""

    def __init__(
        self,
        *,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_kib: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
        concurrency: int = 4,
    ) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True when `password` matches; a corrupt stored hash is a mismatch, never a crash."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, password)
        except VerificationError:  # includes VerifyMismatchError
            return False
        except InvalidHashError:
            log.warning("a stored password hash is not a valid argon2 hash")
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification, for logins naming an unknown user.

        Without it, "no such user" would answer in microseconds and "wrong password" in tens
        of milliseconds, telling an attacker which usernames exist.
        """
        await self.warm_up()
        assert self._dummy_hash is not None
        await self.verify(self._dummy_hash, password)

    async def warm_up(self) -> None:
        """Make the dummy hash now, so the first unknown-user login is not measurably slower."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))
