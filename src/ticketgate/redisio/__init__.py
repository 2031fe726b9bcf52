"""Redis adapters: a pipelining single-connection executor and a cluster executor."""
