"""Who is calling: the seam where authentication plugs into the gateway.

The gateway asks an `Authenticator` to turn an Authorization header into a `Principal`
(or to refuse it); routes declare whether they need one. The authenticators themselves
(JWT/JWKS, the development bypass) live in `middleware/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
