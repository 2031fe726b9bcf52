"""Queue depth, admission rate and serving frontier per event, read from the shared store at
scrape time.

`queue_waiting_users{event_id}`, `queue_admission_rate{event_id}` (the measured release rate
the ETA uses, eta.release_rate) and `queue_frontier_released|used|earmarked{event_id}`
(admission capacity released so far, admissions granted, released but unused) come from the
event registry and one stats read per event, so every worker reports the same, current
numbers. Only the `top` events by waiting count are
exported: clients choose event ids, and label cardinality must stay bounded.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ticketgate.waitingroom.events import EventAdmin, EventView

TOP_EVENTS = 50
FRONTIER_PARTS = {
    "released": "Admission capacity the event's bucket has released so far",
    "used": "Admissions granted so far (released capacity used)",
    "earmarked": "Released, unused capacity: the head positions that may enter now",
}


class QueueGauges:
    """A ScrapeSource (observability.scrape) over the operators' view of events."""

    def __init__(self, admin: EventAdmin, top: int = TOP_EVENTS) -> None:
        self.admin = admin
        self.top = top
        self._views: list[EventView] = []

    async def refresh(self) -> None:
        """Replace the values; on a store error the exception propagates and the caller keeps
        the previous values (the scrape endpoint bounds and suppresses it)."""
        self._views = await self.admin.list(self.top)

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "queue_waiting_users", "Users waiting in the event's queue", labels=["event_id"]
        )
        rate = GaugeMetricFamily(
            "queue_admission_rate",
            "Measured admissions per second (the release rate the ETA uses)",
            labels=["event_id"],
        )
        frontier = {
            part: GaugeMetricFamily(f"queue_frontier_{part}", help_text, labels=["event_id"])
            for part, help_text in FRONTIER_PARTS.items()
        }
        for view in self._views:
            waiting.add_metric([view.event_id], view.waiting)
            rate.add_metric([view.event_id], view.admission_rate)
            for part, family in frontier.items():
                family.add_metric([view.event_id], getattr(view.frontier, part))
        yield waiting
        yield rate
        yield from frontier.values()
