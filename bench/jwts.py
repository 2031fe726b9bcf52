"""Signed-in fans for the join-with-JWT scenario: RS256 access tokens the gateway accepts.

The harness makes its own RSA key and hands it to the gateway as AUTH_SIGNING_KEY, so the
gateway publishes that key in its JWKS and validates these tokens exactly like the ones its
own login issues: same `SigningKey` code, same kid (the key's RFC 7638 thumbprint), same
claims. Nothing is bypassed, every request pays the full RS256 verification.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from ticketgate.accounts.keys import SigningKey, generate_private_pem

# Tokens outlive any run; the gateway checks exp with its leeway, never a maximum age.
TOKEN_LIFETIME_SEC = 4 * 3600


def user_id(n: int) -> str:
    return f"usr_bench_{n}"


def new_key() -> tuple[bytes, SigningKey]:
    """A fresh 2048-bit key as PKCS#8 PEM (for the gateway) and as a signer (for the bench)."""
    pem = generate_private_pem()
    return pem, SigningKey.from_pem(pem, "bench")


def mint(path: Path, key: SigningKey, users: int, *, issuer: str, audience: str) -> float:
    """Write one access token per user (line n is user n) with the claims the gateway's
    login puts in its own (AccountService), so size and checks match; returns the seconds it
    took (~0.4 ms per RS256 signature on the dev box)."""
    started = time.perf_counter()
    now = int(time.time())
    lines = [
        key.sign(
            {
                "iss": issuer,
                "aud": audience,
                "sub": user_id(n),
                "iat": now,
                "nbf": now,
                "exp": now + TOKEN_LIFETIME_SEC,
                "jti": secrets.token_urlsafe(16),
                "roles": ["user"],
            }
        )
        for n in range(users)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return time.perf_counter() - started
