"""gRPC clients of the booking backends (reservation, payment): deadlines, retries where safe,
a circuit breaker per backend, and the structured error mapping to the public API."""
