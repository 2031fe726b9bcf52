"""The request target split: the fast path answers what httptools.parse_url answers."""

from __future__ import annotations

import httptools
import pytest

from ticketgate.http.server import request_target


class _Url:
    def __init__(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url


def _as_llhttp_reads(target: bytes) -> bytes | None:
    """The target as the request parser hands it over, or None when it refuses it."""
    seen = _Url()
    try:
        httptools.HttpRequestParser(seen).feed_data(
            b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        )
    except httptools.HttpParserError:
        return None
    return seen.url


def _parse_url(url: bytes) -> tuple[bytes, bytes]:
    parsed = httptools.parse_url(url)
    return parsed.path, parsed.query or b""


@pytest.mark.parametrize("byte", range(256))
def test_any_byte_the_parser_lets_through_splits_as_parse_url_splits_it(byte: int) -> None:
    char = bytes([byte])
    url = _as_llhttp_reads(b"/a" + char + b"b?x" + char + b"y=" + char)
    if url is None:
        assert byte < 0x21 or byte >= 0x7F, "llhttp refuses only control, space and non-ASCII"
        return
    assert request_target(url) == _parse_url(url)


@pytest.mark.parametrize(
    "target",
    [
        b"/",
        b"/api/v1/queue/status?token=wt1.lKJlMQHPAAABokat04Og.w0wl5Brkjw55l-OBUARXWw",
        b"/a?",
        b"/a?b?c",
        b"/a??b",
        b"/a#frag",
        b"/a?b#frag",
        b"//double/slash?q",
        b"/%7Euser?%20=%3F",
        b"http://host.example/path?q=1",
        b"*",
    ],
)
def test_targets_of_every_form_split_as_parse_url_splits_them(target: bytes) -> None:
    url = _as_llhttp_reads(target)
    assert url is not None
    assert request_target(url) == _parse_url(url)
