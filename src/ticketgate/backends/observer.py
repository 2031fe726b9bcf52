"""The seam backend-call instrumentation hangs on, declared here because the gRPC clients
are what call it.

Metrics and tracing each implement an observer; app/ hands the enabled ones to the
clients it builds, so a client with no observer records nothing and costs nothing extra.
"""

from __future__ import annotations

from typing import Protocol


class RpcObserver(Protocol):
    """Sees each backend RPC, retries included.

    `begin` returns its state for `end` and the W3C `traceparent` the call should carry ("" to
    leave it to the client: the request's trace id with a new span id). `status` is OK, a
    gRPC status or `common.v1.Error` code, or BREAKER_OPEN when the call was refused unsent.
    """

    def begin(
        self, service: str, method: str, address: str, trace_id: str
    ) -> tuple[object, str]: ...

    def end(
        self, service: str, method: str, state: object, status: str, duration_s: float
    ) -> None: ...
