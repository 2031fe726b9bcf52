"""Metrics whose values live outside this process and are read when Prometheus scrapes.

A queue's depth is a fact of the shared store, not of any one worker: every worker would
report the same number, and a per-process gauge would be summed or go stale across workers.
So `/metrics` asks each source to `refresh` (one bounded store read) right before it renders,
and the source yields ready-made metric families.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client.metrics_core import Metric


class ScrapeSource(Protocol):
    async def refresh(self) -> None:
        """Read the current values; called by `/metrics` under a short timeout. On failure or
        timeout the source keeps (or drops) its last values; a scrape never fails for it."""

    def collect(self) -> Iterable[Metric]:
        """The metric families as of the last refresh (the prometheus_client Collector shape)."""
