"""OpenAPI 3.1 from the route table and the msgspec schemas the handlers validate with."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import msgspec

from ticketgate import __version__
from ticketgate.edge.errors import ErrorEnvelope
from ticketgate.edge.routes import AuthPolicy, Idempotency, Route
from ticketgate.http.core import BODY_METHODS
from ticketgate.middleware.idempotency import IDEMPOTENCY_KEY

_REF = "#/components/schemas/{name}"
# The Idempotency-Key header as the interceptor validates it (printable ASCII, 1-255).
IDEMPOTENCY_KEY_PATTERN = f"^{IDEMPOTENCY_KEY.pattern}$"


class RawBody:
    """Marks a response whose body is not JSON (Swagger UI's page and assets): subclass it,
    name the media types, and use the subclass as the response's schema in a Route."""

    media_types: ClassVar[tuple[str, ...]] = ("application/octet-stream",)


def _raw(schema: type | None) -> bool:
    return schema is not None and issubclass(schema, RawBody)


def _with_edge_responses(route: Route) -> list[tuple[int, type | None, str]]:
    """The route's own responses plus what the guard and interceptors in front of it may
    answer."""
    responses = {status: (schema, text) for status, schema, text in route.responses}

    def add(status: int, text: str) -> None:
        schema, old = responses.get(status, (None, ""))
        responses[status] = (schema, f"{old}, {text}" if old else text)

    if route.idempotency is not Idempotency.NONE:
        required = route.idempotency is Idempotency.REQUIRED
        add(
            400,
            "IDEMPOTENCY_REQUIRED, INVALID_IDEMPOTENCY_KEY"
            if required
            else "INVALID_IDEMPOTENCY_KEY",
        )
        add(409, "IDEMPOTENCY_CONFLICT, IDEMPOTENCY_IN_PROGRESS")
    if route.method in BODY_METHODS:
        add(408, "REQUEST_TIMEOUT: the body did not arrive within SERVER_BODY_TIMEOUT_SEC")
    if route.request_schema is not None and not route.any_media_type:
        add(415, "UNSUPPORTED_MEDIA_TYPE: a body not sent as application/json")
    if route.rate_limited:
        add(429, "RATE_LIMITED (Retry-After, RateLimit headers)")
    return [(status, *responses[status]) for status in sorted(responses)]


_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _operation_id(route: Route) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", route.path).strip("_")
    return f"{route.method.lower()}_{words}"


def _raw_response(status: int, schema: type | None, description: str) -> dict[str, Any]:
    """A non-JSON body (its media types, a string) or a redirect or 304 with no body."""
    response: dict[str, Any] = {"description": description}
    if schema is not None and issubclass(schema, RawBody):
        response["content"] = {
            media: {"schema": {"type": "string"}} for media in schema.media_types
        }
    if status in (301, 302, 303, 307, 308):
        response["headers"] = {
            "Location": {"description": "Where to go instead", "schema": {"type": "string"}}
        }
    return response


def _param_schema(route: Route, name: str) -> dict[str, Any]:
    types = dict(route.params)
    if name in types:
        return msgspec.json.schema(types[name])
    return {"type": "string"}


def _require_nonempty(components: dict[str, Any], types: list[Any]) -> None:
    """Fields a handler refuses when empty with its own error code (MISSING_EVENT_ID,
    MISSING_TOKEN) default to "" so that code can be given; the Struct names them in
    `__openapi_required__`, and the document says they are required and non-empty."""
    for schema_type in types:
        names = getattr(schema_type, "__openapi_required__", ())
        component = components.get(getattr(schema_type, "__name__", ""))
        if not names or component is None:
            continue
        component["required"] = sorted({*component.get("required", ()), *names})
        for name in names:
            prop = component["properties"][name]
            prop.pop("default", None)  # required: the "" placeholder is not a value to send
            if prop.get("type") == "string":
                prop.setdefault("minLength", 1)


def build_openapi(routes: list[Route]) -> bytes:
    types: list[Any] = [ErrorEnvelope]
    for route in routes:
        if route.request_schema is not None:
            types.append(route.request_schema)
        types += [s for _, s, _ in route.responses if s is not None and not _raw(s)]
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(unique, ref_template=_REF)
    _require_nonempty(components, unique)
    ref_of = dict(zip(unique, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in routes:
        # Unique, as OpenAPI requires: `/swagger` and `/swagger/` would both be `get_swagger`.
        operation_id = base_id = _operation_id(route)
        suffix = 2
        while operation_id in operation_ids:
            operation_id, suffix = f"{base_id}_{suffix}", suffix + 1
        operation_ids.add(operation_id)
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": operation_id,
            "responses": {},
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _param_schema(route, name)}
            for name in _PATH_PARAM.findall(route.path)
        ]
        parameters += [
            {
                "name": n.removesuffix("?"),
                "in": "query",
                "required": not n.endswith("?"),  # `limit?`: optional
                "description": d,
                "schema": _param_schema(route, n.removesuffix("?")),
            }
            for n, d in route.query
        ]
        if route.idempotency is not Idempotency.NONE:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": route.idempotency is Idempotency.REQUIRED,
                    "description": "Replays the first answer of a retried request "
                    "(X-Idempotency-Cached: true); scoped to the caller",
                    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                }
            )
        if parameters:
            operation["parameters"] = parameters
        if route.request_schema is not None:
            operation["requestBody"] = {
                "required": route.body_required,
                "content": {"application/json": {"schema": ref_of[route.request_schema]}},
            }
        if route.auth in (AuthPolicy.REQUIRED, AuthPolicy.ADMIN):
            operation["security"] = [{"bearerAuth": []}]
        elif route.auth is AuthPolicy.OPTIONAL:
            operation["security"] = [{}, {"bearerAuth": []}]
        for status, schema, description in _with_edge_responses(route):
            if _raw(schema) or 300 <= status < 400:
                operation["responses"][str(status)] = _raw_response(status, schema, description)
                continue
            body_schema = (
                ref_of[schema]
                if schema is not None
                else (ref_of[ErrorEnvelope] if status >= 400 else {})
            )
            operation["responses"][str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": body_schema}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    document = {
        "openapi": "3.1.0",
        "info": {"title": "ticketgate", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
    return msgspec.json.encode(document)
