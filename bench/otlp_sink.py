"""A minimal OTLP/gRPC trace collector for benchmarks: accepts every export, counts spans.

Tracing measured without a listening collector pays for failed exports and retries in the
SDK's export thread, which no production deployment would; this sink answers every Export
like a healthy collector, so the gateway's cost is the cost of making and sending spans.
Parsing happens in protobuf's C extension (upb) and the sink runs in its own process, like
wrk. It stops by itself after `--seconds` and prints what it received as one JSON line.

Run: .venv/bin/python -m bench.otlp_sink --port 4317 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Counts:
    def __init__(self) -> None:
        self.exports = 0
        self.spans = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def export(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        parsed = ExportTraceServiceRequest.FromString(request)
        spans = sum(len(s.spans) for r in parsed.resource_spans for s in r.scope_spans)
        with self._lock:
            self.exports += 1
            self.spans += spans
            self.bytes += len(request)
        return ExportTraceServiceResponse().SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4317)
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after (default 120)")
    args = parser.parse_args()
    counts = Counts()
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(counts.export)},
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    done.wait(args.seconds)
    server.stop(1).wait()
    print(json.dumps({"exports": counts.exports, "spans": counts.spans, "bytes": counts.bytes}))


if __name__ == "__main__":
    main()
