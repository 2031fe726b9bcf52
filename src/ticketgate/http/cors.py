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

from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.http.settings import CorsSettings

ALLOW_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, X-Request-ID, traceparent"
EXPOSE_HEADERS = (
    b"Retry-After, RateLimit, RateLimit-Policy, X-RateLimit-Limit, X-RateLimit-Remaining, "
    b"X-RateLimit-Reset, X-Request-ID, X-Idempotency-Cached"
)
MAX_AGE = b"600"  # browsers cache a preflight this many seconds (Chromium caps it at 7200)

Headers = tuple[tuple[bytes, bytes], ...]
_VARY: Headers = ((b"vary", b"Origin"),)


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
