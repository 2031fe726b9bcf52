"""Load harness for ticketgate: `python -m bench.run` (see docs/benchmarks.md)."""
