"""Settings of the request guards: JWT validation (JWT_*), rate limits (RATE_LIMIT_*) and
idempotency (IDEMPOTENCY_*), each read from the environment by its `from_env` and validated
once at start. The guards themselves live beside this module (jwt_auth.py, ratelimit.py,
idempotency.py); the composition root (config.py) gathers these into the aggregate settings.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ticketgate.envparse import (
    ConfigError,
    check_secret,
    env_bool,
    env_decimal,
    env_environment,
    env_int,
    env_text,
    parse_decimal,
    parse_duration_sec,
    parse_list,
)
from ticketgate.middleware.jwks import DEFAULT_ALGORITHMS, HttpJwksSource, JwksCache, JwksSource

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}  # RFC 7518 §3.2: key ≥ hash size
_CANONICAL = {name.upper(): name for name in ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS}

DEFAULT_EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics", "/version", "/openapi.json")
HEADER_MODES = ("ietf", "all")


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """JWT validation settings (`JWT_*` variables), validated once at start."""

    jwks_endpoint: str = ""
    issuer: tuple[str, ...] = ()  # empty: `iss` not checked; several: any of them
    audience: tuple[str, ...] = ()  # empty: `aud` not checked; several: any of them
    cache_ttl_sec: float = 600.0
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    secret: bytes = field(default=b"", repr=False)
    leeway_sec: float = 30.0
    kid_cooldown_sec: float = 30.0
    jwks_timeout_sec: float = 3.0
    verified_cache_size: int = 65_536  # verified tokens kept; 0 turns the cache off

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JwtSettings:
        endpoint = env_text(env, "JWT_JWKS_ENDPOINT")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"JWT_JWKS_ENDPOINT must be an http(s) URL, got {endpoint!r}")
        secret = env_text(env, "JWT_SECRET")
        if secret:
            check_secret("JWT_SECRET", secret)
        algorithms = _algorithms(env_text(env, "JWT_ALGORITHMS"), bool(secret))
        for alg in algorithms:
            need = _HMAC_MIN_BYTES.get(alg, 0)
            if len(secret.encode()) < need:
                raise ConfigError(f"JWT_SECRET must be at least {need} bytes for {alg}")
        issuer = parse_list(env_text(env, "JWT_ISSUER"))
        audience = parse_list(env_text(env, "JWT_AUDIENCE"))
        development = env_environment(env) == "development"
        if endpoint and not development and not (issuer and audience):
            raise ConfigError(
                "JWT_ISSUER and JWT_AUDIENCE are required with JWT_JWKS_ENDPOINT outside "
                "development (otherwise tokens the provider minted for other apps are accepted)"
            )
        return cls(
            jwks_endpoint=endpoint,
            issuer=issuer,
            audience=audience,
            cache_ttl_sec=parse_duration_sec(
                "JWT_CACHE_TTL",
                env_text(env, "JWT_CACHE_TTL") or "600",
                1,
                86_400,
                bare_unit="s",
                example="seconds or a duration like 600s, 10m, 1h;",
            ),
            algorithms=algorithms,
            secret=secret.encode(),
            leeway_sec=_seconds(env, "JWT_LEEWAY_SEC", 30, 0, 300),
            kid_cooldown_sec=_seconds(env, "JWT_KID_COOLDOWN_SEC", 30, 0.05, 3600),
            jwks_timeout_sec=_seconds(env, "JWT_JWKS_TIMEOUT_SEC", 3, 0.05, 60),
            verified_cache_size=env_int(env, "JWT_VERIFIED_CACHE_SIZE", 65_536, 0, 1_000_000),
        )

    def jwks_cache(self, source: JwksSource | None = None) -> JwksCache | None:
        """The cache over `source`, or over JWT_JWKS_ENDPOINT when none is given (None when
        neither exists: then only HS* tokens, if a secret is set, can be validated)."""
        if source is None:
            if not self.jwks_endpoint:
                return None
            source = HttpJwksSource(self.jwks_endpoint, self.jwks_timeout_sec)
        return JwksCache(
            source,
            ttl_sec=self.cache_ttl_sec,
            kid_cooldown_sec=self.kid_cooldown_sec,
            algorithms=[alg for alg in self.algorithms if alg in ASYMMETRIC_ALGORITHMS],
        )


def _algorithms(raw: str, has_secret: bool) -> tuple[str, ...]:
    names = parse_list(raw) or DEFAULT_ALGORITHMS
    chosen: list[str] = []
    for name in names:
        if name.lower() == "none":
            raise ConfigError("JWT_ALGORITHMS must not contain 'none' (unsigned tokens)")
        canonical = _CANONICAL.get(name.upper())
        if canonical is None:
            raise ConfigError(
                f"JWT_ALGORITHMS: unknown algorithm {name!r} "
                f"(known: {', '.join(sorted(_CANONICAL.values()))})"
            )
        if canonical in HMAC_ALGORITHMS and not has_secret:
            raise ConfigError(f"JWT_ALGORITHMS lists {canonical}, which needs JWT_SECRET")
        if canonical not in chosen:
            chosen.append(canonical)
    return tuple(chosen)


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env_text(env, name)
    if raw == "":
        return default
    return parse_decimal(name, raw, low, high, noun="a number of seconds", unit=" seconds")


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    enabled: bool = True
    rps: float = 20.0
    burst: int = 40
    exempt_paths: tuple[str, ...] = DEFAULT_EXEMPT_PATHS
    trusted_proxies: tuple[IPNetwork, ...] = ()
    sync_interval_ms: int = 100
    max_keys: int = 100_000
    # Which headers an admitted request's answer carries: "ietf" (RateLimit and
    # RateLimit-Policy, which say all three numbers) or "all" (also the legacy
    # X-RateLimit-Limit/Remaining/Reset). A refusal (429) always carries all five.
    headers: str = "ietf"
    # The lower budget of the routes marked Route.rate_budget="auth" (login, register),
    # always per client IP: each login costs an argon2 hash (~9 a second saturate a core).
    auth_rps: float = 0.5
    auth_burst: int = 10

    @property
    def window_seconds(self) -> int:
        """The RateLimit-Policy window: an empty bucket refills `burst` in this many seconds."""
        return _window(self.rps, self.burst)

    @property
    def auth_window_seconds(self) -> int:
        return _window(self.auth_rps, self.auth_burst)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RateLimitSettings:
        """Read RATE_LIMIT_*; an unset or empty variable takes the default."""

        defaults = cls()
        enabled = env_bool(env, "RATE_LIMIT_ENABLED", defaults.enabled)
        rps = _rate(env, "RATE_LIMIT_RPS", defaults.rps)
        burst = env_int(env, "RATE_LIMIT_BURST", defaults.burst, 1, 10_000_000)
        auth_rps = _rate(env, "RATE_LIMIT_AUTH_RPS", defaults.auth_rps)
        auth_burst = env_int(env, "RATE_LIMIT_AUTH_BURST", defaults.auth_burst, 1, 10_000_000)
        interval = env_int(
            env, "RATE_LIMIT_SYNC_INTERVAL_MS", defaults.sync_interval_ms, 10, 60_000
        )
        max_keys = env_int(env, "RATE_LIMIT_MAX_KEYS", defaults.max_keys, 100, 50_000_000)
        exempt = defaults.exempt_paths
        if raw := env_text(env, "RATE_LIMIT_EXEMPT_PATHS"):
            exempt = parse_list(raw)
            for path in exempt:
                if not path.startswith("/"):
                    raise ConfigError(
                        f"RATE_LIMIT_EXEMPT_PATHS entries must start with '/', got {path!r}"
                    )
        proxies: tuple[IPNetwork, ...] = ()
        if raw := env_text(env, "RATE_LIMIT_TRUSTED_PROXIES"):
            parsed: list[IPNetwork] = []
            for part in raw.split(","):
                if not part.strip():
                    continue
                try:
                    parsed.append(ipaddress.ip_network(part.strip(), strict=False))
                except ValueError:
                    raise ConfigError(
                        f"RATE_LIMIT_TRUSTED_PROXIES must list IP addresses or CIDRs, "
                        f"got {part.strip()!r}"
                    ) from None
            proxies = tuple(parsed)
        headers = env_text(env, "RATE_LIMIT_HEADERS").lower() or defaults.headers
        if headers not in HEADER_MODES:
            raise ConfigError(f"RATE_LIMIT_HEADERS must be ietf or all, got {headers!r}")
        return cls(
            enabled, rps, burst, exempt, proxies, interval, max_keys, headers, auth_rps, auth_burst
        )

    def is_exempt(self, path: str) -> bool:
        """Exact paths, or prefixes written with a trailing `*` (e.g. `/swagger/*`)."""
        for entry in self.exempt_paths:
            if entry.endswith("*"):
                if path.startswith(entry[:-1]):
                    return True
            elif path == entry:
                return True
        return False


def _window(rps: float, burst: int) -> int:
    """The RateLimit-Policy window: an empty bucket refills `burst` in this many seconds."""
    return max(1, math.ceil(burst / rps - 1e-9))


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """Requests a second: above zero (a zero rate would never refill)."""
    raw = env_text(env, name)
    return default if raw == "" else parse_decimal(name, raw, 0, 1_000_000, above_low=True)


@dataclass(frozen=True, slots=True)
class IdempotencySettings:
    """IDEMPOTENCY_TTL_SEC (retention of answers), IDEMPOTENCY_LEASE_SEC (how long an
    in-flight claim survives a crashed worker), IDEMPOTENCY_MEMORY_MAX_ENTRIES (bound of the
    embedded store)."""

    ttl_sec: float = 86_400.0
    lease_sec: float = 30.0
    memory_max_entries: int = 100_000

    def __post_init__(self) -> None:
        if not 0.05 <= self.lease_sec <= 3_600:
            raise ConfigError(f"IDEMPOTENCY_LEASE_SEC must be 0.05-3600, got {self.lease_sec}")
        if not 0.1 <= self.ttl_sec <= 2_592_000:
            raise ConfigError(f"IDEMPOTENCY_TTL_SEC must be 0.1-2592000, got {self.ttl_sec}")
        if self.lease_sec > self.ttl_sec:
            raise ConfigError("IDEMPOTENCY_LEASE_SEC must not exceed IDEMPOTENCY_TTL_SEC")
        if not 1 <= self.memory_max_entries <= 100_000_000:
            raise ConfigError(
                f"IDEMPOTENCY_MEMORY_MAX_ENTRIES must be 1-100000000, got {self.memory_max_entries}"
            )

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl_sec * 1000))

    @property
    def lease_ms(self) -> int:
        return max(1, round(self.lease_sec * 1000))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdempotencySettings:
        """Read the IDEMPOTENCY_* variables; a malformed one raises ConfigError naming it."""
        defaults = cls()
        return cls(
            ttl_sec=env_decimal(env, "IDEMPOTENCY_TTL_SEC", defaults.ttl_sec),
            lease_sec=env_decimal(env, "IDEMPOTENCY_LEASE_SEC", defaults.lease_sec),
            memory_max_entries=env_int(
                env, "IDEMPOTENCY_MEMORY_MAX_ENTRIES", defaults.memory_max_entries
            ),
        )
