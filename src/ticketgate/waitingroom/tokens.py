"""Stateless signed tokens: the waiting token and the reservation token.

A waiting token carries event, sequence, join time and the joining user, signed with HMAC so a
forged or altered token is refused before any store is asked, and the store keeps no per-token
key. A reservation token is signed the same way; its single use is enforced by the store.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac

import msgspec

_WAITING_PREFIX = "wt1."
_RESERVATION_PREFIX = "rt1."
_MAC_BYTES = 16
MAX_TOKEN_LENGTH = 512


class WaitingClaims(msgspec.Struct, array_like=True, frozen=True):
    event_id: str
    seq: int
    joined_ms: int
    user_id: str


class ReservationClaims(msgspec.Struct, array_like=True, frozen=True):
    event_id: str
    seq: int
    user_id: str
    expires_ms: int


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


_URLSAFE = bytes.maketrans(b"+/", b"-_")
# base64url to base64 for the strict decoder; '+', '/' and '=' are not base64url text, so they
# become '!', which the strict decoder refuses.
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING = (b"", b"", b"==", b"=")  # by the text's length modulo 4
# The last character of a canonical text whose length modulo 4 is 2 (4 unused low bits) or
# 3 (2 unused low bits): those bits are zero. A length of 1 modulo 4 is never base64.
_CANONICAL_LAST: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset(),
    frozenset(b"AQgw"),
    frozenset(b"AEIMQUYcgkosw048"),
)


def _b64(data: bytes) -> str:
    """Unpadded base64url; `base64.urlsafe_b64encode` is this behind two Python calls, paid
    twice per token signed or verified."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict decoding: the lenient stdlib decoder skips stray characters and ignores the
    unused low bits of the last character, so many strings would verify as one token. Only
    the canonical text of some bytes decodes (tests/unit/test_tokens.py); the strict decoder
    and one look at the last character check that in ~0.4 µs, where a regex, the decode and
    encoding the bytes again to compare cost ~1.2 µs, paid twice per status."""
    raw = text.encode("ascii")  # UnicodeEncodeError (a ValueError) on anything else
    rest = len(raw) % 4
    if not raw or (rest and raw[-1] not in _CANONICAL_LAST[rest]):
        raise InvalidToken("token is not canonical base64")
    # binascii.Error (a ValueError) on any character outside the alphabet
    return binascii.a2b_base64(raw.translate(_FROM_URLSAFE) + _PADDING[rest], strict_mode=True)


_BLOCK = 64  # SHA-256's block size
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


class KeyedSha256:
    """HMAC-SHA256 (RFC 2104) with the key's two padded blocks hashed once, at start.

    Every join signs a token and every status verifies one. `hmac.new` sets up a fresh
    OpenSSL HMAC context each time (~2.5 µs); copying the two prepared SHA-256 states costs
    ~0.6 µs for the same digest (tests/unit/test_tokens.py compares it with `hmac.new`).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_INNER_PAD))
        self._outer = hashlib.sha256(key.translate(_OUTER_PAD))

    def prefixed(self, prefix: bytes) -> KeyedSha256:
        """The same key with `prefix` already hashed into the inner state: its digest(m) is
        digest(prefix + m). A token's kind prefix starts every message it signs, so hashing
        it once saves joining the bytes and hashing them on every status."""
        keyed = object.__new__(KeyedSha256)
        keyed._inner = self._inner.copy()
        keyed._inner.update(prefix)
        keyed._outer = self._outer
        return keyed

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class TokenSigner:
    """Signs and verifies tokens with one secret; the prefix separates the two token kinds."""

    __slots__ = ("_reservation_decoder", "_reservation_mac", "_waiting_decoder", "_waiting_mac")

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("token secret must not be empty")
        keyed = KeyedSha256(secret)
        # A kind's MAC covers its prefix and the payload; the prefix is hashed in once here.
        self._waiting_mac = keyed.prefixed(_WAITING_PREFIX.encode())
        self._reservation_mac = keyed.prefixed(_RESERVATION_PREFIX.encode())
        self._waiting_decoder = msgspec.msgpack.Decoder(WaitingClaims)
        self._reservation_decoder = msgspec.msgpack.Decoder(ReservationClaims)

    def _sign(self, prefix: str, claims: msgspec.Struct) -> str:
        keyed = self._waiting_mac if prefix == _WAITING_PREFIX else self._reservation_mac
        payload = msgspec.msgpack.encode(claims)
        return f"{prefix}{_b64(payload)}.{_b64(keyed.digest(payload)[:_MAC_BYTES])}"

    @staticmethod
    def _open(prefix: str, keyed: KeyedSha256, token: str) -> bytes:
        """The payload of a `prefix` token whose MAC `keyed` (that kind's, prefixed) made."""
        if len(token) > MAX_TOKEN_LENGTH or not token.startswith(prefix):
            raise InvalidToken("unknown token format")
        body, sep, mac_text = token[len(prefix) :].partition(".")
        if not sep:
            raise InvalidToken("unknown token format")
        try:
            payload = _unb64(body)
            mac = _unb64(mac_text)
        except (ValueError, UnicodeEncodeError):
            raise InvalidToken("token is not valid base64") from None
        if not hmac.compare_digest(mac, keyed.digest(payload)[:_MAC_BYTES]):
            raise InvalidToken("token signature does not match")
        return payload

    def sign_waiting(self, claims: WaitingClaims) -> str:
        return self._sign(_WAITING_PREFIX, claims)

    def verify_waiting(self, token: str) -> WaitingClaims:
        payload = self._open(_WAITING_PREFIX, self._waiting_mac, token)
        try:
            return self._waiting_decoder.decode(payload)
        except msgspec.DecodeError:
            raise InvalidToken("token payload is malformed") from None

    def sign_reservation(self, claims: ReservationClaims) -> str:
        return self._sign(_RESERVATION_PREFIX, claims)

    def verify_reservation(self, token: str) -> ReservationClaims:
        payload = self._open(_RESERVATION_PREFIX, self._reservation_mac, token)
        try:
            return self._reservation_decoder.decode(payload)
        except msgspec.DecodeError:
            raise InvalidToken("token payload is malformed") from None
