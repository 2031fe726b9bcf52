"""The `ticketgate` command every gateway starts with must not load the rehearsal's plotting
and numeric stack (numpy, matplotlib): ~150 ms and tens of MB per process for a tool the
gateway never runs."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_does_not_import_the_report_stack() -> None:
    probe = (
        "import sys, ticketgate.cli; "
        "print(','.join(m for m in ('numpy', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == ""
