"""The front door: the fans' waiting-room page (/wait/{event_id}), the landing page (/), the
operator console (/console) and the embeddable client (/ticketgate.js).

Plain HTML, CSS and JavaScript modules shipped in the package (`ticketgate/web`), no CDN and
no build step. Assets are served under content-hashed names (`/assets/wait.1a2b3c4d.js`) with
a year-long immutable cache, so a fan's reload during an on-sale costs one small HTML answer;
the pages name the hashed URLs and are revalidated (`no-cache` + ETag). A module's import of
another (`./ticketgate.js`) is rewritten to the hashed name when the assets are loaded, which
is why the leaves are hashed first. The embeddable client also has a stable URL for sites
that import it (`/ticketgate.js`, revalidated).

Strings live in one catalogue per language (`web/catalogue/{en,ko}.json`); the page's
language comes from `?lang=`, else `Accept-Language`, and the server renders the catalogue's
text into the page (the first view reads right before any script runs) and hands the same
catalogue to the scripts as a JSON data block, so no inline script is needed and a strict
Content-Security-Policy holds.

`return_url` must start with an origin in `FRONTDOOR_RETURN_ORIGINS` (exact origins; none by
default): the page sends the fan there with the reservation token in the URL fragment, so an
open redirect would hand the token to anyone who crafts a link.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import msgspec

from ticketgate.digits import ascii_decimal
from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.docs import HtmlPage, StaticAsset
from ticketgate.http.schemas import EventIdParam
from ticketgate.http.settings import FrontdoorSettings, origin_of
from ticketgate.http.static import Asset, make_asset, serve_asset
from ticketgate.waitingroom.events import EventAdmin
from ticketgate.waitingroom.model import EventState
from ticketgate.waitingroom.service import EVENT_ID_PATTERN

WEB = Path(__file__).resolve().parent.parent / "web"
LANGUAGES = ("en", "ko")
DEFAULT_LANGUAGE = "en"
# Leaves first: a module's imports are rewritten to names hashed before it.
ASSET_FILES = ("style.css", "ticketgate.js", "format.js", "wait.js", "console.js")
CLIENT = "ticketgate.js"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
# The pages load only their own scripts and styles and talk only to this gateway; the JSON
# data block holding the catalogue is not a script, so 'self' suffices.
CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LANDING_EVENTS = 20
_VALUE = re.compile(r"\{\{([a-z_]+)\}\}")
_PLACEHOLDER = re.compile(r"\{\{(t|asset):([A-Za-z0-9_.-]+)\}\}")
_SECURITY = ((b"referrer-policy", b"no-referrer"),)


def negotiate(explicit: str, accept_language: str) -> str:
    """`?lang=` when it names a catalogue, else the best of Accept-Language, else English."""
    if explicit in LANGUAGES:
        return explicit
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                quality = ascii_decimal(value.strip()) or 0.0
        quality -= position * 1e-6  # equal weights: the earlier one wins
        if primary in LANGUAGES and quality > best_q:
            best, best_q = primary, quality
    return best


def check_return_url(raw: str, allowed: frozenset[str]) -> str:
    """`raw` if it is an absolute http(s) URL on an allowed origin, without a fragment (the
    page appends its own); else a 400 naming the setting."""
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        origin = origin_of(parts.scheme, parts.hostname or "", parts.port)
    except ValueError:
        origin = ""
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.username is not None
        or parts.fragment
        or "#" in raw
        or origin not in allowed
    ):
        raise ApiError(
            "INVALID_REQUEST",
            "return_url must be an absolute URL, without a fragment, on an origin listed in "
            "FRONTDOOR_RETURN_ORIGINS",
        )
    return raw


class Assets:
    """The scripts and the stylesheet, under content-hashed names."""

    def __init__(self, directory: Path = WEB) -> None:
        self.names: dict[str, str] = {}  # logical name -> hashed name
        self.by_hashed: dict[str, Asset] = {}
        self.client: Asset | None = None
        for name in ASSET_FILES:
            text = (directory / name).read_text(encoding="utf-8")
            for earlier, hashed in self.names.items():
                text = text.replace(f'"./{earlier}"', f'"./{hashed}"')
            body = text.encode()
            stem, dot, suffix = name.rpartition(".")
            hashed = f"{stem}.{hashlib.sha256(body).hexdigest()[:10]}{dot}{suffix}"
            self.names[name] = hashed
            self.by_hashed[hashed] = make_asset(body, _TYPES["." + suffix], IMMUTABLE)
            if name == CLIENT:
                self.client = make_asset(body, _TYPES["." + suffix], REVALIDATE)

    def url(self, name: str) -> str:
        return "assets/" + self.names[name]


class Templates:
    """Each page rendered once per language with its strings and asset URLs; what changes
    per request (event, return URL, language links) is filled in by `Frontdoor`."""

    def __init__(self, assets: Assets, directory: Path = WEB) -> None:
        self.catalogues: dict[str, dict[str, str]] = {
            lang: msgspec.json.decode((directory / "catalogue" / f"{lang}.json").read_bytes())
            for lang in LANGUAGES
        }
        english = self.catalogues[DEFAULT_LANGUAGE]
        for lang, catalogue in self.catalogues.items():
            missing = sorted(set(english) - set(catalogue))
            if missing:
                raise RuntimeError(f"catalogue {lang!r} lacks {', '.join(missing)}")
        self.pages: dict[tuple[str, str], str] = {}
        for page in ("index", "wait", "console"):
            source = (directory / f"{page}.html").read_text(encoding="utf-8")
            for lang in LANGUAGES:
                self.pages[(page, lang)] = self._render(source, lang, assets)

    def _render(self, source: str, lang: str, assets: Assets) -> str:
        catalogue = self.catalogues[lang]

        def fill(match: re.Match[str]) -> str:
            kind, key = match.group(1), match.group(2)
            if kind == "asset":
                return "{{root}}" + assets.url(key)
            return html.escape(catalogue[key])

        return _PLACEHOLDER.sub(fill, source)


def _json_block(value: Any) -> str:
    """JSON safe inside a <script type="application/json"> element."""
    text = msgspec.json.encode(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class Frontdoor:
    def __init__(
        self,
        settings: FrontdoorSettings,
        events: EventAdmin,
        *,
        accounts_enabled: bool,
        directory: Path = WEB,
    ) -> None:
        self.settings = settings
        self.events = events
        self.accounts_enabled = accounts_enabled
        self.assets = Assets(directory)
        self.templates = Templates(self.assets, directory)

    def _language(self, request: Request) -> str:
        return negotiate(request.query_param("lang"), request.header(b"accept-language"))

    def _page(
        self,
        request: Request,
        page: str,
        root: str,
        data: dict[str, str],
        query: dict[str, str],
        markup: dict[str, str] | None = None,
    ) -> Response:
        """`data` goes to the scripts (the JSON block) and, escaped, into the page; `markup`
        is HTML the server built itself (escaped where it holds data)."""
        lang = self._language(request)
        config = {
            "lang": lang,
            "accounts": self.accounts_enabled,
            "strings": self.templates.catalogues[lang],
            **data,
        }
        values = {
            "root": root,
            "lang": lang,
            "config": _json_block(config),
            "link_en": html.escape("?" + urlencode({**query, "lang": "en"})),
            "link_ko": html.escape("?" + urlencode({**query, "lang": "ko"})),
            "current_en": "page" if lang == "en" else "false",
            "current_ko": "page" if lang == "ko" else "false",
            **{key: html.escape(value) for key, value in data.items()},
            **(markup or {}),
        }
        # One pass, so a value (a return URL) can never smuggle in another placeholder.
        body = _VALUE.sub(
            lambda m: values.get(m.group(1), m.group(0)), self.templates.pages[(page, lang)]
        )
        return _html(request, body.encode())

    async def wait(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        if EVENT_ID_PATTERN.fullmatch(event_id) is None:
            raise ApiError("INVALID_REQUEST", "malformed event_id")
        raw_return = request.query_param("return_url")
        return_url = check_return_url(raw_return, self.settings.return_origins)
        query = {"return_url": return_url} if return_url else {}
        return self._page(
            request, "wait", "../", {"event_id": event_id, "return_url": return_url}, query
        )

    async def landing(self, request: Request) -> Response:
        views = await self.events.list(LANDING_EVENTS)
        strings = self.templates.catalogues[self._language(request)]
        items = []
        for view in views:
            if view.state not in {EventState.OPEN, EventState.PAUSED}:
                continue  # closed to newcomers or sold out: nothing to join
            state = strings[f"state_{view.state.value}"]
            href = html.escape("wait/" + quote(view.event_id, safe=""))
            items.append(
                f'<li><a href="{href}">{html.escape(view.event_id)}</a> '
                f'<span class="muted">{html.escape(state)}</span></li>'
            )
        listing = (
            f'<ul class="events">{"".join(items)}</ul>'
            if items
            else f'<p class="muted">{html.escape(strings["landing_none"])}</p>'
        )
        return self._page(request, "index", "", {}, {}, {"events": listing})

    async def console(self, request: Request) -> Response:
        return self._page(request, "console", "", {}, {})

    async def asset(self, request: Request) -> Response:
        asset = self.assets.by_hashed.get(request.path_params["asset"])
        if asset is None:
            raise ApiError("NOT_FOUND", f"no route for {request.path}")
        return serve_asset(request, asset, _SECURITY)

    async def client(self, request: Request) -> Response:
        assert self.assets.client is not None
        return serve_asset(request, self.assets.client, _SECURITY)

    def routes(self) -> list[Route]:
        conditional = (304, None, "Not modified (If-None-Match matched the ETag)")
        page = "The page (HTML; language from ?lang=en|ko, else Accept-Language)"

        def html_route(path: str, handler: Any, summary: str, *more: Any) -> Route:
            return Route(
                "GET",
                path,
                handler,
                AuthPolicy.NONE,
                summary,
                None,
                ((200, HtmlPage, page), conditional, *more),
                query=(("lang?", "en or ko"),),
                rate_limited=False,
                params=(("event_id", EventIdParam),),  # used where the path has one
            )

        return [
            html_route(
                "/",
                self.landing,
                "Landing page: the open events and the docs",
                (503, None, "QUEUE_UNAVAILABLE: the events cannot be listed"),
            ),
            html_route(
                "/wait/{event_id}",
                self.wait,
                "The fans' waiting-room page (?return_url= on FRONTDOOR_RETURN_ORIGINS)",
                (400, None, "INVALID_REQUEST: malformed event_id or return_url not allowed"),
            ),
            html_route("/console", self.console, "Operator console (sign in with role admin)"),
            Route(
                "GET",
                "/assets/{asset}",
                self.asset,
                AuthPolicy.NONE,
                "A page asset under its content-hashed name (cached a year, immutable)",
                None,
                ((200, StaticAsset, "The asset"), conditional, (404, None, "NOT_FOUND")),
                rate_limited=False,
            ),
            Route(
                "GET",
                "/ticketgate.js",
                self.client,
                AuthPolicy.NONE,
                "The embeddable ES module client (stable URL, revalidated with its ETag)",
                None,
                ((200, StaticAsset, "The module"), conditional),
                rate_limited=False,
            ),
        ]


def _html(request: Request, body: bytes) -> Response:
    page = make_asset(body, "text/html; charset=utf-8", REVALIDATE)
    return serve_asset(request, page, (*_SECURITY, (b"content-security-policy", CSP)))
