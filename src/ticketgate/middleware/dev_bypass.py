"""The development bypass authenticator: the reference gateway's fixed tokens.

It plugs into the `Authenticator` seam of `edge/auth.py`, like the JWT authenticator, and
accepts its tokens only in development.
"""

from __future__ import annotations

import re

from ticketgate.edge.auth import AuthError, Principal, bearer_token

DEV_SUPER_TOKEN = "dev-super-key-local-testing"
DEV_SUPER_USER = "dev-user-123"
LOAD_TEST_TOKEN = "load-test-bypass-token"
_LOAD_TEST_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


class DevBypassAuthenticator:
    """Accepts the reference gateway's bypass tokens when `enabled` (development only).

    `load-test-bypass-token-<suffix>` (or the X-Load-Test-User header) yields a distinct user
    per virtual user, so 30k load-test users do not collapse into one queue entry.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    async def authenticate(self, authorization: str, load_test_user: str) -> Principal:
        token = bearer_token(authorization)
        if self.enabled:
            if token == DEV_SUPER_TOKEN:
                return Principal(DEV_SUPER_USER, frozenset({"user", "admin"}))
            if token.startswith(LOAD_TEST_TOKEN):
                suffix = token[len(LOAD_TEST_TOKEN) :].lstrip("-:") or load_test_user or "0"
                if _LOAD_TEST_SUFFIX.fullmatch(suffix) is None:
                    raise AuthError("INVALID_TOKEN", "load-test user suffix is malformed")
                return Principal(f"load-test-{suffix}", frozenset({"user"}))
        raise AuthError("INVALID_TOKEN", "token is not valid")
