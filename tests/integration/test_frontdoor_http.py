"""CORS and the front door's pages over real HTTP (the browser behaviour is in tests/browser)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.http_server import serve
from tests.integration.conftest import DEV, JOIN, assert_envelope, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.envparse import ConfigError
from ticketgate.http.frontdoor import negotiate

SITE = "https://tickets.example"
FIRST_VIEW_BUDGET = 60 * 1024


@contextlib.asynccontextmanager
async def gateway(**overrides: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(load_settings(dev_env(**overrides)))) as client:
        yield client


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }


async def test_preflight_allows_the_listed_origin_only() -> None:
    async with gateway(CORS_ALLOWED_ORIGINS=f"{SITE}, https://other.example:8443") as client:
        allowed = await client.options(JOIN, headers=preflight(SITE))
        assert allowed.status_code == 204
        assert allowed.content == b""
        assert allowed.headers["access-control-allow-origin"] == SITE
        methods = allowed.headers["access-control-allow-methods"]
        assert {"GET", "POST", "DELETE"} <= {m.strip() for m in methods.split(",")}
        headers = allowed.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "idempotency-key"} <= {
            h.strip() for h in headers.split(",")
        }
        assert "access-control-allow-credentials" not in allowed.headers
        assert allowed.headers["vary"] == "Origin"
        # Any path: a templated admin route too, and with a port.
        other = await client.options(
            "/api/v1/admin/events/evt_1", headers=preflight("https://other.example:8443", "PATCH")
        )
        assert other.status_code == 204
        for origin in ("https://evil.example", "https://tickets.example.evil", "null", SITE + "/"):
            refused = await client.options(JOIN, headers=preflight(origin))
            assert_envelope(refused, 403, "FORBIDDEN")
            assert "access-control-allow-origin" not in refused.headers


async def test_answers_to_an_allowed_origin_expose_the_headers_a_page_needs() -> None:
    async with gateway(CORS_ALLOWED_ORIGINS=SITE) as client:
        joined = await client.post(JOIN, json={"event_id": "evt_cors"}, headers={"Origin": SITE})
        assert joined.status_code == 202
        assert joined.headers["access-control-allow-origin"] == SITE
        exposed = {
            h.strip().lower() for h in joined.headers["access-control-expose-headers"].split(",")
        }
        assert {"retry-after", "ratelimit", "x-request-id"} <= exposed
        # Errors too, so the page can read why.
        bad = await client.post(JOIN, json={}, headers={"Origin": SITE})
        assert_envelope(bad, 400, "MISSING_EVENT_ID")
        assert bad.headers["access-control-allow-origin"] == SITE
        stranger = await client.post(
            JOIN, json={"event_id": "evt_cors"}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in stranger.headers
        assert stranger.headers["vary"] == "Origin"


async def test_no_cors_by_default() -> None:
    async with gateway() as client:
        answer = await client.options(JOIN, headers=preflight(SITE))
        assert answer.status_code in {404, 405}
        assert "access-control-allow-origin" not in answer.headers
        joined = await client.post(JOIN, json={"event_id": "evt_x"}, headers={"Origin": SITE})
        assert "access-control-allow-origin" not in joined.headers


@pytest.mark.parametrize(
    "value",
    ["*", "tickets.example", "https://tickets.example/path", "ftp://x.example", "https://"],
)
def test_cors_and_return_origins_take_exact_origins_only(value: str) -> None:
    for name in ("CORS_ALLOWED_ORIGINS", "FRONTDOOR_RETURN_ORIGINS"):
        with pytest.raises(ConfigError, match=name):
            load_settings(dev_env(**{name: value}))


async def test_first_view_is_small_cached_and_self_contained() -> None:
    async with gateway() as client:
        page = await client.get("/wait/evt_1")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-cache"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "<script>" not in page.text  # no inline script: only modules and a data block
        total = len(page.content)
        pending = re.findall(r'(?:href|src)="\.\./(assets/[^"]+)"', page.text)
        assert pending, page.text
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            asset = await client.get(f"/{name}")
            assert asset.status_code == 200, name
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert re.fullmatch(r"assets/[a-z]+\.[0-9a-f]{10}\.(js|css)", name)
            total += len(asset.content)
            body = asset.text
            # Nothing fetched from elsewhere: no remote import, stylesheet or font.
            assert not re.search(r'^\s*(import|export)[^\n]*"https?:', body, re.M), name
            assert "url(http" not in body, name
            assert "@import" not in body, name
            pending += [f"assets/{m}" for m in re.findall(r'from "\./([^"]+)"', body)]
        assert {n.split(".")[0] for n in seen} == {
            "assets/style",
            "assets/wait",
            "assets/ticketgate",
            "assets/format",
        }
        assert total <= FIRST_VIEW_BUDGET, total
        again = await client.get("/wait/evt_1", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304


async def test_the_client_has_a_stable_url_and_the_page_names_its_hashed_twin() -> None:
    async with gateway(CORS_ALLOWED_ORIGINS=SITE) as client:
        stable = await client.get("/ticketgate.js", headers={"Origin": SITE})
        assert stable.status_code == 200
        assert stable.headers["content-type"] == "text/javascript; charset=utf-8"
        assert stable.headers["cache-control"] == "no-cache"
        assert stable.headers["access-control-allow-origin"] == SITE  # importable cross-origin
        assert "export class WaitingRoom" in stable.text
        for method in ("join(", "watch(", "enter(", "leave("):
            assert method in stable.text
        wait_js = await client.get(
            "/"
            + re.findall(r'src="\.\./(assets/wait[^"]+)"', (await client.get("/wait/e")).text)[0]
        )
        imported = re.findall(r'from "\./(ticketgate\.[0-9a-f]+\.js)"', wait_js.text)
        assert imported
        hashed = await client.get(f"/assets/{imported[0]}")
        assert hashed.content == stable.content


async def test_return_url_must_be_on_an_allowed_origin() -> None:
    async with gateway(FRONTDOOR_RETURN_ORIGINS=SITE) as client:
        good = await client.get("/wait/evt_1", params={"return_url": f"{SITE}/seats?x=1"})
        assert good.status_code == 200
        assert f'"return_url":"{SITE}/seats?x=1"' in good.text
        for bad in (
            "https://evil.example/seats",
            "https://tickets.example.evil.example/",
            "https://tickets.example@evil.example/",
            "//evil.example/",
            "/relative",
            "javascript:alert(1)",
            f"{SITE}/seats#frag",
            "http://tickets.example/",  # another scheme is another origin
        ):
            answer = await client.get("/wait/evt_1", params={"return_url": bad})
            assert_envelope(answer, 400, "INVALID_REQUEST")
        malformed = await client.get("/wait/bad%20id")
        assert_envelope(malformed, 400, "INVALID_REQUEST")


async def test_the_config_block_cannot_break_out_of_its_script_element() -> None:
    async with gateway(FRONTDOOR_RETURN_ORIGINS=SITE) as client:
        sneaky = f"{SITE}/x?q=</script><script>alert(1)</script>{{{{config}}}}"
        page = await client.get("/wait/evt_1", params={"return_url": sneaky})
        assert page.status_code == 200
        assert page.text.count("</script>") == 2  # the module's and the data block's
        assert page.text.count('"strings":') == 1  # the URL's {{config}} stayed text


async def test_landing_lists_open_events_and_links_the_docs() -> None:
    async with gateway() as client:
        for event, patch in (
            ("evt_open", None),
            ("evt_held", {"paused": True}),
            ("evt_shut", {"closed": True}),
            ("evt_gone", {"sold_out": True}),
        ):
            await client.post(JOIN, json={"event_id": event})
            if patch:
                changed = await client.patch(
                    f"/api/v1/admin/events/{event}", json=patch, headers=DEV
                )
                assert changed.status_code == 200, changed.text
        page = await client.get("/")
        assert page.status_code == 200
        assert (
            'href="wait/evt_open">evt_open</a> <span class="muted">Admissions are open.'
            in page.text
        )
        assert 'href="wait/evt_held">evt_held</a> <span class="muted">Admissions are paused' in (
            page.text
        )
        assert "evt_shut" not in page.text
        assert "evt_gone" not in page.text
        assert 'href="swagger/index.html"' in page.text
        console = await client.get("/console", headers={"Accept-Language": "ko"})
        assert "운영 콘솔" in console.text


def test_accept_language_negotiation() -> None:
    assert negotiate("", "ko-KR,ko;q=0.9,en-US;q=0.8") == "ko"
    assert negotiate("", "en-US,en;q=0.9,ko;q=0.8") == "en"
    assert negotiate("", "fr, ko;q=0.5, en;q=0.4") == "ko"
    assert negotiate("", "fr") == "en"
    assert negotiate("", "ko;q=0, en;q=0.1") == "en"
    assert negotiate("", "") == "en"
    assert negotiate("ko", "en") == "ko"
    assert negotiate("xx", "ko") == "ko"
