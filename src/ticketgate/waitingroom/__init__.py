"""The waiting room domain: queue order, admission, ETA and tokens, free of HTTP and Redis."""
