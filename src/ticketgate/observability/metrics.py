"""Prometheus metrics of the gateway. Names are fixed by the issues and the Grafana dashboard.

Every metric is defined here, once, so each is registered once per process, and recorded
only by the observers of ticketgate.observability.prometheus, which app/ hands to the
components it builds when metrics are on: nothing else imports this module. Label values
come from small fixed sets (route templates, HTTP verbs, status and error codes, script and
RPC names); never a user id, token or raw path.

With several worker processes `ticketgate serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start, so these objects write to per-process files that
`/metrics` merges (ticketgate.observability.prometheus). Gauges there need an explicit
`multiprocess_mode`; queue depth and admission rate are not gauges of this registry but
read from the shared store at scrape time (ticketgate.observability.scrape).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `*_created` series: Prometheus' text format does not use them, multi-process mode
# never has them, and they would double the series count in single-process mode.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Sub-millisecond to seconds: a hot request answers in ~1 ms on one box.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

HTTP_REQUESTS = Counter(
    "http_server_requests_total",
    "HTTP requests answered, by route template ('unmatched' when none matched)",
    ["method", "route", "status_code"],
)
HTTP_DURATION = Histogram(
    "http_server_requests_duration_seconds",
    "Time from the request's arrival to its response being sent",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
BACKEND_CALLS = Histogram(
    "backend_call_duration_seconds",
    "Duration of gRPC calls to the booking backends, retries included",
    ["service", "method", "status_code"],  # OK, a wire error code, or BREAKER_OPEN
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
QUEUE_OPERATIONS = Counter(
    "queue_operations_total",
    "Waiting-room operations (join, status, enter, leave, sweep) by outcome",
    ["operation", "status"],  # "ok" or the error code (MISSING_TOKEN, NOT_READY, ...)
)
QUEUE_WAIT_TIME = Histogram(
    "queue_wait_time_seconds",
    "Time from joining the queue to a granted admission",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
REDIS_OPERATION_DURATION = Histogram(
    "redis_operation_duration_seconds",
    "Duration of Redis script calls, by script name",
    ["operation"],
    buckets=LATENCY_BUCKETS[:-2],
)
RATELIMIT_DROPPED = Counter(
    "ratelimit_dropped_total",
    "Requests refused with 429 RATE_LIMITED",
    ["key_type"],  # "user" or "ip"; never the key itself
)
IDEMPOTENCY_HITS = Counter(
    "idempotency_hits_total",
    "Requests answered by the idempotency layer instead of the handler",
    ["type"],  # "replay", "in_progress", "conflict"
)
AUTH_FAILURES = Counter(
    "auth_failures_total",
    "Requests refused by authentication",
    ["code"],  # MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT, INVALID_TOKEN, FORBIDDEN
)
