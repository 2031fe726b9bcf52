"""Metrics, tracing and logs: what operators see of the gateway while it runs."""
