"""The seam Redis instrumentation hangs on, declared here because redisio is what calls it.

Metrics and tracing each implement an observer; app/ hands the enabled ones to the executor
it builds, and every script run on that executor calls them. Nothing is process-global: two
apps built in one process (the tests do) each see only their own observers, and an app with
every instrument off passes none, so a script call costs nothing extra.
"""

from __future__ import annotations

from typing import Protocol


class OperationObserver(Protocol):
    """Sees each Redis script call (`operation` is the script's name, a fixed small set)."""

    def begin(self, operation: str) -> object: ...

    def end(
        self, operation: str, state: object, duration_s: float, error: BaseException | None
    ) -> None: ...
