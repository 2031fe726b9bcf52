"""Who is calling: the seam where authentication plugs into the gateway.

The gateway asks an `Authenticator` to turn an Authorization header into a `Principal`
(or to refuse it); routes declare whether they need one. Until JWT/JWKS validation lands,
the only authenticator accepts the development bypass tokens, and only in development.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

DEV_SUPER_TOKEN = "dev-super-key-local-testing"
DEV_SUPER_USER = "dev-user-123"
LOAD_TEST_TOKEN = "load-test-bypass-token"
_LOAD_TEST_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)


class AuthError(Exception):
    """Refusal with a wire code: MISSING_AUTHORIZATION, INVALID_TOKEN_FORMAT or INVALID_TOKEN."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Authenticator(Protocol):
    async def authenticate(self, authorization: str, load_test_user: str) -> Principal:
        """Validate the header value; raise AuthError when it does not identify a caller."""


def bearer_token(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthError("INVALID_TOKEN_FORMAT", "Authorization must be 'Bearer <token>'")
    return token


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
