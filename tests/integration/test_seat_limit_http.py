"""The per-person seat cap through the whole gateway (issue 10 item 2): the in-process
reference services refuse a hold past BOOKING_MAX_SEATS_PER_USER with 409
SEAT_LIMIT_EXCEEDED, and the refusal leaves the reservation token usable (item 5)."""

from __future__ import annotations

import uuid

from tests.backends.booking_gateway import admitted, reserve
from tests.http_server import serve
from tests.integration.conftest import assert_envelope, dev_env
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.services.inventory import DEMO_EVENT_ID


async def test_a_hold_past_the_cap_is_409_and_the_token_stays_usable() -> None:
    env = dev_env(BOOKING_MAX_SEATS_PER_USER="4", QUEUE_SWEEP_INTERVAL_MS="600000")
    fan = f"cap-{uuid.uuid4().hex[:8]}"
    async with serve(create_app(load_settings(env))) as client:
        token = await admitted(client, DEMO_EVENT_ID, fan)
        over = await reserve(client, DEMO_EVENT_ID, fan, token, uuid.uuid4().hex, quantity=5)
        body = assert_envelope(over, 409, "SEAT_LIMIT_EXCEEDED")
        assert "at most 4 seats per person" in body["error"]["message"]
        within = await reserve(client, DEMO_EVENT_ID, fan, token, uuid.uuid4().hex, quantity=4)
        assert within.status_code == 201, within.text
        assert len(within.json()["reserved_seats"]) == 4
