"""`GET /metrics`: the Prometheus exposition, open to the scraper (no auth, no rate limit).

Before rendering, each store-backed source refreshes (queue depth and admission rate are
read from the shared store, not kept per worker) under a short timeout, all at once; a
slow or failing source keeps its last values and never fails the scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ticketgate.edge.request import Request, Response
from ticketgate.edge.routes import AuthPolicy, Route
from ticketgate.http.openapi import RawBody
from ticketgate.observability.prometheus import EXPOSITION_CONTENT_TYPE, Exposition
from ticketgate.observability.scrape import ScrapeSource

log = logging.getLogger("ticketgate.metrics")
# Well under Prometheus' default 10 s scrape timeout, and a bound on what one scrape costs.
REFRESH_TIMEOUT_SEC = 0.5
_CONTENT_TYPE = EXPOSITION_CONTENT_TYPE.encode()
_NO_STORE = ((b"cache-control", b"no-store"),)


class PrometheusText(RawBody):
    media_types = ("text/plain",)  # exposition format 0.0.4


class MetricsRoutes:
    def __init__(
        self, sources: Sequence[ScrapeSource] = (), refresh_timeout_sec: float = REFRESH_TIMEOUT_SEC
    ) -> None:
        self.sources = tuple(sources)
        self.refresh_timeout_sec = refresh_timeout_sec
        self._exposition = Exposition(self.sources)

    async def _refresh(self, source: ScrapeSource) -> None:
        try:
            await asyncio.wait_for(source.refresh(), self.refresh_timeout_sec)
        except TimeoutError:
            log.warning(
                "%s did not refresh within %.1f s", type(source).__name__, self.refresh_timeout_sec
            )
        except Exception as exc:  # e.g. the store is down: one line per scrape, no traceback
            log.warning("%s failed to refresh: %r", type(source).__name__, exc)

    async def metrics(self, request: Request) -> Response:
        if self.sources:
            await asyncio.gather(*(self._refresh(source) for source in self.sources))
        return Response(200, self._exposition.render(), _NO_STORE, _CONTENT_TYPE)

    def routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/metrics",
                self.metrics,
                AuthPolicy.NONE,
                "Prometheus metrics (text exposition format 0.0.4)",
                None,
                ((200, PrometheusText, "Metrics of all worker processes"),),
                rate_limited=False,
            )
        ]
