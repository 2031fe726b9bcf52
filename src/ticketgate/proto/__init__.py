"""gRPC contracts (.proto) and the modules generated from them at install."""
