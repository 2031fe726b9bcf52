"""Swagger UI served offline from the pinned package, and the OpenAPI document it loads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import httpx
import pytest
from openapi_spec_validator import validate

from tests.http_server import serve
from tests.integration.conftest import assert_envelope, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.edge.routes import AuthPolicy
from ticketgate.http.docs import PACKAGE_ASSETS, package_directory

INDEX = "/swagger/index.html"


@pytest.fixture
async def docs() -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(load_settings(dev_env()))) as client:
        yield client


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_the_page_and_everything_it_loads_come_from_the_gateway(
    docs: httpx.AsyncClient,
) -> None:
    page = await docs.get(INDEX)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    # Offline: nothing absolute, so no CDN and no other host is ever asked for anything.
    assert "http://" not in page.text
    assert "https://" not in page.text
    references = _references(page.text)
    assert {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js"} <= set(references)
    expected = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
    for reference in references:
        url = urljoin(f"{docs.base_url}{INDEX}", reference)
        response = await docs.get(url)
        assert response.status_code == 200, url
        suffix = reference[reference.rfind(".") :]
        assert response.headers["content-type"].startswith(expected[suffix]), url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["etag"]
        if reference in PACKAGE_ASSETS:
            assert response.headers["cache-control"] == "public, max-age=86400"
            assert response.content == (package_directory() / reference).read_bytes()
    bundle = await docs.get("/swagger/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    assert len(bundle.content) > 500_000  # the real bundle, not a stub


async def test_the_initializer_loads_this_gateways_document(docs: httpx.AsyncClient) -> None:
    script = (await docs.get("/swagger/swagger-initializer.js")).text
    (spec_url,) = re.findall(r'new URL\("([^"]+)"', script)
    resolved = urljoin(f"{docs.base_url}{INDEX}", spec_url)
    assert resolved == f"{docs.base_url}/openapi.json"
    assert (await docs.get(resolved)).json()["openapi"] == "3.1.0"
    assert "persistAuthorization: true" in script


@pytest.mark.parametrize("path", ["/swagger", "/swagger/"])
async def test_swagger_redirects_to_the_page(docs: httpx.AsyncClient, path: str) -> None:
    response = await docs.get(path)
    assert response.status_code == 307
    assert urljoin(f"{docs.base_url}{path}", response.headers["location"]) == (
        f"{docs.base_url}{INDEX}"
    )
    followed = await docs.get(path, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.url.path == INDEX


async def test_a_matching_etag_is_304_without_a_body(docs: httpx.AsyncClient) -> None:
    for path in (INDEX, "/swagger/swagger-ui.css"):
        first = await docs.get(path)
        etag = first.headers["etag"]
        again = await docs.get(path, headers={"If-None-Match": f'"other", {etag}'})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        changed = await docs.get(path, headers={"If-None-Match": '"other"'})
        assert changed.status_code == 200
        assert changed.content == first.content


@pytest.mark.parametrize(
    "path",
    [
        "/swagger/LICENSE",  # in the package folder, not on the list
        "/swagger/swagger-editor-bundle.js",
        "/swagger/oauth2-redirect.html",
        "/swagger/..%2F__init__.py",
        "/swagger/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/swagger/..%5C__init__.py",
        "/swagger/swagger-ui.css%00.png",
        "/swagger/static/swagger-ui.css",
        "/swagger/../openapi.json/../swagger-ui.css",  # dot segments resolve to /swagger-ui.css
    ],
)
async def test_only_listed_assets_are_ever_served(docs: httpx.AsyncClient, path: str) -> None:
    response = await docs.get(path)
    assert_envelope(response, 404, "NOT_FOUND")


async def test_docs_need_no_credentials_and_are_never_rate_limited() -> None:
    settings = load_settings(
        dev_env(RATE_LIMIT_ENABLED="true", RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="1")
    )
    app = create_app(settings)
    swagger = [route for route in app.routes if route.path.startswith("/swagger")]
    assert len(swagger) == 4
    assert all(r.auth is AuthPolicy.NONE and not r.rate_limited for r in swagger)
    async with serve(app) as client:
        for _ in range(5):
            response = await client.get(INDEX, headers={"Authorization": "Bearer nonsense"})
            assert response.status_code == 200


async def test_the_document_is_valid_openapi_3_1_with_bearer_security(
    docs: httpx.AsyncClient,
) -> None:
    spec = (await docs.get("/openapi.json")).json()
    validate(spec)  # raises with the offending path when invalid
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    app = create_app(load_settings(dev_env()))
    expected: dict[AuthPolicy, list[dict[str, list[str]]] | None] = {
        AuthPolicy.NONE: None,
        AuthPolicy.OPTIONAL: [{}, {"bearerAuth": []}],
        AuthPolicy.REQUIRED: [{"bearerAuth": []}],
        AuthPolicy.ADMIN: [{"bearerAuth": []}],
    }
    seen = set()
    for route in app.routes:
        operation = spec["paths"][route.path][route.method.lower()]
        assert operation.get("security") == expected[route.auth], (route.method, route.path)
        seen.add(route.auth)
    assert {AuthPolicy.NONE, AuthPolicy.OPTIONAL, AuthPolicy.REQUIRED} <= seen
    page = spec["paths"][INDEX]["get"]["responses"]["200"]
    assert set(page["content"]) == {"text/html"}
    assert spec["paths"]["/swagger"]["get"]["responses"]["307"]["headers"]["Location"]
