"""Bearer JWT validation: the production `Authenticator`.

Why it is built this way:

- The algorithm allow-list comes from configuration, never from the token (RFC 8725 §2.1):
  `none` is refused outright, HS* only exists when `JWT_SECRET` is set and is verified with
  that secret alone, and asymmetric tokens are verified with a key from the JWKS cache that
  is bound to one algorithm. A token that claims HS256 and is signed with the RSA public key
  therefore has no way to be checked against that public key.
- Every refusal is `AuthError("INVALID_TOKEN", ...)` with a fixed message: no exception text,
  no claim values, no `kid` — the message ends up in a response header and in logs.
- The hot path is one header decode, one dictionary lookup and one signature check; the
  network is only touched by the cache, and only for an unknown `kid`. Signatures are checked
  with PyJWT's algorithm objects (through the cached `PyJWK`), but not through `jwt.decode`:
  its byte-by-byte base64url scan in Python doubled the cost of an RS256 validation (81 µs vs
  39 µs measured), so the shape is checked by one regex and the RFC 7519 claims are checked
  here (`_check_claims`), with the same semantics (exp required, leeway on exp/nbf/iat).
- The development bypass tokens are recognised before the JWT format check so that outside
  development they are refused as INVALID_TOKEN (a token, just not a valid one), not as a
  format error that would hint the server knows them.
- A client polls its queue status with the same token every few seconds, and the RS256 check
  (~40 µs) was about half of such a request's CPU. Tokens that passed every check are kept in
  a bounded cache of verified tokens (`JWT_VERIFIED_CACHE_SIZE`), so each token pays its
  signature check once (in-process: ~2.3 µs per call for a cached RS256 token vs ~32 µs
  uncached). It is safe because:
  * the key is the exact full token string, so any change to header, claims or signature
    is a miss and takes the full path; only tokens that passed every check are stored, never
    a refusal; bypass tokens and the format check are handled before the cache is consulted;
  * on every hit the signing key is looked up again and must be the very `PyJWK` object
    that verified the token: a key removed from the JWKS refuses the token as before, and a
    refresh (new key objects) makes each token be verified once more;
  * `exp` is re-checked against the clock with the leeway on every hit (`nbf`/`iat` need
    not be: a token that was valid once stays past its not-before);
  * the alg allow-list, issuer, audience and secret are fixed for the process;
  * it holds at most `JWT_VERIFIED_CACHE_SIZE` entries (oldest inserted evicted first).
  Memory: ~1.3 KB per entry for a typical RS256 token of ~590 characters (tracemalloc over
  10,000 entries: the token, the principal with its roles set, the dict slot), so ~85 MB at
  the default 65,536 entries; the size is by count, so tokens near the 8 KB limit would take
  ~9 KB each.
  It is an `OrderedDict` because evicting the oldest entry of a plain dict with
  `next(iter(d))` scans the deleted slots at its front: ~25 µs per insert once full at
  65,536 entries, vs ~0.6 µs for `popitem(last=False)`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from jwt import PyJWK
from jwt.algorithms import Algorithm, get_default_algorithms

from ticketgate.edge.auth import AuthError, Principal, bearer_token
from ticketgate.middleware.dev_bypass import (
    DEV_SUPER_TOKEN,
    LOAD_TEST_TOKEN,
    DevBypassAuthenticator,
)
from ticketgate.middleware.jwks import JwksCache
from ticketgate.middleware.settings import HMAC_ALGORITHMS, JwtSettings

MAX_TOKEN_CHARS = 8192
SUB_MAX_CHARS = 128  # the waiting room's user-id limit
MAX_ROLES = 32
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a fully checked token proved, and what must still hold to reuse it."""

    principal: Principal
    exp: float
    alg: str
    kid: str | None  # None for HS*: JWT_SECRET is fixed for the process
    key: PyJWK | None  # the JWKS key object that verified it (None for HS*)


class JwtAuthenticator:
    """Turns `Authorization: Bearer <jwt>` into a `Principal`, or refuses it.

    `clock` (wall-clock seconds, for `exp`/`nbf`/`iat`) is injectable so tests can let a
    cached token expire without sleeping.
    """

    def __init__(
        self,
        settings: JwtSettings,
        cache: JwksCache | None,
        dev: DevBypassAuthenticator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.dev = dev
        self._allowed = frozenset(settings.algorithms)
        self._hmac: dict[str, Algorithm] = {}
        if settings.secret:
            library = get_default_algorithms()
            self._hmac = {alg: library[alg] for alg in self._allowed & HMAC_ALGORITHMS}
        self._issuer = frozenset(settings.issuer)
        self._audience = frozenset(settings.audience)
        self._leeway = settings.leeway_sec
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._verified_max = settings.verified_cache_size
        self.signature_checks = 0  # signatures actually verified; for tests and probes

    async def authenticate(self, authorization: str, load_test_user: str) -> Principal:
        token = bearer_token(authorization)
        if token == DEV_SUPER_TOKEN or token.startswith(LOAD_TEST_TOKEN):
            if self.dev.enabled:
                return await self.dev.authenticate(authorization, load_test_user)
            raise AuthError("INVALID_TOKEN", "token is not valid")
        # An exact token verified before passed the shape check then: a polling client's
        # repeat skips it (~1 µs for a 590-character RS256 token).
        cached = self._verified.get(token)
        if cached is not None:
            principal = self._reuse_now(cached)
            if principal is None:
                principal = await self._reuse(token, cached)
            if principal is not None:
                return principal
        # The regex checks the base64url alphabet of all three segments at C speed; PyJWT's
        # decode does the same byte by byte in Python, which was most of its ~50 µs overhead.
        if len(token) > MAX_TOKEN_CHARS or _JWT_SHAPE.fullmatch(token) is None:
            raise AuthError(
                "INVALID_TOKEN_FORMAT", "bearer token must be a JWT (three base64url segments)"
            )
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = _json_object(header_b64, "token header is malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthError("INVALID_TOKEN", "unsigned tokens (alg none) are not accepted")
        if alg not in self._allowed:
            raise AuthError("INVALID_TOKEN", "token algorithm is not allowed")
        if "crit" in header or "b64" in header:  # RFC 7515 §4.1.11: unknown extensions fail
            raise AuthError("INVALID_TOKEN", "token uses unsupported header extensions")
        verifier: Algorithm
        key: Any
        jwk: PyJWK | None = None
        hmac = self._hmac.get(alg)
        if hmac is not None:  # HS* is verified with JWT_SECRET and nothing else
            verifier, key = hmac, self.settings.secret
        else:  # asymmetric: a key from the set, bound to exactly this algorithm
            jwk = await self._public_key(header.get("kid"), alg)
            verifier, key = jwk.Algorithm, jwk.key
        signing_input = token[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
        self.signature_checks += 1
        try:
            valid = verifier.verify(signing_input, key, _b64decode(signature_b64))
        except (ValueError, TypeError):  # a backend refusing an odd signature encoding
            valid = False
        if not valid:
            raise AuthError("INVALID_TOKEN", "token signature is invalid")
        claims = _json_object(payload_b64, "token claims are malformed")
        exp = self._check_claims(claims)
        principal = Principal(_subject(claims), _roles(claims))
        if self._verified_max:
            kid = None if jwk is None else header["kid"]
            self._remember(token, _Verified(principal, exp, alg, kid, jwk))
        return principal

    def _reuse_now(self, cached: _Verified) -> Principal | None:
        """The cached principal when deciding needs no await (the common repeat): the key set
        is fresh and still holds the very key that verified the token, and it has not
        expired. None leaves every other case to `_reuse`."""
        if cached.kid is not None and (
            self.cache is None or self.cache.fresh(cached.kid, cached.alg) is not cached.key
        ):
            return None
        if cached.exp <= self._clock() - self._leeway:
            return None
        return cached.principal

    async def _reuse(self, token: str, cached: _Verified) -> Principal | None:
        """The cached principal if its key is still the one that verified it and it has not
        expired; None (entry dropped) to take the full path. Refusals drop the entry too."""
        if cached.kid is not None:
            try:
                key = await self._public_key(cached.kid, cached.alg)  # raises if key removed
            except AuthError:
                self._verified.pop(token, None)
                raise
            if key is not cached.key:  # the key set was refreshed: verify once more
                self._verified.pop(token, None)
                return None
        if cached.exp <= self._clock() - self._leeway:
            self._verified.pop(token, None)
            raise AuthError("INVALID_TOKEN", "token has expired")
        return cached.principal

    def _remember(self, token: str, verified: _Verified) -> None:
        entries = self._verified
        entries.pop(token, None)  # two concurrent first uses: keep one entry
        while len(entries) >= self._verified_max:
            entries.popitem(last=False)
        entries[token] = verified

    def _check_claims(self, claims: Mapping[str, Any]) -> float:
        """RFC 7519 §4.1: time claims with the configured leeway, then issuer and audience.
        Returns `exp`, which a cached token must still satisfy on every later use."""
        now = self._clock()
        exp = _numeric_date(claims, "exp", required=True)
        assert exp is not None  # required=True raises instead
        if exp <= now - self._leeway:
            raise AuthError("INVALID_TOKEN", "token has expired")
        for name in ("nbf", "iat"):
            moment = _numeric_date(claims, name, required=False)
            if moment is not None and moment > now + self._leeway:
                raise AuthError("INVALID_TOKEN", "token is not valid yet")
        if self._issuer:
            issuer = claims.get("iss")
            if issuer is None:
                raise AuthError("INVALID_TOKEN", "token lacks the required iss claim")
            if not isinstance(issuer, str) or issuer not in self._issuer:
                raise AuthError("INVALID_TOKEN", "token issuer is not accepted")
        if self._audience:
            audience = claims.get("aud")
            if audience is None or audience in ("", []):
                raise AuthError("INVALID_TOKEN", "token lacks the required aud claim")
            audiences = [audience] if isinstance(audience, str) else audience
            if not isinstance(audiences, list) or not any(
                isinstance(aud, str) and aud in self._audience for aud in audiences
            ):
                raise AuthError("INVALID_TOKEN", "token audience is not accepted")
        return exp

    async def _public_key(self, kid: object, alg: str) -> PyJWK:
        if self.cache is None:
            raise AuthError("INVALID_TOKEN", "no key set is configured for this algorithm")
        if not isinstance(kid, str) or not kid:
            raise AuthError("INVALID_TOKEN", "token header has no key id (kid)")
        key = await self.cache.get(kid, alg)
        if key is None:
            if not self.cache.loaded:
                raise AuthError("INVALID_TOKEN", "signing keys are not available yet")
            raise AuthError("INVALID_TOKEN", "token signing key is not known")
        return key

    async def aclose(self) -> None:
        if self.cache is not None:
            await self.cache.aclose()


def _b64decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise AuthError("INVALID_TOKEN", "token is malformed") from None


def _json_object(segment: str, message: str) -> dict[str, Any]:
    try:
        return _decode_object(_b64decode(segment))
    except (AuthError, msgspec.DecodeError):  # also ValidationError: JSON, not an object
        raise AuthError("INVALID_TOKEN", message) from None


def _numeric_date(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise AuthError("INVALID_TOKEN", f"token lacks the required {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise AuthError("INVALID_TOKEN", f"token {name} claim must be a number")
    return float(value)


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if sub is None:
        raise AuthError("INVALID_TOKEN", "token lacks the required sub claim")
    if not isinstance(sub, str) or not sub or len(sub) > SUB_MAX_CHARS:
        raise AuthError("INVALID_TOKEN", f"token sub must be a user id of 1-{SUB_MAX_CHARS} chars")
    return sub


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles = claims.get("roles")
    if isinstance(roles, list):
        return frozenset(role for role in roles[:MAX_ROLES] if isinstance(role, str) and role)
    role = claims.get("role")
    if isinstance(role, str) and role:
        return frozenset({role})
    return frozenset()
