"""The on-sale rehearsal as CI runs it: 2,000 fans through `ticketgate rehearse` (the real
command, in its own process) against a gateway the test starts, asserting from the JSON
report the promises the queue makes: no seat sold twice, no unexplained FIFO inversion among
fans who kept polling, every ghost swept within heartbeat TTL + one sweep interval, an honest
ETA once the first minute of admissions has passed, no 5xx.

Scaled so the admission rate (the bucket's 20/s) is the limit, not the window: ~1,700
admissions take ~85 s, so a minute of admissions leaves a measured tail behind it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rehearsal.gateway import serve_gateway, serve_services

FANS = 2_000
GHOST_SHARE = 0.12
RATE_PER_SEC = 20
CAPACITY = 20
TTL_SEC = 10
SWEEP_MS = 1000
GATEWAY = {
    "QUEUE_BUCKET_CAPACITY": str(CAPACITY),
    "QUEUE_BUCKET_REFILL_PER_SEC": str(RATE_PER_SEC),
    "QUEUE_HEARTBEAT_TTL_SEC": str(TTL_SEC),
    "QUEUE_SWEEP_INTERVAL_MS": str(SWEEP_MS),
    # The reference services share two cores with the gateway and 2,000 fans;
    # their default 600 ms deadline measures the box, not the gateway.
    "BACKEND_RESERVATION_API_TIMEOUT": "5s",
    "BACKEND_PAYMENT_API_TIMEOUT": "5s",
}
SCENARIO = f"""
event_id: evt_2025_1001
fans: {FANS}
burst_share: 0.5
burst_sec: 2
ramp_sec: 30
max_duration_sec: 240
abandon:
  leave_share: 0.05
  ghost_share: {GHOST_SHARE}
  after_polls_max: 4
queue:
  heartbeat_ttl_sec: {TTL_SEC}
  sweep_interval_ms: {SWEEP_MS}
  bucket_capacity: {CAPACITY}
client:
  connections: 200
"""
SLO = "fifo_unexplained=0,seats_sold_twice=0,http_5xx=0,ghosts_unswept=0,eta_p50_error<=20%"


def rehearse(
    base: str, tmp: Path, reservation: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    scenario = tmp / "scenario.yaml"
    scenario.write_text(
        SCENARIO + f"booking:\n  reservation_grpc: {reservation}\n", encoding="utf-8"
    )
    prefix = tmp / "report"
    command = [
        sys.executable, "-m", "ticketgate.cli", "rehearse", "--url", base,
        "--scenario", str(scenario), "--report", str(prefix), "--no-progress", *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=400, check=False)
    return done, prefix


@pytest.mark.slow
def test_a_2000_fan_rehearsal_keeps_the_queues_promises(tmp_path: Path) -> None:
    with (
        serve_services(tmp_path) as backends,
        serve_gateway(tmp_path, **GATEWAY, **backends) as base,
    ):
        reservation = backends["BACKEND_RESERVATION_API_GRPC_ADDRESS"]
        done, prefix = rehearse(base, tmp_path, reservation, "--slo", SLO)
    report = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    ghosts = {k: v for k, v in report["ghosts"].items() if k != "early_probes"}
    summary = {
        "tool": report["tool"],
        "fans": report["fans"],
        "ghosts": ghosts,
        "eta_after_first_minute": report["eta"]["after_first_minute"],
        "fairness": {k: v for k, v in report["fairness"].items() if k != "listed"},
        "seats": report["seats"],
        "errors": {k: v for k, v in report["errors"].items() if k != "by_endpoint_code"},
        "peak_admissions_per_sec": max(report["timeline"]["admissions_per_sec"]),
        "time_to_admission_sec": {
            k: v for k, v in report["time_to_admission_sec"].items() if k != "histogram"
        },
    }
    print(json.dumps(summary))
    assert done.returncode == 0, done.stderr[-3000:]
    assert prefix.with_suffix(".html").stat().st_size > 50_000  # plots embedded

    assert report["fans"]["total"] == FANS
    assert not report["tool"]["interrupted"]
    assert "unfinished" not in report["fans"]["by_outcome"], report["fans"]
    admitted = report["fairness"]["granted"]
    assert admitted >= FANS * 0.75

    # Seats: sold, never twice, never more than exist; by the fans' view and by the
    # reservation service's own records of every reservation made.
    seats = report["seats"]
    service = seats["service"]
    assert service["reservations_read"] == sum(
        n for outcome, n in report["fans"]["by_outcome"].items()
        if outcome in ("bought", "payment_failed") or outcome.startswith("confirm")
    )  # fmt: skip
    assert service["unreadable"] == {}
    assert 0 < seats["sold"] <= service["sold"] <= seats["capacity"]
    assert seats["sold_twice"] == service["sold_twice"] == 0
    assert service["fan_saw_confirmed_service_not"] == []

    # Fairness among fans who kept polling.
    fairness = report["fairness"]
    assert fairness["fans_compared"] >= FANS * 0.7
    assert fairness["rule"] == "frontier"  # read from the status answers
    assert fairness["unexplained"] == 0, fairness["listed"][:5]
    assert fairness["attentive_fans_expired"] == 0

    # Ghosts: at least 10% of the fans, every one swept within TTL + one sweep interval.
    assert ghosts["went_silent"] >= FANS * 0.10
    assert ghosts["not_swept_within_bound"] == 0, ghosts
    assert ghosts["unprobed"] == 0, ghosts
    assert ghosts["deadline_probes"] >= ghosts["went_silent"] * 0.6  # most probe at the deadline
    assert ghosts["bound_sec"] == TTL_SEC + SWEEP_MS / 1000

    # The ETA after the first minute of admissions, from enough polls to mean something.
    late = report["eta"]["after_first_minute"]["error"]
    assert late["count"] >= 200, report["eta"]
    assert late["p50"] <= 0.20, report["eta"]

    # Admission ran at the bucket's pace (a few dozen per second), and nothing failed on
    # the server's side.
    peak = max(report["timeline"]["admissions_per_sec"])
    assert RATE_PER_SEC * 0.5 <= peak <= CAPACITY + RATE_PER_SEC * 2 + 10
    assert report["errors"]["http_5xx"] == 0, report["errors"]["by_endpoint_code"][:10]
    assert report["slo"]["passed"]
