"""Drive a rehearsal: schedule arrivals, run every fan as a task, watch the event loop.

Importable on its own (`await rehearse(scenario)`), so a multi-host test can run fans from
several machines and merge nothing but the JSON reports. The run stops by itself (all fans
done, or `max_duration_sec`), or when `stop` is set (Ctrl-C in the CLI): unfinished fans
are cancelled and the report is still made from what they saw.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticketgate.rehearsal.fan import Context, Fan
from ticketgate.rehearsal.record import FanRecord, Stats
from ticketgate.rehearsal.scenario import Scenario
from ticketgate.rehearsal.transport import make_transport

LAG_TICK_SEC = 0.1  # the lag monitor's sleep; lag = how late it wakes
PROGRESS_EVERY_SEC = 0.5
GC_YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython default 700)


@dataclass
class RunResult:
    scenario: Scenario
    records: list[FanRecord]
    stats: Stats
    started_at: str  # UTC, ISO 8601: doors open
    duration_sec: float
    cpu_sec: float  # the rehearsal process's own CPU time while fans ran
    interrupted: bool
    frontier_seen: bool
    peak_active_fans: int
    service_check: dict[str, Any] | None = None  # the reservation service's own records


@dataclass
class Live:
    """What the progress display reads while the run goes on."""

    records: list[FanRecord]
    stats: Stats
    clock: Callable[[], float]
    active: int = 0
    peak_active: int = 0


def plan_arrivals(scenario: Scenario) -> list[FanRecord]:
    """Each fan's arrival time and habit (stay, leave, ghost), reproducible from the seed."""
    rng = random.Random(scenario.seed)
    burst = round(scenario.fans * scenario.burst_share)
    times = sorted(rng.uniform(0.0, scenario.burst_sec) for _ in range(burst))
    tail = scenario.fans - burst
    if tail:
        rate = tail / scenario.ramp_sec if scenario.ramp_sec > 0 else float("inf")
        t = scenario.burst_sec
        for _ in range(tail):
            t += rng.expovariate(rate) if rate != float("inf") else 0.0
            times.append(t)
    leave = scenario.abandon.leave_share
    ghost = scenario.abandon.ghost_share
    records = []
    for n, arrival in enumerate(times):
        draw = rng.random()
        kind = "leave" if draw < leave else "ghost" if draw < leave + ghost else "stay"
        records.append(FanRecord(n, kind, arrival))
    return records


def mint_tokens(scenario: Scenario) -> list[str]:
    """One RS256 access token per fan, signed with the scenario's private key, with the
    claims the gateway's own login issues (so the target checks them the same way)."""
    import secrets

    from ticketgate.accounts.keys import SigningKey

    sign_in = scenario.sign_in
    key = SigningKey.from_pem(Path(sign_in.private_key_file).read_bytes(), "rehearsal")
    if sign_in.kid:
        key = SigningKey(sign_in.kid, key.private_key, key.source)
    now = int(time.time())
    return [
        key.sign(
            {
                "iss": sign_in.issuer,
                "aud": sign_in.audience,
                "sub": f"{sign_in.user_prefix}-{n}",
                "iat": now,
                "nbf": now,
                "exp": now + sign_in.token_lifetime_sec,
                "jti": secrets.token_urlsafe(12),
                "roles": ["user"],
            }
        )
        for n in range(scenario.fans)
    ]


class GcWatch:
    """Times the garbage collector's pauses: with 20,000 fans' records alive a full
    collection walks millions of objects, and a pause stalls every fan at once (it shows up
    as event-loop lag; this says whether the collector caused it)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif info.get("generation") == 2:
            self.stats.gc_full_ms.append((time.perf_counter() - self.started) * 1000.0)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _watch_lag(stats: Stats, clock: Callable[[], float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_TICK_SEC)
        late = loop.time() - before - LAG_TICK_SEC
        stats.lag(clock(), max(0.0, late) * 1000.0)


async def rehearse(
    scenario: Scenario,
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Live], None] | None = None,
) -> RunResult:
    tokens = mint_tokens(scenario) if scenario.sign_in.mode == "jwt" else None
    records = plan_arrivals(scenario)
    stats = Stats()
    loop = asyncio.get_running_loop()
    transport = make_transport(scenario.base_url, scenario.client)
    t0 = loop.time()

    def clock() -> float:
        return loop.time() - t0

    ctx = Context(scenario, transport, stats, clock, tokens)
    live = Live(records, stats, clock)
    stop = stop or asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    rng = random.Random(scenario.seed + 1)

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        live.active -= 1

    async def arrivals() -> None:
        for record in records:
            delay = record.arrival - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            fan = Fan(ctx, record, random.Random(rng.getrandbits(64)))
            task = loop.create_task(fan.run())
            tasks.add(task)
            live.active += 1
            live.peak_active = max(live.peak_active, live.active)
            task.add_done_callback(finished)
        while tasks:
            await asyncio.wait(set(tasks))

    async def progress() -> None:
        assert on_progress is not None
        while True:
            on_progress(live)
            await asyncio.sleep(PROGRESS_EVERY_SEC)

    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    # Everything allocated so far (imports, the plan, minted tokens) lives for the whole run:
    # keep it out of the collector's walks, and collect the young generation less often (a
    # fan's requests allocate a lot that dies young).
    thresholds = gc.get_threshold()
    if scenario.tune_gc:
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, thresholds[1], thresholds[2])
    watch = GcWatch(stats)
    gc.callbacks.append(watch)
    cpu_before = _cpu_seconds()
    helpers = [loop.create_task(_watch_lag(stats, clock))]
    if on_progress is not None:
        helpers.append(loop.create_task(progress()))
    driver = loop.create_task(arrivals())
    stopper = loop.create_task(stop.wait())
    interrupted = False
    try:
        done, _ = await asyncio.wait(
            {driver, stopper},
            timeout=scenario.max_duration_sec,
            return_when=asyncio.FIRST_COMPLETED,
        )
        interrupted = driver not in done
    finally:
        for task in (driver, stopper, *helpers, *tasks):
            task.cancel()
        await asyncio.gather(driver, stopper, *helpers, *tasks, return_exceptions=True)
        await transport.close()
        gc.callbacks.remove(watch)
        if scenario.tune_gc:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
    duration = clock()
    cpu = _cpu_seconds() - cpu_before
    if on_progress is not None:
        on_progress(live)
    service_check = None
    if scenario.booking.reservation_grpc:
        from ticketgate.rehearsal.verify import check_reservations

        service_check = await check_reservations(scenario.booking.reservation_grpc, records)
    for record in records:
        if not record.outcome:
            record.outcome = "unfinished" if record.state != "arriving" else "not_arrived"
    return RunResult(
        scenario=scenario,
        records=records,
        stats=stats,
        started_at=started_at,
        duration_sec=duration,
        cpu_sec=cpu,
        interrupted=interrupted,
        frontier_seen=ctx.frontier_seen,
        peak_active_fans=live.peak_active,
        service_check=service_check,
    )
