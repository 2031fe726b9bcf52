"""The rehearsal's HTTP client, behind one small interface so the library is a setting.

aiohttp is the default: on one core it sustains many more fans per CPU-second than httpx
(figures and command in docs/benchmarks.md); httpx stays selectable (`client.library`)
for comparison and for hosts where aiohttp is unavailable.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ticketgate.rehearsal.scenario import Client

KEEPALIVE_SEC = 4.0


class Reply(NamedTuple):
    status: int
    body: bytes
    retry_after: float | None


class TransportError(Exception):
    """No HTTP answer (connection refused or reset, timeout); `kind` names which."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Transport(Protocol):
    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply: ...

    async def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fans fall back to their own pause


class AiohttpTransport:
    def __init__(self, base_url: str, settings: Client) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._base = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.connections,
                ttl_dns_cache=300,
                enable_cleanup_closed=True,
                # Below uvicorn's 5 s keep-alive: a pooled connection the server is closing
                # would otherwise be reused and fail (ClientOSError), an error of the tool's.
                keepalive_timeout=KEEPALIVE_SEC,
            ),
            timeout=aiohttp.ClientTimeout(total=settings.timeout_sec),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        aiohttp = self._aiohttp
        try:
            async with self._session.request(
                method, self._base + path, data=body, headers=headers
            ) as response:
                data = await response.read()
                return Reply(
                    response.status, data, _retry_after(response.headers.get("Retry-After"))
                )
        except TimeoutError:
            raise TransportError("timeout") from None
        except aiohttp.ClientError as exc:
            raise TransportError(type(exc).__name__) from None

    async def close(self) -> None:
        await self._session.close()


class HttpxTransport:
    def __init__(self, base_url: str, settings: Client) -> None:
        import httpx

        self._httpx = httpx
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            limits=httpx.Limits(
                max_connections=settings.connections,
                max_keepalive_connections=settings.connections,
            ),
            timeout=httpx.Timeout(settings.timeout_sec),
        )

    async def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        httpx = self._httpx
        try:
            response = await self._client.request(method, path, content=body, headers=headers)
        except httpx.TimeoutException:
            raise TransportError("timeout") from None
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from None
        return Reply(
            response.status_code,
            response.content,
            _retry_after(response.headers.get("retry-after")),
        )

    async def close(self) -> None:
        await self._client.aclose()


def make_transport(base_url: str, settings: Client) -> Transport:
    if settings.library == "httpx":
        return HttpxTransport(base_url, settings)
    return AiohttpTransport(base_url, settings)
