"""Reference booking backends: inventory, reservation and payment simulator as gRPC servers.

They exist so that one machine runs the whole flow (join → enter → reserve → pay → confirm)
and so that the gateway is tested against real servers speaking the real contracts. Each
service keeps its state in SQL through `ticketgate.database` (SQLite by default, PostgreSQL
via DATABASE_URL); `server.run_services` starts all three in the current event loop.
"""
