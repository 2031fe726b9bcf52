"""How the command-line entry points refuse to start: one plain line on stderr, exit 2.

Shared by `ticketgate serve`, `ticketgate services` and the admin commands, so a log
collector sees the same single line whichever command an operator misconfigured.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ticketgate.envparse import ConfigError


def stderr_console() -> Console:
    """Rich on stderr that never wraps: without soft_wrap, Rich wraps at 80 columns whenever
    stderr is not a terminal (a pipe, a log collector), cutting one line into several."""
    return Console(stderr=True, soft_wrap=True)


def config_failure(exc: ConfigError) -> typer.Exit:
    """Write why the settings were refused on one plain line (no markup, no wrapping,
    whatever the message contains) and return the exit to raise: status 2."""
    reason = " ".join(str(exc).split())
    sys.stderr.write(f"ticketgate: configuration error: {reason}\n")
    sys.stderr.flush()
    return typer.Exit(2)
