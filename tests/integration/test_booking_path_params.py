"""Templated paths in the core router (`/api/v1/reservations/{id}`), over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import assert_envelope
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Handler, Idempotency, Route
from ticketgate.http.core import Gateway, compile_template
from ticketgate.middleware.dev_bypass import DevBypassAuthenticator
from ticketgate.middleware.idempotency import build_idempotency
from ticketgate.middleware.settings import IdempotencySettings


async def echo(request: Request) -> Response:
    return Response.json(
        200, {"path": request.path, "route": "echo", "params": dict(request.path_params)}
    )


async def exact(request: Request) -> Response:
    return Response.json(200, {"route": "exact", "params": dict(request.path_params)})


class Counting:
    """An interceptor that counts the requests it saw per route path."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def wrap(self, route: Route, handler: Handler) -> Handler:
        async def counted(request: Request) -> Response:
            self.seen[route.path] = self.seen.get(route.path, 0) + 1
            return await handler(request)

        return counted


@pytest.fixture
def counting() -> Counting:
    return Counting()


@pytest.fixture
async def http(counting: Counting) -> AsyncIterator[httpx.AsyncClient]:
    routes = [
        Route("GET", "/r/export", exact, AuthPolicy.NONE),
        Route("GET", "/r/{id}", echo, AuthPolicy.NONE),
        Route("POST", "/r/{id}/confirm", echo, AuthPolicy.NONE),
        Route("PUT", "/r/{id}/confirm", echo, AuthPolicy.NONE),
        Route("GET", "/e/{event}/seats/{seat}", echo, AuthPolicy.NONE),
        Route(
            "POST",
            "/k/{id}",
            echo,
            AuthPolicy.REQUIRED,
            idempotency=Idempotency.REQUIRED,
        ),
    ]
    app = Gateway(
        routes,
        DevBypassAuthenticator(True),
        max_body_bytes=1024,
        interceptors=(counting, build_idempotency(IdempotencySettings(), None)),
    )
    async with serve(app) as client:
        yield client


async def test_parameters_are_exposed_by_name(http: httpx.AsyncClient) -> None:
    response = await http.get("/r/rsv_42")
    assert response.status_code == 200
    assert response.json()["params"] == {"id": "rsv_42"}
    two = await http.get("/e/evt_1/seats/A-12")
    assert two.json()["params"] == {"event": "evt_1", "seat": "A-12"}


async def test_exact_routes_win_and_carry_no_parameters(http: httpx.AsyncClient) -> None:
    response = await http.get("/r/export")
    assert response.json() == {"route": "exact", "params": {}}


async def test_a_parameter_is_exactly_one_non_empty_segment(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.get("/r/"), 404, "NOT_FOUND")
    assert_envelope(await http.get("/r/a/b"), 404, "NOT_FOUND")
    assert_envelope(await http.get("/r/a/confirm/x"), 404, "NOT_FOUND")
    decoded = await http.get("/r/a%20b")
    assert decoded.json()["params"] == {"id": "a b"}


async def test_other_methods_on_a_template_are_405_with_allow(http: httpx.AsyncClient) -> None:
    response = await http.delete("/r/rsv_1/confirm")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST, PUT"
    assert (await http.post("/r/rsv_1/confirm")).json()["params"] == {"id": "rsv_1"}


async def test_interceptors_wrap_templated_routes(
    http: httpx.AsyncClient, counting: Counting
) -> None:
    await http.get("/r/1")
    await http.get("/r/2")
    await http.get("/r/export")
    assert counting.seen == {"/r/{id}": 2, "/r/export": 1}
    headers = {"Authorization": "Bearer dev-super-key-local-testing"}
    assert_envelope(await http.post("/k/1", headers=headers), 400, "IDEMPOTENCY_REQUIRED")
    first = await http.post("/k/1", headers={**headers, "Idempotency-Key": "a"})
    again = await http.post("/k/1", headers={**headers, "Idempotency-Key": "a"})
    other = await http.post("/k/2", headers={**headers, "Idempotency-Key": "a"})
    assert again.headers["x-idempotency-cached"] == "true"
    assert again.json() == first.json()
    # The key is scoped by the concrete path, not the template.
    assert "x-idempotency-cached" not in other.headers
    assert other.json()["params"] == {"id": "2"}


def test_templates_compile_to_anchored_patterns() -> None:
    pattern = compile_template("/a.b/{id}/x")
    assert pattern.fullmatch("/a.b/1/x") is not None
    assert pattern.fullmatch("/aXb/1/x") is None  # literal parts are escaped
    for bad in ("/a/{id", "/a/id}", "/a/{}/b", "/a/{1x}"):
        with pytest.raises(ValueError, match="malformed"):
            compile_template(bad)
