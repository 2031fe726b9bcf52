"""The seams the guards' instrumentation hangs on: rate-limit refusals and idempotency
answers, declared here beside the guards that call them (authentication refusals have theirs
in edge/observer.py, beside the auth seam).

app/ hands each guard the observer of the enabled instruments (prometheus.GuardMetrics)
at construction, or none: then a refusal records nothing and costs one `is None` test.
"""

from __future__ import annotations

from typing import Protocol


class RateLimitObserver(Protocol):
    def dropped(self, key_type: str) -> None:
        """A request refused with 429 RATE_LIMITED; `key_type` is "user" or "ip", never the
        key itself."""


class IdempotencyObserver(Protocol):
    def hit(self, kind: str) -> None:
        """A request answered by the idempotency layer instead of its handler: "replay",
        "in_progress" or "conflict"."""
