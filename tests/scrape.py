"""Reading `/metrics` the way Prometheus does: the text format, parsed by prometheus_client."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

# Every metric the gateway records, as test_metrics_http.py pins it against real scrapes:
# name as parsed (counters without `_total`) -> (type, label names; `le` left out)
SCHEMA: dict[str, tuple[str, set[str]]] = {
    "http_server_requests": ("counter", {"method", "route", "status_code"}),
    "http_server_requests_duration_seconds": ("histogram", {"method", "route"}),
    "backend_call_duration_seconds": ("histogram", {"service", "method", "status_code"}),
    "queue_operations": ("counter", {"operation", "status"}),
    "queue_wait_time_seconds": ("histogram", set()),
    "redis_operation_duration_seconds": ("histogram", {"operation"}),
    "ratelimit_dropped": ("counter", {"key_type"}),
    "idempotency_hits": ("counter", {"type"}),
    "auth_failures": ("counter", {"code"}),
    # Read from the store at scrape time (observability/queue_gauges.py).
    "queue_waiting_users": ("gauge", {"event_id"}),
    "queue_admission_rate": ("gauge", {"event_id"}),
    "queue_frontier_released": ("gauge", {"event_id"}),
    "queue_frontier_used": ("gauge", {"event_id"}),
    "queue_frontier_earmarked": ("gauge", {"event_id"}),
}


@dataclass(frozen=True)
class Family:
    name: str  # counters without their `_total` suffix, as the parser names them
    type: str
    samples: tuple[Sample, ...]

    def value(self, sample: str, **labels: str) -> float:
        """Sum of `sample` over the series whose labels include `labels` (0 when none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_names(self) -> set[str]:
        return {name for s in self.samples for name in s.labels if name != "le"}


Scrape = dict[str, Family]


def parse(text: str) -> Scrape:
    return {
        family.name: Family(family.name, family.type, tuple(family.samples))
        for family in text_string_to_metric_families(text)
    }


async def scrape(client: httpx.AsyncClient, url: str = "/metrics") -> Scrape:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(scraped: Scrape, family: str, sample: str, **labels: str) -> float:
    found = scraped.get(family)
    return found.value(sample, **labels) if found is not None else 0.0
