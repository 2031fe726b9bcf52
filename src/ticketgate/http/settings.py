"""Settings of the HTTP edge: CORS_ALLOWED_ORIGINS, FRONTDOOR_RETURN_ORIGINS and
READINESS_REQUIRED, each read from the environment by its class's `from_env`.

Origins are parsed here once, exactly as browsers serialise them (`origin_of`), so a request's
Origin header or a return URL is compared with a plain string match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ticketgate.envparse import ConfigError, env_text, parse_list

# The dependencies /readyz reports, in the order it reports them.
DEPENDENCIES = ("redis", "reservation", "payment")


def parse_origins(name: str, raw: str) -> frozenset[str]:
    """Comma-separated exact origins (`scheme://host[:port]`, no path); one bad entry stops
    the process naming it, so a typo never silently opens or closes the door."""
    origins: set[str] = set()
    for text in parse_list(raw):
        if text == "*":
            raise ConfigError(f"{name} takes exact origins, not '*'")
        origins.add(normalise_origin(name, text))
    return frozenset(origins)


def normalise_origin(name: str, text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not an origin") from None
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.path not in {"", "/"}
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"{name}: {text!r} is not an origin (scheme://host[:port], no path), "
            "e.g. https://tickets.example"
        )
    return origin_of(parts.scheme, parts.hostname, port)


def origin_of(scheme: str, host: str, port: int | None) -> str:
    """The serialised origin as browsers send it: lower-case, default port left out."""
    scheme = scheme.lower()
    host = host.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class CorsSettings:
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CorsSettings:
        return cls(parse_origins("CORS_ALLOWED_ORIGINS", env_text(env, "CORS_ALLOWED_ORIGINS")))


@dataclass(frozen=True, slots=True)
class FrontdoorSettings:
    return_origins: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FrontdoorSettings:
        raw = env_text(env, "FRONTDOOR_RETURN_ORIGINS")
        return cls(parse_origins("FRONTDOOR_RETURN_ORIGINS", raw))


@dataclass(frozen=True, slots=True)
class ReadinessSettings:
    required: frozenset[str] = field(default_factory=lambda: frozenset(DEPENDENCIES))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReadinessSettings:
        """READINESS_REQUIRED: comma-separated names out of redis, reservation, payment, or
        `none`; unset or empty means all three."""
        raw = env_text(env, "READINESS_REQUIRED").lower()
        if not raw:
            return cls()
        if raw == "none":
            return cls(frozenset())
        names = set(parse_list(raw))
        unknown = sorted(names - set(DEPENDENCIES))
        if unknown or not names:
            raise ConfigError(
                "READINESS_REQUIRED must list redis, reservation and/or payment "
                f"(comma-separated) or be 'none', got {raw!r}"
            )
        return cls(frozenset(names))
