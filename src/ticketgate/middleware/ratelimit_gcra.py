"""Per-key GCRA state of one process, plus the bookkeeping the cluster sync needs.

GCRA keeps one number per key, the theoretical arrival time `tat`: a request at `now` is
admitted when `max(tat, now) + period - now <= burst * period`, and only an admitted request
moves `tat` on. A refused request changes nothing, so a client sending twice its rate is
admitted at exactly its rate (never starved), and a key whose `tat` is in the past carries no
information at all, which is what makes eviction of idle keys lossless.

For the cross-process sync each key also keeps what this process admitted since its last
push: the count (`pending`) and `own`, the GCRA of those requests alone. By max-plus algebra
the bucket after those requests is exactly `max(tat_before + pending * period, own)`, so the
shared state in Redis can merge this process's requests in without timestamps of each one
(see ratelimit_sync.py). Everything here is synchronous and clock-injected, so the maths is
unit-tested without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Float slack so that `burst` requests at one instant are all admitted despite rounding.
_EPSILON = 1e-9
_NEVER = float("-inf")


class KeyState:
    __slots__ = ("last", "own", "pending", "shared", "tat")

    def __init__(self, now: float) -> None:
        self.tat = now  # theoretical arrival time over every process's requests known here
        self.own = _NEVER  # GCRA of this process's requests since the last push, alone
        self.pending = 0  # requests admitted here since the last push
        self.last = now  # last request (admitted or not): drives idle eviction
        self.shared = False  # another process was seen using this key: push it every sync


class Push:
    """One key's contribution in a sync round, and what is needed to apply the answer."""

    __slots__ = ("key", "local_debt", "own_ahead", "state", "taken")

    def __init__(
        self, key: str, state: KeyState, taken: int, own_ahead: float, local_debt: float
    ) -> None:
        self.key = key
        self.state = state
        self.taken = taken  # requests admitted here since the previous push
        self.own_ahead = own_ahead  # own GCRA time relative to now, in seconds (may be < 0)
        self.local_debt = local_debt  # how far this process's tat was ahead of now


class LocalLimiter:
    """GCRA per key with an LRU cap on the number of keys held in memory.

    `track=False` (no Redis) skips the dirty-key bookkeeping the sync needs.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        idle_ttl: float | None = None,
        push_threshold: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        track: bool = True,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.period = 1.0 / rate
        self.tau = burst * self.period  # seconds for an empty bucket to fill up again
        self._limit = self.tau + _EPSILON
        self.max_keys = max_keys
        # A key idle this long has long refilled (tat <= now), so dropping it loses nothing
        # but the `shared` hint; 10 s keeps slowly polling clients (a few s apart) in memory
        # so their consumption is pushed in batches of `push_threshold`, not one by one.
        self.idle_ttl = idle_ttl if idle_ttl is not None else max(10.0, self.tau + 1.0)
        # Pushing a key on every sync would cost Redis one key update per request for the
        # common client that polls every few seconds. Until a key is seen shared, a process
        # pushes it only after this many admissions, which bounds what the other processes
        # do not know about to `push_threshold - 1` requests per process and key.
        self.push_threshold = push_threshold if push_threshold is not None else max(1, burst // 8)
        self._clock = clock
        self._track = track
        self._states: OrderedDict[str, KeyState] = OrderedDict()
        self._dirty: dict[str, KeyState] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: str) -> bool:
        return key in self._states

    def acquire(self, key: str) -> tuple[bool, float]:
        """Admit or refuse one request of `key`.

        Returns (admitted, seconds): when admitted, how long until the bucket is full again;
        when refused, how long until the next request would be admitted.
        """
        now = self._clock()
        states = self._states
        state = states.get(key)
        if state is None:
            state = KeyState(now)
            states[key] = state
            if len(states) > self.max_keys:
                self._evict_oldest()
        else:
            states.move_to_end(key)
            state.last = now
        if self._track:
            self._dirty[key] = state
        tat = state.tat if state.tat > now else now
        new_tat = tat + self.period
        if new_tat - now > self._limit:
            return False, new_tat - now - self.tau
        state.tat = new_tat
        own = state.own if state.own > now else now
        state.own = own + self.period
        state.pending += 1
        return True, new_tat - now

    def remaining(self, debt: float) -> int:
        """Requests still admissible at once when the bucket is `debt` seconds behind."""
        left = int((self.tau - debt) * self.rate + 1e-6)
        return left if left > 0 else 0

    def debt(self, key: str) -> float:
        """Seconds until `key`'s bucket is full again (0 for an unknown key)."""
        state = self._states.get(key)
        if state is None:
            return 0.0
        return max(0.0, state.tat - self._clock())

    def _evict_oldest(self) -> None:
        key, state = self._states.popitem(last=False)
        if self._track and not state.shared and state.pending < self.push_threshold:
            self._dirty.pop(key, None)  # under a flood, dirty keys must not outgrow the cap

    def evict_idle(self) -> int:
        """Forget keys idle for `idle_ttl`; the table is in least-recently-used order, so
        this stops at the first fresh key. Returns how many were dropped.

        Requests of a dropped key that were below the push threshold are not pushed: at most
        `push_threshold - 1` per process per `idle_ttl`, against a budget of `rate * idle_ttl`,
        and flushing them would cost Redis a key update per visitor who joins once and leaves.
        """
        cutoff = self._clock() - self.idle_ttl
        states = self._states
        dropped = 0
        while states:
            key, state = next(iter(states.items()))
            if state.last > cutoff:
                break
            del states[key]
            dropped += 1
        return dropped

    def take_batch(self, max_keys: int, *, flush_all: bool = False) -> list[Push]:
        """The keys to push now, their pending counts moved into the returned pushes.

        A key touched since the last round is pushed when it is shared (another process uses
        it) or has reached the push threshold; shared keys and the busiest go first when
        there are more than `max_keys`, the rest wait for the next round. `flush_all`
        (shutdown) pushes everything pending.
        """
        now = self._clock()
        self.evict_idle()
        dirty, self._dirty = self._dirty, {}
        if flush_all:
            dirty = {key: s for key, s in self._states.items() if s.pending}
        threshold = 1 if flush_all else self.push_threshold
        chosen = [
            (key, state)
            for key, state in dirty.items()
            if state.shared or state.pending >= threshold
        ]
        if len(chosen) > max_keys:
            chosen.sort(key=lambda item: (item[1].shared, item[1].pending), reverse=True)
            for key, state in chosen[max_keys:]:
                self._dirty.setdefault(key, state)
            chosen = chosen[:max_keys]
        pushes: list[Push] = []
        for key, state in chosen:
            taken = state.pending
            own_ahead = state.own - now if taken else 0.0
            pushes.append(Push(key, state, taken, own_ahead, max(0.0, state.tat - now)))
            state.pending = 0
            state.own = _NEVER
        return pushes

    def apply(self, push: Push, debt: float) -> None:
        """Adopt the cluster's view of a key: Redis says its bucket is `debt` s behind now.

        Requests admitted here while the push was in flight are laid on top by the same
        max-plus merge Redis used. A debt beyond what this process alone explains means
        another process uses the key, which from now on is pushed every sync.
        """
        now = self._clock()
        state = push.state
        tat = now + debt + state.pending * self.period
        state.tat = tat if tat > state.own else state.own
        if debt > push.local_debt + self.period:
            state.shared = True
