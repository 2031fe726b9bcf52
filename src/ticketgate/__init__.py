"""ticketgate: a fair, fast virtual waiting room and gateway for concert on-sales."""

__version__ = "0.1.0"
