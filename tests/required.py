"""A backend the suite needs is missing: skip on a developer's machine, fail under CI.

scripts/test.sh installs and starts everything the tests use (redis-server, a throwaway
PostgreSQL cluster), so under CI (`CI=true`) a missing backend means the script is broken,
and a quietly skipped PostgreSQL or Redis test would leave the suite green while testing
less. Tests call `backend_unavailable(reason)` instead of `pytest.skip(reason)`.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def backend_unavailable(reason: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"required backend unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)
