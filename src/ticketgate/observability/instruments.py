"""Which instruments an app gets, and what each hangs on which seam.

Every seam is declared beside its caller (edge/observer.py, redisio/observer.py,
backends/observer.py, middleware/observer.py, waitingroom's QueueObserver) and given its
observers at construction by the composition root; nothing is process-global. An
instrument switched off adds no observer, so its seam records nothing and costs nothing.
Two apps built in one process (the tests build many) each feed only their own instruments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from ticketgate.backends.observer import RpcObserver
from ticketgate.edge.observer import RequestObserver
from ticketgate.observability import prometheus
from ticketgate.observability.logs import ConsoleAccessLog, JsonAccessLog, access_log
from ticketgate.observability.settings import LogSettings, TracingSettings
from ticketgate.observability.tracing import (
    RedisTracer,
    RequestTracer,
    RpcTracer,
    TracingServerInterceptor,
)
from ticketgate.redisio.observer import OperationObserver
from ticketgate.waitingroom.service import QueueObserver


@dataclass(frozen=True)
class Instruments:
    """One app's enabled instruments, by the seam they hang on."""

    requests: tuple[RequestObserver, ...]
    redis: tuple[OperationObserver, ...]
    rpc: tuple[RpcObserver, ...]  # the booking backends' gRPC calls
    # The embedded reference services' gRPC servers (a SERVER span per RPC when tracing).
    services: tuple[grpc.aio.ServerInterceptor[Any, Any], ...]
    guards: prometheus.GuardMetrics | None  # rate-limit, idempotency and auth refusals
    queue: QueueObserver | None
    metrics_flusher: prometheus.Flusher | None  # writes the metric recorders' buffers out
    access: JsonAccessLog | ConsoleAccessLog | None


def build_instruments(
    *, metrics: bool, tracing: TracingSettings, log_level: str, logs: LogSettings
) -> Instruments:
    """`metrics`: OBSERVABILITY_METRICS_ENABLED; tracing is on when `tracing.enabled`; the
    access line when `logs` and the level ask for it (observability/logs.py)."""
    requests: list[RequestObserver] = []
    redis: list[OperationObserver] = []
    rpc: list[RpcObserver] = []
    if metrics:
        requests.append(prometheus.HttpMetrics())
        redis.append(prometheus.RedisMetrics())
        rpc.append(prometheus.BackendMetrics())
    if tracing.enabled:
        requests.append(RequestTracer())
        redis.append(RedisTracer())
        rpc.append(RpcTracer())
    access = access_log(log_level, logs)
    if access is not None:
        requests.append(access)
    return Instruments(
        requests=tuple(requests),
        redis=tuple(redis),
        rpc=tuple(rpc),
        services=(TracingServerInterceptor(),) if tracing.enabled else (),
        guards=prometheus.GuardMetrics() if metrics else None,
        queue=prometheus.QueueMetrics() if metrics else None,
        metrics_flusher=prometheus.Flusher() if metrics else None,
        access=access,
    )
