"""Prometheus metrics shared by the edge. Names are fixed by the issues and the dashboards.

Kept in one module so each metric is registered once; `/metrics` and multi-process
collection arrive with the observability work.
"""

from __future__ import annotations

from prometheus_client import Counter

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
