"""Signing keys from a JWKS document, cached so that validating a token needs no network.

Why the cache is shaped like this:

- A ticket on-sale sends tens of thousands of requests per second through one worker, so the
  hot path (a known `kid`) must be a dictionary lookup, never a fetch or a lock.
- Concurrent callers of a cold or stale cache share one fetch (single-flight): 5 000 first
  requests after a deploy must not become 5 000 requests to the identity provider.
- An attacker can mint tokens with random `kid`s for free. An unknown `kid` may trigger a
  refetch (that is how key rotation is picked up), but at most once per cooldown, so a flood
  costs the identity provider one request per cooldown, however large it is.
- Identity providers fail. A failed or garbled fetch keeps the last good keys in service; a
  stale set is retried once per cooldown, in the background.
- Only keys that fit the algorithm allow-list are loaded, each bound to one algorithm
  (`PyJWK` checks the token's `alg` against it), and symmetric (`oct`) keys are never taken
  from a key set: HS* tokens are verified with `JWT_SECRET` only. This is what defeats the
  "HS256 signed with the RSA public key" confusion attack at the source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from ticketgate.background import cancel_and_wait
from ticketgate.digits import ascii_int

log = logging.getLogger("ticketgate.auth")

DEFAULT_ALGORITHMS = ("RS256", "ES256")
MAX_JWKS_BYTES = 512 * 1024

# Which asymmetric algorithms a key type (and, for EC/OKP, its curve) can verify.
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})


class JwksFetchError(Exception):
    """The key set could not be fetched or is not a key set; the message is one line."""


class JwksSource(Protocol):
    """Where a key set comes from: an identity provider over HTTP, or the gateway's own keys."""

    async def fetch(self) -> bytes:
        """Return a JWKS JSON document (`{"keys": [...]}`); raise on any failure."""
        ...


class HttpJwksSource:
    """Fetches a JWKS document over HTTP(S) with a bounded timeout and a bounded size.

    Redirects are not followed: a key set is security material, and its URL is configured
    exactly. The client is created on first use so the source can be built before the event
    loop of a worker process exists.
    """

    def __init__(self, url: str, timeout: float = 3.0, max_bytes: int = MAX_JWKS_BYTES) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("JWKS endpoint must be an http:// or https:// URL")
        self.url = url
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None

    async def fetch(self) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                headers={"accept": "application/jwk-set+json, application/json"},
            )
        try:
            # The whole exchange, including a slowly dribbled body, is bounded by the timeout.
            async with asyncio.timeout(self.timeout):
                return await self._get(self._client)
        except TimeoutError:
            raise JwksFetchError(f"JWKS endpoint did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise JwksFetchError(f"JWKS endpoint unreachable ({type(exc).__name__})") from None

    async def _get(self, client: httpx.AsyncClient) -> bytes:
        async with client.stream("GET", self.url) as response:
            if response.status_code != 200:
                raise JwksFetchError(f"JWKS endpoint answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            length = ascii_int(declared) if declared is not None else None
            if length is not None and length > self.max_bytes:
                raise JwksFetchError(f"JWKS document exceeds {self.max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_bytes:
                    raise JwksFetchError(f"JWKS document exceeds {self.max_bytes} bytes")
                chunks.append(chunk)
        body = b"".join(chunks)
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            raise JwksFetchError("JWKS endpoint answered something that is not JSON") from None
        return body

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def load_keys(
    document: bytes, algorithms: Collection[str]
) -> tuple[dict[str, dict[str, PyJWK]], int]:
    """Parse a JWKS document into `{kid: {alg: PyJWK}}` and the number of keys skipped.

    A key with an `alg` is bound to that algorithm alone; a key without one is bound to every
    allowed algorithm its type and curve can verify. Keys without a `kid`, with a `use` other
    than `sig`, with `key_ops` lacking `verify`, symmetric keys and keys too weak for their
    algorithm are skipped.
    """
    try:
        parsed: Any = json.loads(document)
    except (ValueError, RecursionError):
        raise JwksFetchError("JWKS document is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("keys"), list):
        raise JwksFetchError("JWKS document has no 'keys' list")
    allowed = frozenset(algorithms)
    keys: dict[str, dict[str, PyJWK]] = {}
    skipped = 0
    for jwk in parsed["keys"]:
        bound = _bind(jwk, allowed) if isinstance(jwk, dict) else None
        if not bound:
            skipped += 1
            continue
        kid: str = jwk["kid"]
        if kid in keys:  # a duplicate kid is ambiguous; the first one wins
            skipped += 1
            continue
        keys[kid] = bound
    return keys, skipped


def _bind(jwk: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, PyJWK] | None:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    candidates = _algorithms_for(jwk)
    declared = jwk.get("alg")
    if declared is not None:
        candidates = candidates & {declared}
    bound: dict[str, PyJWK] = {}
    for alg in sorted(candidates & allowed):
        try:
            key = PyJWK(dict(jwk), algorithm=alg)
        except (PyJWTError, ValueError, TypeError):
            return None
        if key.Algorithm.check_key_length(key.key) is not None:
            return None
        bound[alg] = key
    return bound or None


def _algorithms_for(jwk: Mapping[str, Any]) -> frozenset[str]:
    kty = jwk.get("kty")
    if kty == "RSA":
        return _RSA_ALGORITHMS
    if kty == "EC":
        alg = _EC_ALGORITHM_BY_CURVE.get(jwk.get("crv", ""))
        return frozenset({alg}) if alg else frozenset()
    if kty == "OKP" and jwk.get("crv") in _OKP_CURVES:
        return frozenset({"EdDSA"})
    return frozenset()  # "oct" and anything unknown: never from a key set


class JwksCache:
    """Keys by `kid`, refreshed after `ttl_sec`, refetched for an unknown `kid` at most once
    per `kid_cooldown_sec`, with one fetch at a time and the last good keys kept on failure.

    `clock` is injectable (monotonic seconds) so tests can walk through TTLs and cooldowns
    without sleeping.
    """

    def __init__(
        self,
        source: JwksSource,
        ttl_sec: float = 600.0,
        kid_cooldown_sec: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    ) -> None:
        self.source = source
        self.ttl_sec = ttl_sec
        self.kid_cooldown_sec = kid_cooldown_sec
        self.algorithms = frozenset(algorithms)
        self._clock = clock
        self._keys: dict[str, dict[str, PyJWK]] = {}
        self._fresh_until = -math.inf
        self._last_attempt = -math.inf
        self._task: asyncio.Task[bool] | None = None
        self.fetches = 0  # attempts started; for metrics and tests
        self.failures = 0

    @property
    def loaded(self) -> bool:
        """True once a fetch has succeeded (the keys may be stale but are still served)."""
        return bool(self._keys)

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def fresh(self, kid: str, alg: str) -> PyJWK | None:
        """The key `get` would return, when that needs no await: the set is fresh and holds
        `kid`. None sends the caller to `get` (a refresh is due, or the kid is unknown)."""
        if self._clock() >= self._fresh_until:
            return None
        by_alg = self._keys.get(kid)
        return by_alg.get(alg) if by_alg is not None else None

    async def get(self, kid: str, alg: str) -> PyJWK | None:
        """The key for `kid` bound to `alg`, or None when the key set has no such key."""
        now = self._clock()
        if now >= self._fresh_until and self._may_fetch(now):
            task = self._start_fetch(now)
            if not self._keys:  # nothing to serve yet: wait for the first key set
                await asyncio.shield(task)
        by_alg = self._keys.get(kid)
        if by_alg is None:
            pending = self._task
            if pending is None and self._may_fetch(now):
                pending = self._start_fetch(now)
            if pending is not None:  # join the fetch under way instead of starting another
                await asyncio.shield(pending)
                by_alg = self._keys.get(kid)
            if by_alg is None:
                return None
        return by_alg.get(alg)

    async def preload(self) -> bool:
        """Fetch now (joining a fetch under way), ignoring the cooldown; for start-up."""
        task = self._task or self._start_fetch(self._clock())
        await asyncio.shield(task)
        return self.loaded

    async def wait_idle(self) -> None:
        """Wait for a background refresh under way, if any (tests, orderly shutdown)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        close = getattr(self.source, "aclose", None)
        if close is not None:
            await close()

    def _may_fetch(self, now: float) -> bool:
        return self._task is None and now - self._last_attempt >= self.kid_cooldown_sec

    def _start_fetch(self, now: float) -> asyncio.Task[bool]:
        self._last_attempt = now
        self.fetches += 1
        task = asyncio.get_running_loop().create_task(self._fetch())
        self._task = task
        return task

    async def _fetch(self) -> bool:
        try:
            document = await self.source.fetch()
            keys, skipped = load_keys(document, self.algorithms)
            if not keys:
                raise JwksFetchError(
                    f"JWKS document has no usable key for {', '.join(sorted(self.algorithms))}"
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failures += 1
            log.warning(
                "JWKS refresh failed, %s: %s",
                "keeping the last good keys" if self._keys else "no keys loaded yet",
                exc if isinstance(exc, JwksFetchError) else type(exc).__name__,
            )
            return False
        else:
            if skipped:
                log.info("JWKS: loaded %d keys, skipped %d unusable ones", len(keys), skipped)
            self._keys = keys
            self._fresh_until = self._clock() + self.ttl_sec
            return True
        finally:
            self._task = None
