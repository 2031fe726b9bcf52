"""Admission policy: who may leave the queue now, and how fast.

The Redis store evaluates the same rules inside its Lua script (for atomicity); the memory
store and the status view call these functions. `tests/contract` holds both to one behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketgate.config import MinWaitRule, QueueSettings


def min_wait_ms(position: int, rules: tuple[MinWaitRule, ...]) -> int | None:
    """Minimum time waited before `position` may enter; None when outside every rule."""
    for rule in rules:
        if position <= rule.max_position:
            return rule.min_wait_ms
    return None


def eligible_in_ms(
    position: int, waited_ms: int, settings: QueueSettings, *, window: int | None = None
) -> int | None:
    """Milliseconds until the waiter may enter (0 = now); None while outside the window.

    `window` is the event's effective admission window when an operator overrode it.
    """
    if position > (window or settings.admission_window):
        return None
    needed = min_wait_ms(position, settings.min_wait)
    if needed is None:
        return None
    return max(0, needed - waited_ms)


@dataclass(slots=True)
class TokenBucket:
    """Per-event admission bucket with fractional refill (a draw every 20 ms at 50/s).

    Every grant draws a token, the top of the queue included. The top N "bypass" the bucket
    by borrowing: they may take it down to -N, so they are not turned away when a burst from
    further back emptied it, yet whoever stands at the head (always in the top N) cannot
    drain the queue faster than capacity + refill + N.
    """

    capacity: float
    refill_per_ms: float
    tokens: float
    updated_ms: int

    def refill(self, now_ms: int) -> None:
        if now_ms > self.updated_ms:
            self.tokens = min(
                self.capacity, self.tokens + (now_ms - self.updated_ms) * self.refill_per_ms
            )
            self.updated_ms = now_ms

    def try_take(self, now_ms: int, borrow: int = 0) -> int:
        """Take one token, going at most `borrow` tokens into debt; return 0 on success or
        the milliseconds until the take would succeed."""
        self.refill(now_ms)
        if self.tokens - 1.0 >= -borrow:
            self.tokens -= 1.0
            return 0
        return max(1, int((1.0 - borrow - self.tokens) / self.refill_per_ms) + 1)
