"""argon2id hashing: correct, off the event loop, upgradable, no user enumeration by timing."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable

import argon2

from ticketgate.accounts.passwords import PasswordHasher


def _fast(**overrides: int) -> PasswordHasher:
    params = {"time_cost": 1, "memory_kib": 1024, "parallelism": 1} | overrides
    return PasswordHasher(**params)


async def test_hash_is_argon2id_salted_and_verifies_only_the_right_password() -> None:
    hasher = _fast()
    first = await hasher.hash("correct horse battery")
    second = await hasher.hash("correct horse battery")
    assert first.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert first != second  # a fresh salt each time
    assert "correct horse" not in first
    assert await hasher.verify(first, "correct horse battery")
    assert not await hasher.verify(first, "correct horse battery!")
    assert await hasher.verify(await hasher.hash("pässwörd ✓ 密码"), "pässwörd ✓ 密码")


async def test_a_corrupt_stored_hash_is_a_mismatch_not_a_crash() -> None:
    hasher = _fast()
    assert not await hasher.verify("not-a-hash", "whatever123")
    assert not await hasher.verify("$argon2id$v=19$m=1024,t=1,p=1$broken", "whatever123")
    assert not hasher.needs_rehash("not-a-hash")


async def test_hashes_made_with_other_parameters_need_a_rehash() -> None:
    old = await _fast(time_cost=1).hash("secret-password")
    current = _fast(time_cost=2)
    assert current.needs_rehash(old)
    assert await current.verify(old, "secret-password")  # still verifies meanwhile
    assert not current.needs_rehash(await current.hash("secret-password"))


async def test_hashing_runs_off_the_event_loop() -> None:
    """Other tasks keep running while a hash is computed (it would finish in one step if it
    ran on the loop)."""
    hasher = _fast(memory_kib=16 * 1024, time_cost=2)
    task = asyncio.create_task(hasher.hash("a-password-to-hash"))
    loop_turns = 0
    while not task.done():
        await asyncio.sleep(0)
        loop_turns += 1
    await task
    assert loop_turns > 10


async def test_concurrent_hashes_are_capped() -> None:
    running = 0
    peak = 0

    class CountingArgon2(argon2.PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                return super().hash(password, salt=salt)
            finally:
                running -= 1

    hasher = PasswordHasher(time_cost=1, memory_kib=8 * 1024, parallelism=1, concurrency=2)
    hasher._argon2 = CountingArgon2(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    await asyncio.gather(*(hasher.hash(f"password-{i}") for i in range(8)))
    assert peak == 2


async def test_unknown_user_costs_as_much_as_a_wrong_password() -> None:
    hasher = PasswordHasher(time_cost=2, memory_kib=16 * 1024, parallelism=1)
    stored = await hasher.hash("the-real-password")
    await hasher.warm_up()

    async def timed(call: Awaitable[object]) -> float:
        start = time.perf_counter()
        await call
        return time.perf_counter() - start

    wrong = [await timed(hasher.verify(stored, "a-wrong-password")) for _ in range(5)]
    unknown = [await timed(hasher.verify_dummy("a-wrong-password")) for _ in range(5)]
    # Without the dummy verification an unknown user answers ~100x faster.
    assert statistics.median(unknown) > 0.5 * statistics.median(wrong)
