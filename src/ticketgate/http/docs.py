"""Swagger UI at /swagger/index.html, served from the pinned `swagger-ui-py` package.

Offline by construction: the page, its script and its stylesheet come from this process,
never from a CDN, so the docs work on an air-gapped operator network. Only the files named in
`ASSETS` are ever read, so no request path can reach another file. Every URL the page uses is
relative (`swagger-ui.css`, `../openapi.json`), so it also works behind a proxy that mounts
the gateway under a path prefix.

Assets are read on first use (the bundle is 1.5 MB; workers that never serve docs never load
it) and answered with an ETag; the package is pinned, so an asset changes only with an upgrade,
which is why a day of caching is safe and a conditional request costs a 304 and no body.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.openapi import RawBody
from ticketgate.http.static import Asset, make_asset, serve_asset

PACKAGE = "swagger_ui"  # the import name of swagger-ui-py
INDEX = "/swagger/index.html"
ASSET_CACHE = b"public, max-age=86400"
PAGE_CACHE = b"no-cache"  # revalidate: the page names the assets and the document
_UTF8 = "; charset=utf-8"

# Our page: no inline script, so a strict Content-Security-Policy in front of it still works.
INDEX_HTML = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>ticketgate API</title>
    <link rel="stylesheet" href="swagger-ui.css">
    <link rel="icon" type="image/png" href="favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="swagger-ui-bundle.js"></script>
    <script src="swagger-initializer.js"></script>
  </body>
</html>
"""

# `persistAuthorization` keeps the bearer token entered under "Authorize" across reloads.
INITIALIZER_JS = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: true,
    presets: [SwaggerUIBundle.presets.apis],
  });
};
"""

# name -> content type: the only files this module ever opens, from the package.
PACKAGE_ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript" + _UTF8,
    "swagger-ui.css": "text/css" + _UTF8,
    "favicon-32x32.png": "image/png",
}


class HtmlPage(RawBody):
    media_types = ("text/html",)


class StaticAsset(RawBody):
    media_types = ("text/javascript", "text/css", "image/png")


def package_directory() -> Path:
    """The package's static folder, found without importing the package (it would import
    its web-framework adapters, which the gateway has no use for)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {PACKAGE!r} package (swagger-ui-py) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


class SwaggerRoutes:
    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory or package_directory()
        self._assets: dict[str, Asset] = {
            "index.html": make_asset(INDEX_HTML, "text/html" + _UTF8, PAGE_CACHE),
            "swagger-initializer.js": make_asset(
                INITIALIZER_JS, "text/javascript" + _UTF8, PAGE_CACHE
            ),
        }
        self._lock = asyncio.Lock()

    async def _load(self, name: str) -> Asset | None:
        asset = self._assets.get(name)
        if asset is not None or name not in PACKAGE_ASSETS:
            return asset
        async with self._lock:
            asset = self._assets.get(name)
            if asset is None:
                body = await asyncio.to_thread((self._directory / name).read_bytes)
                asset = make_asset(body, PACKAGE_ASSETS[name], ASSET_CACHE)
                self._assets[name] = asset
        return asset

    async def _serve(self, request: Request, name: str) -> Response:
        asset = await self._load(name)
        if asset is None:
            raise ApiError("NOT_FOUND", f"no route for {request.path}")
        return serve_asset(request, asset)

    async def index(self, request: Request) -> Response:
        return await self._serve(request, "index.html")

    async def asset(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["asset"])

    async def redirect(self, request: Request) -> Response:
        # Relative, so it holds under a path prefix: /swagger -> swagger/index.html and
        # /swagger/ -> index.html both land on /swagger/index.html.
        target = b"index.html" if request.path.endswith("/") else b"swagger/index.html"
        return Response(307, b"", ((b"location", target),), b"text/plain; charset=utf-8")

    def routes(self) -> list[Route]:
        redirect = ((307, None, "To /swagger/index.html"),)
        conditional = (304, None, "Not modified (If-None-Match matched the ETag)")
        names = ", ".join(["swagger-initializer.js", *PACKAGE_ASSETS])
        return [
            Route(
                "GET",
                INDEX,
                self.index,
                AuthPolicy.NONE,
                "Swagger UI (offline; 'Authorize' takes a bearer token)",
                None,
                ((200, HtmlPage, "The Swagger UI page"), conditional),
                rate_limited=False,
            ),
            Route(
                "GET",
                "/swagger/{asset}",
                self.asset,
                AuthPolicy.NONE,
                f"A Swagger UI asset: {names}",
                None,
                (
                    (200, StaticAsset, "The asset (ETag, cached for a day)"),
                    conditional,
                    (404, None, "NOT_FOUND: not one of the served assets"),
                ),
                rate_limited=False,
            ),
            *(
                Route(
                    "GET",
                    path,
                    self.redirect,
                    AuthPolicy.NONE,
                    "Redirect to Swagger UI",
                    None,
                    redirect,
                    rate_limited=False,
                )
                for path in ("/swagger", "/swagger/")
            ),
        ]
