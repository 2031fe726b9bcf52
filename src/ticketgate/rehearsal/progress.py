"""Live progress in the terminal while fans run (rich): fans by state, request and error
rates, queue depth and admissions per second, and the tool's own event-loop lag."""

from __future__ import annotations

from collections import Counter

from rich.console import Group
from rich.live import Live as RichLive
from rich.table import Table
from rich.text import Text

from ticketgate.rehearsal.driver import Live


class Progress:
    def __init__(self, live_display: RichLive) -> None:
        self.display = live_display
        self.last_t = 0.0
        self.last_requests = 0
        self.last_grants = 0

    def __call__(self, live: Live) -> None:
        now = live.clock()
        stats = live.stats
        span = max(1e-3, now - self.last_t)
        grants = sum(stats.grants_per_sec)
        rps = (stats.requests - self.last_requests) / span
        aps = (grants - self.last_grants) / span
        self.last_t, self.last_requests, self.last_grants = now, stats.requests, grants
        states = Counter(
            record.outcome if record.state == "done" else record.state for record in live.records
        )
        in_queue = sum(states[s] for s in ("waiting", "near_door", "entering", "throttled"))
        lag = stats.lag_max_per_sec[-1] if stats.lag_max_per_sec else 0.0
        head = Text(
            f"t={now:6.1f}s  active fans {live.active:>6}  in queue {in_queue:>6}  "
            f"requests/s {rps:8.1f}  admissions/s {aps:6.1f}  errors {stats.errors}  "
            f"loop lag {lag:5.1f} ms",
            style="bold",
        )
        table = Table(title="fans by state", show_header=True, box=None)
        table.add_column("state")
        table.add_column("fans", justify="right")
        for state, count in states.most_common(12):
            table.add_row(state, str(count))
        errors = Table(title="errors by endpoint and code", show_header=True, box=None)
        errors.add_column("answer")
        errors.add_column("count", justify="right")
        for answer, count in stats.recent_errors.most_common(8):
            errors.add_row(answer, str(count))
        self.display.update(Group(head, table, errors))
