"""What the Prometheus recorders cost per request, in microseconds (not a test, a stopwatch).

Two measurements, each in single-process mode (the default registry, mutex values) and in
multi-process mode (PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported, as
`ticketgate serve --workers N` does; values are mmap'd files):

1. the recorders alone: HttpMetrics.end, RedisMetrics.end, QueueMetrics.operation, called
   in a tight loop with warm label caches;
2. the whole gateway in-process: a stub route served through `Gateway.__call__` (no socket),
   with and without the HTTP observer, so the seam's own cost (timing, observer state,
   begin/end calls) is included. The difference is what metrics add to a request.

Run: .venv/bin/python -m bench.metrics_cost   (re-runs itself once per mode)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROUNDS = 7
CALLS = 100_000
REQUESTS = 50_000


def _best_us(fn: Callable[[], None], calls: int) -> float:
    """Median over rounds of the per-call time (a tight loop; GC off as in a frozen worker)."""
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def recorders() -> dict[str, float]:
    from ticketgate.edge.request import Request
    from ticketgate.observability.prometheus import HttpMetrics, QueueMetrics, RedisMetrics

    http, redis_metrics, queue = HttpMetrics(), RedisMetrics(), QueueMetrics()
    request = Request("GET", "/api/v1/queue/status", b"token=x", {}, "0" * 32)
    route = "/api/v1/queue/status"
    return {
        "http end (counter + histogram)": _best_us(
            lambda: http.end(request, None, route, 200, 0.0012), CALLS
        ),
        "redis end (histogram)": _best_us(
            lambda: redis_metrics.end("status", None, 0.0004, None), CALLS
        ),
        "queue operation (counter)": _best_us(lambda: queue.operation("status", "ok"), CALLS),
    }


def gateway_requests() -> dict[str, float]:
    from ticketgate.edge.request import Request, Response
    from ticketgate.edge.routes import AuthPolicy, Route
    from ticketgate.http.core import Gateway
    from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
    from ticketgate.observability.prometheus import HttpMetrics

    body = Response.json(200, {"status": "waiting", "position": 1})

    async def status(request: Request) -> Response:
        return body

    routes = [Route("GET", "/api/v1/queue/status", status, AuthPolicy.NONE)]
    auth = DevBypassAuthenticator(False)
    bare = Gateway(routes, auth, max_body_bytes=1024)
    observed = Gateway(routes, auth, max_body_bytes=1024, observers=(HttpMetrics(),))
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/queue/status",
        "query_string": b"token=abc",
        "headers": [(b"host", b"localhost"), (b"user-agent", b"wrk")],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def per_request_us(app: Gateway) -> float:
        samples = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(REQUESTS):
                await app(scope, receive, send)
            samples.append((time.perf_counter() - started) / REQUESTS * 1e6)
        return statistics.median(samples)

    async def both() -> dict[str, float]:
        without = await per_request_us(bare)
        with_metrics = await per_request_us(observed)
        return {
            "gateway request, no observer": without,
            "gateway request, HttpMetrics": with_metrics,
            "added by metrics": with_metrics - without,
        }

    return asyncio.run(both())


def script_and_queue_wrappers() -> dict[str, float]:
    """The other two seams a join or status passes: one Redis script call (Script.run with
    the Redis observer; the executor is a stub) and a queue handler's outcome report."""
    from ticketgate.edge.request import Request
    from ticketgate.http.queue import QueueRoutes
    from ticketgate.observability.prometheus import QueueMetrics, RedisMetrics
    from ticketgate.redisio.scripts import Script

    class StubExecutor:
        observers: tuple[Any, ...] = ()

        async def execute(self, *args: Any) -> Any:
            return 1

    script = Script("status", "return 1")
    executor: Any = StubExecutor()

    class Room:
        def __init__(self, observer: QueueMetrics | None) -> None:
            self.observer = observer

        async def leave(self, token: str) -> bool:
            return True

    bare = QueueRoutes(Room(None))  # type: ignore[arg-type]
    observed = QueueRoutes(Room(QueueMetrics()))  # type: ignore[arg-type]
    request = Request("DELETE", "/api/v1/queue/leave", b"token=t", {}, "0" * 32)

    async def per_call_us(call: Callable[[], Any]) -> float:
        samples = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(REQUESTS):
                await call()
            samples.append((time.perf_counter() - started) / REQUESTS * 1e6)
        return statistics.median(samples)

    async def run() -> dict[str, float]:
        bare_script = await per_call_us(lambda: script.run(executor, ("k",)))
        executor.observers = (RedisMetrics(),)
        observed_script = await per_call_us(lambda: script.run(executor, ("k",)))
        executor.observers = ()
        bare_handler = await per_call_us(lambda: bare.leave(request))
        observed_handler = await per_call_us(lambda: observed.leave(request))
        return {
            "added to a script call": observed_script - bare_script,
            "added to a queue handler": observed_handler - bare_handler,
        }

    return asyncio.run(run())


def measure() -> None:
    import gc

    gc.disable()
    mode = "multi-process" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single-process"
    results = {**recorders(), **gateway_requests(), **script_and_queue_wrappers()}
    print(f"{mode}:")
    for name, micros in results.items():
        print(f"  {name:34s} {micros:6.2f} us")
    total = (
        results["added by metrics"]
        + results["added to a script call"]
        + results["added to a queue handler"]
    )
    print(f"  {'join/status total (3 seams)':34s} {total:6.2f} us")


def main() -> None:
    if "--child" in sys.argv:
        measure()
        return
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    command = [sys.executable, "-m", "bench.metrics_cost", "--child"]
    subprocess.run(command, env=env, check=True)
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as directory:
        subprocess.run(command, env={**env, "PROMETHEUS_MULTIPROC_DIR": directory}, check=True)


if __name__ == "__main__":
    main()
