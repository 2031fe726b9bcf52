"""The fan journey of `ticketgate rehearse`, for Locust (distributed rehearsals, teams that
already run Locust). Self-contained: worker machines need Locust, not ticketgate.

Each Locust user is one fan: sign in (development bypass token, or none), join, poll exactly
as `poll_after_ms` says, give up (leave, or go silent as a ghost) at the configured shares,
enter when `ready_for_entry` (honouring Retry-After), reserve seats, pay with the scenario
mix, confirm, then stop. Expected answers (429 ADMISSION_THROTTLED, 409 NOT_READY or
INSUFFICIENT_INVENTORY, 412 PAYMENT_NOT_APPROVED ...) are successes; anything else is a
failure in Locust's statistics.

    locust -f deploy/locust/locustfile.py --host https://staging.example.com \\
        --users 5000 --spawn-rate 500 --run-time 10m --headless

Settings (environment): TG_EVENT_ID (evt_2025_1001), TG_SIGN_IN (bypass | none),
TG_USER_PREFIX (locust), TG_LEAVE_SHARE (0.05), TG_GHOST_SHARE (0.10),
TG_AFTER_POLLS_MAX (5), TG_PAYMENT_MIX ("approve:0.9,fail:0.05,delay:0.05"),
TG_FORWARDED_FOR (1: one X-Forwarded-For address per fan, for a gateway that trusts the
load generators as proxies). The fairness/ETA analysis and plots are `ticketgate
rehearse`'s; Locust reports request rates, latencies and failures.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from typing import Any

from locust import FastHttpUser, task
from locust.exception import StopUser

EVENT_ID = os.environ.get("TG_EVENT_ID", "evt_2025_1001")
SIGN_IN = os.environ.get("TG_SIGN_IN", "bypass")
USER_PREFIX = os.environ.get("TG_USER_PREFIX", "locust")
LEAVE_SHARE = float(os.environ.get("TG_LEAVE_SHARE", "0.05"))
GHOST_SHARE = float(os.environ.get("TG_GHOST_SHARE", "0.10"))
AFTER_POLLS_MAX = int(os.environ.get("TG_AFTER_POLLS_MAX", "5"))
FORWARDED_FOR = os.environ.get("TG_FORWARDED_FOR", "1") == "1"
PAYMENT_MIX = {
    name: float(weight)
    for name, weight in (
        part.split(":")
        for part in os.environ.get("TG_PAYMENT_MIX", "approve:0.9,fail:0.05,delay:0.05").split(",")
    )
}
EXPECTED = {
    "join": {(202, ""), (409, "DUPLICATE_REQUEST"), (409, "QUEUE_CLOSED"), (409, "SOLD_OUT")},
    "status": {(200, "")},
    "enter": {(200, ""), (429, "ADMISSION_THROTTLED"), (409, "NOT_READY"),
              (409, "SOLD_OUT"), (503, "ADMISSIONS_PAUSED")},
    "leave": {(200, "")},
    "reserve": {(201, ""), (409, "SEAT_UNAVAILABLE"), (409, "INSUFFICIENT_INVENTORY"),
                (409, "SEAT_LIMIT_EXCEEDED")},
    "pay": {(200, "")},
    "confirm": {(200, ""), (412, "PAYMENT_NOT_APPROVED"), (409, "RESERVATION_NOT_HELD"),
                (410, "RESERVATION_EXPIRED")},
    "reservation": {(200, "")},
}  # fmt: skip
_numbers = itertools.count()


def _code(body: bytes, status: int) -> str:
    if status < 300:
        return ""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP_{status}"


class Fan(FastHttpUser):
    """One fan, one journey; the user stops when the journey ends."""

    def on_start(self) -> None:
        self.n = next(_numbers)
        self.rng = random.Random()
        self.headers = {"Content-Type": "application/json"}
        if FORWARDED_FOR:
            n = self.n
            self.headers["X-Forwarded-For"] = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        if SIGN_IN == "bypass":
            suffix = f"{USER_PREFIX}-{os.getpid()}-{self.n}"
            self.headers["Authorization"] = f"Bearer load-test-bypass-token-{suffix}"
        draw = self.rng.random()
        self.kind = (
            "leave" if draw < LEAVE_SHARE else "ghost" if draw < LEAVE_SHARE + GHOST_SHARE
            else "stay"
        )  # fmt: skip

    def call(
        self, name: str, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> tuple[int, Any, float | None]:
        headers = dict(self.headers)
        if idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        data = None if body is None else json.dumps(body)
        with self.client.request(
            method, path, data=data, headers=headers, name=name, catch_response=True
        ) as response:
            status = response.status_code or 0
            raw = response.content or b""
            code = _code(raw, status)
            if (status, code) in EXPECTED[name]:
                response.success()
            else:
                response.failure(f"{status} {code}")
            retry = response.headers.get("Retry-After") if response.headers else None
            try:
                parsed = json.loads(raw) if raw else {}
            except ValueError:
                parsed = {}
            return status, parsed, float(retry) if retry and retry.isdigit() else None

    @task
    def journey(self) -> None:
        status, body, retry = self.call(
            "join", "POST", "/api/v1/queue/join", {"event_id": EVENT_ID}
        )
        if status == 409 and "error" in body:
            body = body["error"]
        token = body.get("waiting_token")
        if not token:
            raise StopUser()
        give_up = self.rng.randint(0, AFTER_POLLS_MAX) if self.kind != "stay" else -1
        polls = 0
        while True:
            status, view, retry = self.call("status", "GET", f"/api/v1/queue/status?token={token}")
            if status != 200:
                if status in (404, 410):
                    raise StopUser()
                time.sleep(retry or 1.0)
                continue
            polls += 1
            if view.get("status") in ("expired", "admitted"):
                raise StopUser()
            if view.get("event_state") == "sold_out":
                raise StopUser()  # the page says so; the fan closes it
            if give_up >= 0 and (polls > give_up or view.get("ready_for_entry")):
                if self.kind == "leave":
                    self.call("leave", "DELETE", f"/api/v1/queue/leave?token={token}")
                raise StopUser()  # a ghost just goes silent
            pause = int(view.get("poll_after_ms") or 1000) / 1000.0
            if view.get("ready_for_entry") and SIGN_IN != "none":
                status, grant, retry = self.call(
                    "enter", "POST", "/api/v1/queue/enter", {"waiting_token": token}
                )
                if status == 200:
                    self.book(grant["reservation_token"])
                    raise StopUser()
                if status in (404, 410) or grant.get("error", {}).get("code") == "SOLD_OUT":
                    raise StopUser()
                pause = retry or pause
            time.sleep(pause)

    def book(self, reservation_token: str) -> None:
        quantity = self.rng.choice((1, 2, 2, 3, 4))
        status, held, _ = self.call(
            "reserve",
            "POST",
            "/api/v1/reservations",
            {"event_id": EVENT_ID, "quantity": quantity, "reservation_token": reservation_token},
            idempotent=True,
        )
        if status != 201:
            return
        scenario = self.rng.choices(list(PAYMENT_MIX), weights=list(PAYMENT_MIX.values()))[0]
        reservation_id = held["reservation_id"]
        status, intent, _ = self.call(
            "pay",
            "POST",
            "/api/v1/payment/intent",
            {
                "reservation_id": reservation_id,
                "amount": held.get("total_amount", 0),
                "currency": held.get("currency", "KRW"),
                "scenario": scenario,
            },
            idempotent=True,
        )
        if status != 200:
            return
        path = f"/api/v1/reservations/{reservation_id}"
        settles = scenario in ("approve", "delay", "random")
        for _ in range(6 if settles else 0):  # the webhook usually confirms first
            time.sleep(1.0)
            status, found, _ = self.call("reservation", "GET", path)
            if found.get("status") == "CONFIRMED":
                return
        for _ in range(10):
            status, _, _ = self.call(
                "confirm",
                "POST",
                f"{path}/confirm",
                {"payment_intent_id": intent["payment_intent_id"]},
                idempotent=True,
            )
            if status != 412 or not settles:
                return
            time.sleep(1.0)
