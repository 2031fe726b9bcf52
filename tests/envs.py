"""Environment mappings for apps built in tests.

Every app built by a test shares one throwaway SQLite file (so the accounts signing key is
generated once per session, not per app) and, unless a test asks for it, runs without rate
limiting: hundreds of requests from 127.0.0.1 would otherwise measure the limiter instead of
the behaviour under test. The limiter has its own tests, and tests/integration/test_app_http.py
drives the fully wired app with it on. Production-mode apps run the reference booking
services in-process (BACKEND_EMBEDDED=true), as the tests have no separate services to dial,
and lift the per-person seat cap: the development user books the demo event in many tests
against this one database (tests/services/test_seat_limit.py and
tests/integration/test_seat_limit_http.py test the cap).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

_DB_DIR = tempfile.mkdtemp(prefix="tg-test-db-")
atexit.register(shutil.rmtree, _DB_DIR, True)
TEST_DATABASE_PATH = str(Path(_DB_DIR) / "ticketgate.db")


def app_env(**overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_PATH": TEST_DATABASE_PATH,
        "RATE_LIMIT_ENABLED": "false",
        "BACKEND_EMBEDDED": "true",
        "BOOKING_MAX_SEATS_PER_USER": "10000",
    }
    env.update(overrides)
    return env


def child_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The environment of a `ticketgate` child process: this one's, `app_env(**overrides)` on
    top, temporary files in the test's directory, and no inherited metrics directory (the
    command prepares its own for several workers)."""
    env = {**os.environ, **app_env(**overrides), "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env
