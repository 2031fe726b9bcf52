"""Prometheus recorders on the instrumentation seams, and multi-process collection.

Per-request cost is the constraint (issue 5: join and status may lose at most 10% of their
throughput, and a request costs the gateway only ~55-60 µs of CPU). Updating a
prometheus_client child costs ~1 µs, and in multi-process mode each update writes an mmap'd
file, so a request touching four series paid ~7 µs. The recorders therefore only count into
plain per-process Python structures: per series a pending integer for counters, and for
histograms a count per bucket (found by bisect on the bucket bounds) plus a float sum, each
bound once per label combination and kept in a dict, so a request costs a dict lookup and a
few integer additions. `flush` writes the accumulated deltas into the real children:

- every FLUSH_INTERVAL_SEC (1 s) from a task the app starts with the worker (`Flusher`);
- right before this worker renders `/metrics`, so the scrape includes its own latest counts;
- at shutdown, before `mark_process_dead`.

Staleness: with several workers, a scrape answered by one worker shows the others' values as
of their last flush, at most ~1 s old (Prometheus scrapes every 15 s or so, and every counter
only moves forward, so a late increment shows up in the next scrape). Nothing is lost.

Several workers: prometheus_client picks its value class when it is imported, so
`ticketgate serve` sets PROMETHEUS_MULTIPROC_DIR (see `prepare_multiprocess_dir`) before
uvicorn spawns the workers; each worker then writes its values to its own files there and
`/metrics`, answered by any worker, merges all of them.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

from ticketgate.background import cancel_and_wait
from ticketgate.observability.metrics import (
    AUTH_FAILURES,
    BACKEND_CALLS,
    HTTP_DURATION,
    HTTP_REQUESTS,
    IDEMPOTENCY_HITS,
    QUEUE_OPERATIONS,
    QUEUE_WAIT_TIME,
    RATELIMIT_DROPPED,
    REDIS_OPERATION_DURATION,
)

if TYPE_CHECKING:
    from prometheus_client.metrics import Counter, Histogram

    from ticketgate.edge.request import Request
    from ticketgate.observability.scrape import ScrapeSource

log = logging.getLogger("ticketgate.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The label value for any request method outside this set, so a client inventing methods
# cannot grow the series (or the caches below).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
# How often a worker writes its buffered counts into the metric children (see above).
FLUSH_INTERVAL_SEC = 1.0
# The index of the first bucket bound >= the value (the last bound is +Inf): the bucket
# `Histogram.observe` counts it in.
_bucket_of = bisect.bisect_left


class _Count:
    """Increments of one counter child not yet written to it."""

    __slots__ = ("child", "pending")

    def __init__(self, child: Counter) -> None:
        self.child = child
        self.pending = 0


class _Observations:
    """Observations of one histogram child not yet written to it: a count per bucket (the
    index of the first upper bound >= the value, as `Histogram.observe` picks it) and the
    sum of the values."""

    __slots__ = ("bounds", "child", "counts", "sum")

    def __init__(self, child: Histogram) -> None:
        self.child = child
        self.bounds: tuple[float, ...] = tuple(child._upper_bounds)  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[_bucket_of(self.bounds, value)] += 1
        self.sum += value


# Every series bound in this process, shared by all recorder instances (the tests build
# several apps in one process; the metric children are process-wide anyway). Keys are
# label values drawn from fixed sets, so these stay small and `flush` walks them quickly.
_COUNTS: dict[tuple[object, ...], _Count] = {}
_OBSERVATIONS: dict[tuple[object, ...], _Observations] = {}


def _count(metric: Counter, *labels: str) -> _Count:
    key = (metric, *labels)
    found = _COUNTS.get(key)
    if found is None:
        found = _COUNTS[key] = _Count(metric.labels(*labels) if labels else metric)
    return found


def _observations(metric: Histogram, *labels: str) -> _Observations:
    key = (metric, *labels)
    found = _OBSERVATIONS.get(key)
    if found is None:
        found = _OBSERVATIONS[key] = _Observations(metric.labels(*labels) if labels else metric)
    return found


def _add_observations(child: Histogram, counts: Sequence[int], total: float) -> None:
    """What `child.observe(v)` for each buffered value would have done, in one call per
    non-empty bucket.

    prometheus_client has no bulk observe, so this uses its internals, as of the pinned
    prometheus-client==0.26.0: `observe` adds the value to `_sum` and 1 to `_buckets[i]`
    for the first `i` whose upper bound is >= the value (buckets are kept per bucket and
    made cumulative when collected). tests/unit/test_metrics_buffer.py pins that the
    rendered histogram equals the one per-observation `observe` calls produce; re-check
    it when upgrading prometheus-client.
    """
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    child._sum.inc(total)


def flush() -> None:
    """Write what the recorders buffered into the metric children (and so, in multi-process
    mode, into this worker's files). Runs on the event loop, like the recorders, so nothing
    is recorded while it runs."""
    for count in _COUNTS.values():
        pending = count.pending
        if pending:
            count.pending = 0
            count.child.inc(pending)
    for observed in _OBSERVATIONS.values():
        counts = observed.counts
        if any(counts):
            total = observed.sum
            observed.counts = [0] * len(counts)
            observed.sum = 0.0
            _add_observations(observed.child, counts, total)


class Flusher:
    """Flushes the buffers every `interval_sec` on the worker's event loop, and once more
    when stopped (before the worker's files are finalised)."""

    def __init__(self, interval_sec: float = FLUSH_INTERVAL_SEC) -> None:
        self.interval_sec = interval_sec
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_sec)
            try:
                flush()
            except Exception:  # e.g. a full disk under the multi-process directory
                log.exception("flushing buffered metrics failed; retrying in the next round")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        flush()


class HttpMetrics:
    """RequestObserver: `http_server_requests_total` and `..._duration_seconds` per route."""

    __slots__ = ("_series",)

    def __init__(self) -> None:
        # (route, method, status) -> (pending count, pending durations of (method, route))
        self._series: dict[tuple[str, str, int], tuple[_Count, _Observations]] = {}

    def begin(self, request: Request) -> object:
        return None

    def end(
        self, request: Request, state: object, route: str, status: int, duration_s: float
    ) -> None:
        method = request.method
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                _count(HTTP_REQUESTS, method, route, str(status)),
                _observations(HTTP_DURATION, method, route),
            )
        series[0].pending += 1
        durations = series[1]
        durations.counts[_bucket_of(durations.bounds, duration_s)] += 1
        durations.sum += duration_s


class RedisMetrics:
    """OperationObserver: `redis_operation_duration_seconds{operation}` per script name."""

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series: dict[str, _Observations] = {}

    def begin(self, operation: str) -> object:
        return None

    def end(
        self, operation: str, state: object, duration_s: float, error: BaseException | None
    ) -> None:
        durations = self._series.get(operation)
        if durations is None:
            durations = self._series[operation] = _observations(REDIS_OPERATION_DURATION, operation)
        durations.counts[_bucket_of(durations.bounds, duration_s)] += 1
        durations.sum += duration_s


class BackendMetrics:
    """RpcObserver: `backend_call_duration_seconds{service,method,status_code}` per RPC."""

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Observations] = {}

    def begin(self, service: str, method: str, address: str, trace_id: str) -> tuple[object, str]:
        return None, ""

    def end(self, service: str, method: str, state: object, status: str, duration_s: float) -> None:
        key = (service, method, status)
        durations = self._series.get(key)
        if durations is None:
            durations = self._series[key] = _observations(BACKEND_CALLS, service, method, status)
        durations.observe(duration_s)


class GuardMetrics:
    """The guards' observer (RateLimitObserver, IdempotencyObserver, AuthObserver):
    `ratelimit_dropped_total{key_type}`, `idempotency_hits_total{type}` and
    `auth_failures_total{code}`, each labelled from a small fixed set."""

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series: dict[tuple[Counter, str], _Count] = {}

    def _add(self, metric: Counter, label: str) -> None:
        key = (metric, label)
        count = self._series.get(key)
        if count is None:
            count = self._series[key] = _count(metric, label)
        count.pending += 1

    def dropped(self, key_type: str) -> None:
        self._add(RATELIMIT_DROPPED, key_type)

    def hit(self, kind: str) -> None:
        self._add(IDEMPOTENCY_HITS, kind)

    def refused(self, code: str) -> None:
        self._add(AUTH_FAILURES, code)


class QueueMetrics:
    """The waiting room's QueueObserver: `queue_operations_total`, `queue_wait_time_seconds`."""

    __slots__ = ("_series", "_wait")

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Count] = {}
        self._wait = _observations(QUEUE_WAIT_TIME)

    def operation(self, name: str, status: str) -> None:
        key = (name, status)
        count = self._series.get(key)
        if count is None:
            count = self._series[key] = _count(QUEUE_OPERATIONS, name, status)
        count.pending += 1

    def admitted(self, waited_ms: int) -> None:
        self._wait.observe(waited_ms / 1000)


# ---- multi-process collection ---------------------------------------------------------------


def multiprocess_dir() -> str:
    """The directory the workers write to, or "" in single-process mode."""
    return os.environ.get(MULTIPROC_ENV, "")


def prepare_multiprocess_dir(env: dict[str, str] | os._Environ[str]) -> Path | None:
    """Set `PROMETHEUS_MULTIPROC_DIR` in `env` to a new, empty directory; return it so the
    caller removes it when the server stops.

    An operator's own directory is used as given (created if missing, never emptied: it
    may be a volume something else manages) and None is returned. Old files there would
    add a previous run's counts, so it should be empty at start, as the README says.
    """
    given = env.get(MULTIPROC_ENV, "")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return None
    path = Path(tempfile.mkdtemp(prefix="ticketgate-metrics-"))
    env[MULTIPROC_ENV] = str(path)
    return path


def mark_process_dead() -> None:
    """On a worker's shutdown: drop its live-gauge files (a no-op in single-process mode).

    Counters and histograms of the dead worker stay in the directory on purpose: their
    totals must not go backwards when a worker is replaced.
    """
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


class _Exposition:
    """One collector over the process's metrics (merged across workers in multi-process mode)
    and the store-backed sources, for a registry made for `/metrics` alone."""

    def __init__(self, sources: Sequence[ScrapeSource]) -> None:
        path = multiprocess_dir()
        self._base: multiprocess.MultiProcessCollector | CollectorRegistry = (
            multiprocess.MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]
            if path
            else REGISTRY
        )
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        yield from self._base.collect()
        for source in self._sources:
            yield from _safe(source.collect)


def _safe(collect: Callable[[], Iterable[Metric]]) -> list[Metric]:
    """A source that fails to render is left out; the rest of the scrape still answers."""
    try:
        return list(collect())
    except Exception:
        log.exception("a scrape source failed to collect; left out of this scrape")
        return []


# The media type of what `Exposition.render` returns (text exposition format 0.0.4).
EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Exposition:
    """What `/metrics` serves: the process's metrics and the store-backed sources, rendered.

    Its registry holds only the exposition collector; the process-wide REGISTRY is left
    alone, so building several apps in one process (the tests) registers nothing twice.
    """

    def __init__(self, sources: Sequence[ScrapeSource]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Exposition(sources))

    def render(self) -> bytes:
        """This worker's buffered counts are written out first; the other workers' are at
        most FLUSH_INTERVAL_SEC old."""
        flush()
        return generate_latest(self._registry)
