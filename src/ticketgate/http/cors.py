"""Cross-origin access for the ticket site's own pages (CORS).

A page on the ticket site (`https://tickets.example`) that calls the gateway from the browser
gets "Failed to fetch" without these headers, and worse: the join has already happened on the
gateway, so the fan holds a place the page never learns about. Only the exact origins in
`CORS_ALLOWED_ORIGINS` are answered; none by default. The API authenticates with bearer
tokens, never cookies, so `Access-Control-Allow-Credentials` is never sent, and `*` is refused
as a setting: the allowed origin is echoed back with `Vary: Origin`.

The edge routes an `OPTIONS` carrying `Access-Control-Request-Method` to `preflight` on any
path (never rate limited or authenticated: browsers send no credentials with a preflight), and
adds `headers` to every other answer, errors included, so a page can read why it failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.envparse import ConfigError

ALLOW_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, X-Request-ID, traceparent"
EXPOSE_HEADERS = (
    b"Retry-After, RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, "
    b"X-RateLimit-Reset, X-Request-ID, X-Idempotency-Cached"
)
MAX_AGE = b"600"  # browsers cache a preflight this many seconds (Chromium caps it at 7200)

Headers = tuple[tuple[bytes, bytes], ...]
_VARY: Headers = ((b"vary", b"Origin"),)


def parse_origins(name: str, raw: str) -> frozenset[str]:
    """Comma-separated exact origins (`scheme://host[:port]`, no path); one bad entry stops
    the process naming it, so a typo never silently opens or closes the door."""
    origins: set[str] = set()
    for part in raw.split(","):
        text = part.strip()
        if not text:
            continue
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
        return cls(parse_origins("CORS_ALLOWED_ORIGINS", env.get("CORS_ALLOWED_ORIGINS", "")))


class Cors:
    """Answers preflights and decorates answers for the allowed origins (exact match)."""

    def __init__(self, settings: CorsSettings) -> None:
        self._allowed = {origin.encode() for origin in settings.allowed_origins}

    async def preflight(self, request: Request) -> Response:
        """204 with the permissions for an allowed origin; 403 (no CORS headers, so the
        browser refuses the call) for any other."""
        origin = request.headers.get(b"origin", b"")
        if origin not in self._allowed:
            raise ApiError("FORBIDDEN", "this origin is not in CORS_ALLOWED_ORIGINS", headers=_VARY)
        headers = (
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
            *_VARY,
        )
        return Response(204, b"", headers, b"text/plain; charset=utf-8")

    def headers(self, origin: bytes | None) -> Headers:
        """What an actual (non-preflight) answer carries: the origin echoed and the headers a
        page may read, or only `Vary` (a shared cache must not hand one origin's answer to
        another)."""
        if origin is None or origin not in self._allowed:
            return _VARY
        return (
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
            *_VARY,
        )
