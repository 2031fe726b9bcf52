"""The status handler builds its response positionally from the view (the call every
waiting fan repeats): the bytes must be what the response schema's named fields give."""

from __future__ import annotations

import asyncio

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.edge.request import Request
from ticketgate.http.queue import QueueRoutes
from ticketgate.http.schemas import FrontierBody, StatusResponse
from ticketgate.waitingroom.model import EventState, Frontier, StatusView


class OneView:
    """The waiting room as the handler sees it, answering one view."""

    observer = None

    def __init__(self, view: StatusView) -> None:
        self.view = view

    async def status(self, token: str) -> StatusView:
        return self.view


views = st.builds(
    StatusView,
    st.sampled_from(["waiting", "ready", "admitted", "expired"]),
    st.integers(0, 10**7),
    st.none() | st.integers(0, 10**7),
    st.sampled_from([0.0, 1.0]) | st.integers(0, 100).map(lambda n: round(n / 100, 2)),
    st.integers(0, 10**6),
    st.booleans(),
    st.integers(0, 30_000),
    st.builds(
        Frontier,
        st.floats(-3.0, 10**6, allow_nan=False),
        st.integers(0, 10**7),
        st.integers(0, 1_000),
        st.integers(0, 1_000),
    ),
    st.sampled_from(list(EventState)),
)


@given(views)
def test_the_status_body_is_the_schema_encoded_by_name(view: StatusView) -> None:
    routes = QueueRoutes(OneView(view))  # type: ignore[arg-type]
    request = Request("GET", "/api/v1/queue/status", b"token=wt1.x", {}, "trace")
    response = asyncio.run(routes.status(request))
    frontier = view.frontier
    expected = StatusResponse(
        status=view.status,  # type: ignore[arg-type]
        position=view.position,
        eta_sec=view.eta_sec,
        eta_confidence=view.eta_confidence,
        waiting_time=view.waiting_time,
        ready_for_entry=view.ready_for_entry,
        poll_after_ms=view.poll_after_ms,
        frontier=FrontierBody(frontier.released, frontier.used, frontier.earmarked),
        event_state=view.event_state.value,
    )
    assert response.body == msgspec.json.encode(expected)
    assert response.status == 200
