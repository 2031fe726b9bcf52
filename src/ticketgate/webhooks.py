"""Signing and verifying payment webhooks (pure functions, no I/O).

Both ends use this one module: the reference payment service signs what it sends and the
gateway's webhook route verifies what it receives, so the format cannot drift between them.

Header: `X-Ticketgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
The timestamp is inside the MAC, so a captured webhook cannot be replayed after the tolerance
window with a fresh `t`; within the window a replay is harmless because confirming a
reservation is idempotent. Several `v1=` entries may appear (a sender rotating secrets signs
with both); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac

from ticketgate.digits import ascii_int

HEADER = "X-Ticketgate-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SEC = 300
_MAX_HEADER_LENGTH = 1024


def _key(secret: bytes | str) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(secret: bytes | str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: bytes | str, body: bytes, now: float) -> str:
    """The header value for `body` sent at `now` (Unix seconds)."""
    if not _key(secret):
        raise ValueError("webhook secret is empty")
    timestamp = int(now)
    return f"t={timestamp},{SCHEME}={_mac(secret, timestamp, body)}"


def verify(
    secret: bytes | str,
    body: bytes,
    header: str | None,
    now: float,
    tolerance_sec: float = DEFAULT_TOLERANCE_SEC,
) -> bool:
    """True when `header` carries a valid signature of the exact `body` bytes, made within
    `tolerance_sec` of `now` (either side: clocks of sender and receiver differ a little).

    Malformed headers are simply invalid; nothing here raises on attacker input.
    """
    if not header or len(header) > _MAX_HEADER_LENGTH or not _key(secret):
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            return False
        if name == "t":
            if timestamp is not None:
                return False
            timestamp = ascii_int(value)
            if timestamp is None:
                return False
        elif name == SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs(now - timestamp) > tolerance_sec:
        return False
    expected = _mac(secret, timestamp, body).encode()
    # Check every candidate so the time taken does not say which one matched. Compared as
    # UTF-8 bytes: compare_digest refuses non-ASCII str, and header bytes are attacker input.
    matched = False
    for candidate in candidates:
        if hmac.compare_digest(expected, candidate.lower().encode()):
            matched = True
    return matched
