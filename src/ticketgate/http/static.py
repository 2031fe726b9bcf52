"""Bytes served as they are (pages, scripts, stylesheets) with an ETag, so a revalidation
costs a 304 and no body. Used by Swagger UI (http/docs.py) and the front door
(http/frontdoor.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ticketgate.edge.request import Request, Response

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: bytes
    etag: bytes
    cache_control: bytes


def make_asset(body: bytes, content_type: str, cache_control: bytes) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Asset(body, content_type.encode(), f'"{digest}"'.encode(), cache_control)


def serve_asset(request: Request, asset: Asset, more: Headers = ()) -> Response:
    """200 with the body, or 304 when If-None-Match names the asset's ETag (or `*`)."""
    headers = (
        (b"etag", asset.etag),
        (b"cache-control", asset.cache_control),
        (b"x-content-type-options", b"nosniff"),
        *more,
    )
    tags = etags(request.headers.get(b"if-none-match", b""))
    if asset.etag in tags or b"*" in tags:
        return Response(304, b"", headers, asset.content_type)
    return Response(200, asset.body, headers, asset.content_type)


def etags(header: bytes) -> list[bytes]:
    """The entity tags of an If-None-Match header (weak ones compare as strong: RFC 9110
    uses the weak comparison for If-None-Match)."""
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")] if header else []
