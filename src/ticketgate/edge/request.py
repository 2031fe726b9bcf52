"""What a route handler sees and returns: the parsed request and the response to send.

`Request` is built by the gateway once per request and read by guards, interceptors,
handlers and observers alike; it parses lazily (query string, JSON body) so a route pays only
for what it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec

from ticketgate.edge.auth import Principal
from ticketgate.edge.errors import ApiError

T = TypeVar("T")

_JSON = b"application/json"
_encode = msgspec.json.Encoder().encode
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})
_MAX_QUERY_FIELDS = 20  # more is refused (400), as parse_qsl's max_num_fields did


class Request:
    __slots__ = (
        "body",
        "client",
        "headers",
        "idempotency_scope",
        "method",
        "path",
        "path_params",
        "principal",
        "query",
        "trace_id",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: dict[bytes, bytes],
        trace_id: str,
        client: str = "",
    ) -> None:
        self.client = client  # peer IP as the server saw it (before any X-Forwarded-For)
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.trace_id = trace_id
        self.body = b""
        self.principal: Principal | None = None
        # Values of `{name}` segments of a templated route; empty for exact routes.
        self.path_params: Mapping[str, str] = _NO_PARAMS
        # The Idempotency-Key scoped to its caller (a digest), set by the idempotency
        # interceptor for a handler that passes it on to a store or backend; "" without one.
        self.idempotency_scope = ""

    def header(self, name: bytes) -> str:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else ""

    def query_param(self, name: str) -> str:
        """The parameter's first value; "" when absent or empty."""
        return self.query_value(name) or ""

    def query_value(self, name: str) -> str | None:
        """The parameter's first value, or None when absent (`?limit=` is "", not None)."""
        if not self.query:
            return None
        text = self.query.decode("latin-1")
        if "&" not in text and "%" not in text and "+" not in text:
            # One field, nothing to unquote (a status poll's `token=wt1.…`): ~0.4 µs less
            # than the split below, on the call every waiting fan repeats.
            key, _, value = text.partition("=")
            return value if key == name else None
        if text.count("&") >= _MAX_QUERY_FIELDS:  # a client mistake, not a 500
            raise ApiError("INVALID_REQUEST", "too many query parameters")
        if "%" in text or "+" in text:
            pairs = parse_qsl(text, keep_blank_values=True)
        else:
            # Nothing to unquote (a status poll's `token=wt1.…`): parse_qsl's split without
            # its per-field unquoting, ~1 µs less on every status request.
            pairs = [field.partition("=")[::2] for field in text.split("&") if field]
        for key, value in pairs:
            if key == name:
                return value
        return None

    def json(self, schema: type[T]) -> T:
        """Decode and validate the body; any mismatch is a 400 that names the field."""
        if not self.body:
            raise ApiError("INVALID_REQUEST", "request body must be a JSON object")
        try:
            return msgspec.json.decode(self.body, type=schema)
        except msgspec.ValidationError as exc:
            if "got `float`" in str(exc):
                return self._json_with_integral_floats(schema)
            raise ApiError("INVALID_REQUEST", f"invalid request body: {exc}") from None
        except (msgspec.DecodeError, UnicodeDecodeError):
            # msgspec reports invalid UTF-8 inside a string as UnicodeDecodeError.
            raise ApiError("INVALID_REQUEST", "request body is not valid JSON") from None

    def _json_with_integral_floats(self, schema: type[T]) -> T:
        """JSON has one number type: `2.0` is the integer 2 to JSON Schema (and to the
        OpenAPI document's `integer`), while msgspec's strict decoding refuses it. Only on
        that refusal, the body is decoded again with integral floats made ints (strings are
        still refused: no lax coercion)."""
        try:
            value = _integral_floats(msgspec.json.decode(self.body))
            return msgspec.convert(value, type=schema)
        except msgspec.ValidationError as exc:
            raise ApiError("INVALID_REQUEST", f"invalid request body: {exc}") from None

    @property
    def user_id(self) -> str:
        return self.principal.user_id if self.principal is not None else ""


def _integral_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats(item) for item in value]
    return value


class Response(msgspec.Struct, frozen=True, gc=False):
    """One per request: a frozen msgspec Struct is built in ~0.2 µs, a frozen dataclass in
    ~1.3 µs (its __init__ goes through object.__setattr__ per field). No cycles (bytes and
    a tuple of bytes), so the garbage collector need not track it."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes = _JSON

    @classmethod
    def json(
        cls, status: int, payload: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> Response:
        return cls(status, _encode(payload), headers)
