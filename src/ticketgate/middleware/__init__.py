"""Request-scoped concerns that sit between the socket and the handlers."""
