"""OpenAPI 3.1 from the route table and the msgspec schemas the handlers validate with."""

from __future__ import annotations

from typing import Any

import msgspec

from ticketgate import __version__
from ticketgate.http.core import AuthPolicy, Route
from ticketgate.http.errors import ErrorEnvelope

_REF = "#/components/schemas/{name}"


def build_openapi(routes: list[Route]) -> bytes:
    types: list[Any] = [ErrorEnvelope]
    for route in routes:
        if route.request_schema is not None:
            types.append(route.request_schema)
        types += [schema for _, schema, _ in route.responses if schema is not None]
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(unique, ref_template=_REF)
    ref_of = dict(zip(unique, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": f"{route.method.lower()}_{route.path.strip('/').replace('/', '_')}",
            "responses": {},
        }
        if route.query:
            operation["parameters"] = [
                {
                    "name": n,
                    "in": "query",
                    "required": True,
                    "description": d,
                    "schema": {"type": "string"},
                }
                for n, d in route.query
            ]
        if route.request_schema is not None:
            operation["requestBody"] = {
                "required": route.method != "POST" or "leave" not in route.path,
                "content": {"application/json": {"schema": ref_of[route.request_schema]}},
            }
        if route.auth is AuthPolicy.REQUIRED:
            operation["security"] = [{"bearerAuth": []}]
        elif route.auth is AuthPolicy.OPTIONAL:
            operation["security"] = [{}, {"bearerAuth": []}]
        for status, schema, description in route.responses:
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
