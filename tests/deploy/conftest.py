"""Fixtures of the deployment checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketgate.accounts.keys import generate_private_pem


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real RS256 key where a rendered AUTH_SIGNING_KEY_FILE would point."""
    path = tmp_path_factory.mktemp("deploy") / "auth-signing-key.pem"
    path.write_bytes(generate_private_pem())
    return path
