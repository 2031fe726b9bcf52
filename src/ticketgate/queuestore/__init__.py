"""Adapters of the waiting room's `QueueStore` port: Redis (with its Lua) and in-memory.

The domain (`ticketgate.waitingroom`) decides; these only store, each in one atomic step.
"""
