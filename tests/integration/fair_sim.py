"""An on-sale as fans run it, against a real gateway over real sockets: the yardstick of the
serving frontier (README "Admission").

Each fan has its own address (X-Forwarded-For from a trusted proxy) and its own user; fans
join one after another, poll status exactly when `poll_after_ms` says, enter when
`ready_for_entry` is true and honour Retry-After on a refusal; a share of them go silent
right after joining (the sweeper's business). What comes out are the figures the queue
promises: how many enters made on "ready" were granted at the first try, how far any fan
who kept polling was overtaken, how wrong the ETA was by position band, and the admission
throughput. Runnable on its own against any gateway: `python -m tests.integration.fair_sim URL`.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

JOIN = "/api/v1/queue/join"
STATUS = "/api/v1/queue/status"
ENTER = "/api/v1/queue/enter"
BANDS = ((1, 25), (26, 100), (101, 250), (251, 100_000))


@dataclass
class Poll:
    sent: float
    received: float
    position: int
    eta_sec: int
    ready: bool


@dataclass
class Fan:
    index: int
    silent: bool
    token: str = ""
    polls: list[Poll] = field(default_factory=list)
    admitted_at: float | None = None
    enters_on_ready: int = 0
    granted_first_try: int = 0
    refusals: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        a, b = divmod(self.index, 250)
        return {"X-Forwarded-For": f"10.77.{a}.{b + 1}"}


@dataclass(frozen=True)
class Report:
    fans: int
    silent: int
    admitted: int
    enters_on_ready: int
    granted_first_try: int
    max_overtaken: int
    overtaken_fans: int
    eta_median_error: dict[str, float]
    eta_samples: dict[str, int]
    throughput_per_sec: float
    duration_sec: float
    refusal_codes: dict[str, int]

    @property
    def first_try_share(self) -> float:
        return self.granted_first_try / self.enters_on_ready if self.enters_on_ready else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "fans": self.fans,
            "silent": self.silent,
            "admitted": self.admitted,
            "enters_on_ready": self.enters_on_ready,
            "granted_first_try": self.granted_first_try,
            "first_try_share": round(self.first_try_share, 4),
            "max_overtaken": self.max_overtaken,
            "overtaken_fans": self.overtaken_fans,
            "eta_median_error": {k: round(v, 3) for k, v in self.eta_median_error.items()},
            "eta_samples": self.eta_samples,
            "throughput_per_sec": round(self.throughput_per_sec, 3),
            "duration_sec": round(self.duration_sec, 1),
            "refusal_codes": self.refusal_codes,
        }


async def _fan_loop(client: aiohttp.ClientSession, fan: Fan, stop: float) -> None:
    auth = {**fan.headers, "Authorization": f"Bearer load-test-bypass-token-sim{fan.index}"}
    while time.monotonic() < stop:
        sent = time.monotonic()
        async with client.get(STATUS, params={"token": fan.token}, headers=fan.headers) as answer:
            status_code, retry_after = answer.status, answer.headers.get("retry-after", "1")
            body = await answer.json()
        received = time.monotonic()
        if status_code == 429:  # the per-address limit: honour it
            await asyncio.sleep(float(retry_after))
            continue
        if body["status"] in ("admitted", "expired"):
            return
        poll = Poll(sent, received, body["position"], body["eta_sec"], body["ready_for_entry"])
        fan.polls.append(poll)
        if not poll.ready:
            await asyncio.sleep(body["poll_after_ms"] / 1000)
            continue
        fan.enters_on_ready += 1  # every enter follows a "ready" answer at once
        async with client.post(ENTER, json={"waiting_token": fan.token}, headers=auth) as entered:
            if entered.status == 200:
                fan.admitted_at = time.monotonic()
                fan.granted_first_try += 1
                return
            fan.refusals.append((await entered.json())["error"]["code"])
            retry_after = entered.headers.get("retry-after", "1")
        await asyncio.sleep(float(retry_after))


async def run(
    base_url: str,
    event_id: str,
    *,
    fans: int = 500,
    silent_share: float = 0.1,
    seed: int = 12,
    max_duration_sec: float = 240.0,
    settle_sec: float = 20.0,
) -> Report:
    """Run the on-sale and measure it. ETA errors count only polls made `settle_sec` after
    the first admission (the estimator needs samples first) whose true wait was at least one
    second (`eta_sec` is whole seconds: under a second it cannot be judged in percent)."""
    rng = random.Random(seed)
    crowd = [Fan(i, rng.random() < silent_share) for i in range(fans)]
    started = time.monotonic()
    stop = started + max_duration_sec
    # aiohttp, not httpx: a fraction of the client CPU per request, so on a busy machine the
    # fans' own lag does not stand in for the gateway's.
    connector = aiohttp.TCPConnector(limit=200)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as client:
        tasks = []
        for fan in crowd:  # one after another: join order is queue order
            body = {"event_id": event_id}
            async with client.post(JOIN, json=body, headers=fan.headers) as joined:
                assert joined.status == 202, await joined.text()
                fan.token = (await joined.json())["waiting_token"]
            if not fan.silent:
                tasks.append(asyncio.create_task(_fan_loop(client, fan, stop)))
        await asyncio.gather(*tasks)
    return measure(crowd, settle_sec)


def measure(crowd: list[Fan], settle_sec: float) -> Report:
    times = {f.index: f.admitted_at for f in crowd if f.admitted_at is not None}
    admitted = sorted((f for f in crowd if f.index in times), key=lambda f: times[f.index])
    keepers = [f for f in crowd if not f.silent]
    # Overtaken: fans who joined later (higher index) admitted before this one.
    order = {f.index: rank for rank, f in enumerate(admitted)}
    overtaken = []
    for fan in keepers:
        rank = order.get(fan.index)
        before = admitted[:rank] if rank is not None else admitted
        overtaken.append(sum(1 for other in before if other.index > fan.index))
    first_admission = times[admitted[0].index] if admitted else 0.0
    errors: dict[str, list[float]] = {f"{lo}-{hi}": [] for lo, hi in BANDS}
    for fan in admitted:
        for poll in fan.polls:
            if poll.ready or poll.sent < first_admission + settle_sec:
                continue
            actual = times[fan.index] - poll.received
            if actual < 1.0:
                continue
            for lo, hi in BANDS:
                if lo <= poll.position <= hi:
                    errors[f"{lo}-{hi}"].append(abs(poll.eta_sec - actual) / actual)
    codes: dict[str, int] = {}
    for fan in crowd:
        for code in fan.refusals:
            codes[code] = codes.get(code, 0) + 1
    span = times[admitted[-1].index] - first_admission if len(admitted) > 1 else 0.0
    return Report(
        fans=len(crowd),
        silent=len(crowd) - len(keepers),
        admitted=len(admitted),
        enters_on_ready=sum(f.enters_on_ready for f in crowd),
        granted_first_try=sum(f.granted_first_try for f in crowd),
        max_overtaken=max(overtaken, default=0),
        overtaken_fans=sum(1 for n in overtaken if n),
        eta_median_error={k: statistics.median(v) for k, v in errors.items() if v},
        eta_samples={k: len(v) for k, v in errors.items()},
        throughput_per_sec=(len(admitted) - 1) / span if span > 0 else 0.0,
        duration_sec=span,
        refusal_codes=codes,
    )


if __name__ == "__main__":
    import json

    result = asyncio.run(run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "evt_sim"))
    print(json.dumps(result.summary(), indent=2))
