"""Booking rules and the reservation → payment flow, with no HTTP, gRPC, Redis or config.

`service.BookingService` decides; it reaches the reservation and payment backends through the
ports in `ports.py` (the gRPC clients in `ticketgate.backends` implement them) and the waiting
room for the single-use reservation token. Its refusals are the exceptions in `errors.py`,
which the HTTP edge renders as the error envelope.
"""
