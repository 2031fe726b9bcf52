"""A per-backend circuit breaker: stop calling a backend that keeps failing, probe it later.

Why: with a 600 ms deadline, a dead or hung backend would hold every booking request for the
full deadline and pile up work on both sides. After `failures` consecutive transport failures
(unavailable or timed out) the breaker opens and calls fail at once with 503 and Retry-After;
after `reset_sec` one probe call is let through (half-open): its success closes the breaker,
its failure opens it for another `reset_sec`. Business answers (a seat taken, a reservation
not found) are successes here: the backend answered.

Not thread-safe by design: one breaker lives in one event loop.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOpen(Exception):
    """Refused without a call; `retry_after_sec` says when the next probe is allowed."""

    def __init__(self, name: str, retry_after_sec: float) -> None:
        super().__init__(f"{name} circuit is open")
        self.name = name
        self.retry_after_sec = retry_after_sec


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probing",
        "_state",
        "failures",
        "name",
        "reset_sec",
    )

    def __init__(
        self,
        name: str,
        failures: int,
        reset_sec: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or reset_sec <= 0:
            raise ValueError("a breaker needs failures >= 1 and reset_sec > 0")
        self.name = name
        self.failures = failures
        self.reset_sec = reset_sec
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The state as of now: an open breaker whose reset time passed reads half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_sec:
            return BreakerState.HALF_OPEN
        return self._state

    def retry_after_sec(self) -> float:
        """Seconds until a call may be tried again (0 when one may be tried now)."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        left = self._opened_at + self.reset_sec - self._clock()
        if left > 0:
            return left
        # Half-open with the probe out: the probe decides within one deadline; say 1 s.
        return 1.0 if self._probing else 0.0

    def check(self) -> None:
        """Raise BreakerOpen when a call now would be refused; never takes the probe slot."""
        if self._state is BreakerState.CLOSED:
            return
        wait = self.retry_after_sec()
        if wait > 0:
            raise BreakerOpen(self.name, wait)

    def acquire(self) -> bool:
        """Permission for one call; True when that call is the half-open probe.

        The caller must then report exactly one of `success`, `failure` or `release`.
        """
        if self._state is BreakerState.CLOSED:
            return False
        wait = self.retry_after_sec()
        if wait > 0:
            raise BreakerOpen(self.name, wait)
        self._state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def success(self, probe: bool = False) -> None:
        """The backend answered. Any answer closes a half-open breaker."""
        self._failures = 0
        if probe or self._state is BreakerState.HALF_OPEN:
            self._close()

    def failure(self, probe: bool = False) -> None:
        """A transport failure (unavailable, timed out) counted towards opening."""
        if probe or self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self._state is BreakerState.OPEN:
            return  # a call admitted before the breaker opened; nothing new to learn
        self._failures += 1
        if self._failures >= self.failures:
            self._open()

    def release(self, probe: bool) -> None:
        """The call ended without telling anything (cancelled): free the probe slot."""
        if probe:
            self._probing = False

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._failures = 0
        self._probing = False

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probing = False
