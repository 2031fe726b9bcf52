"""The RS256 key that signs our access tokens, and the JWKS that publishes its public half.

The key comes from configuration (AUTH_SIGNING_KEY / AUTH_SIGNING_KEY_FILE) or, for a
self-contained install, is generated on first start and stored in the database: every worker
process and every pod reads the same row, so a token minted by one is accepted by all, and
restarts do not log everybody out. Concurrent first starts each generate a candidate, then
insert it only if the slot is still empty and read back whichever row won, so they converge
on one key.

The `kid` is the key's RFC 7638 thumbprint: it names the key by its content, so the same key
gets the same kid wherever it is loaded, and a different key can never reuse a kid.

Anyone who can read the `signing_keys` table can mint tokens; production installs that want
the key outside the database set AUTH_SIGNING_KEY(_FILE).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from ticketgate.accounts import tables
from ticketgate.database import Database

log = logging.getLogger("ticketgate.accounts")

ALGORITHM = "RS256"
KEY_BITS = 2048
MIN_KEY_BITS = 2048
PRIMARY_SLOT = "primary"
_encode = msgspec.json.Encoder().encode


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required members, in lexicographic order, no whitespace."""
    numbers = public_key.public_numbers()
    canonical = f'{{"e":"{_b64url_uint(numbers.e)}","kty":"RSA","n":"{_b64url_uint(numbers.n)}"}}'
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Load an unencrypted RSA private key (PKCS#1 or PKCS#8 PEM); ValueError says why not."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValueError("the private key is encrypted; provide it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM-encoded private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{ALGORITHM} needs an RSA key, got {type(key).__name__}")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"the RSA key has {key.key_size} bits; at least {MIN_KEY_BITS} needed")
    return key


def generate_private_pem(bits: int = KEY_BITS) -> bytes:
    """A fresh RSA key as unencrypted PKCS#8 PEM (CPU-heavy: call it in a thread)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey
    source: str  # "config", "database" or "generated"

    @classmethod
    def from_pem(cls, pem: bytes, source: str) -> SigningKey:
        key = parse_private_key(pem)
        return cls(jwk_thumbprint(key.public_key()), key, source)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )


def jwks_document(keys: Iterable[SigningKey]) -> bytes:
    return _encode({"keys": [key.public_jwk() for key in keys]})


async def read_stored_pem(database: Database, slot: str = PRIMARY_SLOT) -> bytes | None:
    async with database.read() as conn:
        result = await conn.execute(
            select(tables.signing_keys.c.private_pem).where(tables.signing_keys.c.slot == slot)
        )
        pem = result.scalar_one_or_none()
    return None if pem is None else pem.encode("ascii")


async def store_pem_if_absent(database: Database, pem: bytes, slot: str = PRIMARY_SLOT) -> bytes:
    """Insert `pem` into `slot` unless a key is there already; return the key that is there.

    Insert and read-back share one write transaction: whoever commits first wins, and every
    other caller reads the winner's key, never its own discarded candidate.
    """
    kid = jwk_thumbprint(parse_private_key(pem).public_key())
    insert = (
        database.insert(tables.signing_keys)
        .values(
            kid=kid,
            slot=slot,
            algorithm=ALGORITHM,
            private_pem=pem.decode("ascii"),
            created_at=tables.utcnow(),
        )
        .on_conflict_do_nothing()
    )
    async with database.write() as conn:
        await conn.execute(insert)
        result = await conn.execute(
            select(tables.signing_keys.c.private_pem).where(tables.signing_keys.c.slot == slot)
        )
        stored: str = result.scalar_one()
    return stored.encode("ascii")


class TokenSigner:
    """Holds the signing key; loads (or creates) it once, on first use or at start-up."""

    def __init__(self, database: Database, configured_pem: bytes = b"") -> None:
        self.database = database
        database.register(tables.metadata)
        self._configured_pem = configured_pem
        self._key: SigningKey | None = None
        self._jwks: bytes | None = None
        self._lock = asyncio.Lock()
        self.generated_candidate = False  # this instance generated a key (it may have lost)

    async def load(self) -> SigningKey:
        if self._key is not None:
            return self._key
        async with self._lock:
            if self._key is None:
                self._key = await self._load()
                self._jwks = jwks_document([self._key])
                log.info("token signing key %s (%s)", self._key.kid, self._key.source)
            return self._key

    async def _load(self) -> SigningKey:
        if self._configured_pem:
            return SigningKey.from_pem(self._configured_pem, "config")
        stored = await read_stored_pem(self.database)
        if stored is not None:
            return SigningKey.from_pem(stored, "database")
        candidate = await asyncio.to_thread(generate_private_pem)
        self.generated_candidate = True
        winner = await store_pem_if_absent(self.database, candidate)
        return SigningKey.from_pem(winner, "generated" if winner == candidate else "database")

    async def sign(self, claims: Mapping[str, Any]) -> str:
        return (await self.load()).sign(claims)

    async def jwks(self) -> bytes:
        await self.load()
        assert self._jwks is not None
        return self._jwks


class LocalJwksSource:
    """Our own JWKS for the JWKS cache, without an HTTP round trip to ourselves."""

    def __init__(self, signer: TokenSigner) -> None:
        self._signer = signer

    async def fetch(self) -> bytes:
        return await self._signer.jwks()
