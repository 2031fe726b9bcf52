"""Fans signed in the two ways a staging rehearsal uses: JWTs minted from a private key the
gateway trusts, and the gateway's own accounts (register + login). Either way they enter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rehearsal.gateway import serve_gateway
from ticketgate.accounts.keys import generate_private_pem
from ticketgate.rehearsal import build_report, load_scenario, rehearse

FANS = 20


def run(base: str, sign_in: dict[str, str], event: str) -> dict[str, Any]:
    scenario = load_scenario(
        None,
        {
            "base_url": base,
            "event_id": event,
            "fans": FANS,
            "burst_share": 1.0,
            "abandon": {"leave_share": 0, "ghost_share": 0},
            "booking": {"enabled": False},
            "sign_in": sign_in,
            "max_duration_sec": 60,
        },
    )
    return build_report(asyncio.run(rehearse(scenario)))


@pytest.mark.slow
def test_jwt_and_account_fans_enter(tmp_path: Path) -> None:
    key = tmp_path / "signing.pem"
    key.write_bytes(generate_private_pem())
    with serve_gateway(
        tmp_path,
        AUTH_SIGNING_KEY_FILE=str(key),
        AUTH_ARGON2_TIME_COST="1",
        AUTH_ARGON2_MEMORY_KIB="1024",
        # A development gateway also takes bypass tokens; these fans never send one.
    ) as base:
        minted = run(base, {"mode": "jwt", "private_key_file": str(key)}, "evt_jwt")
        accounts = run(base, {"mode": "accounts", "password": "rehearsal-pass-8472"}, "evt_acc")
    for report in (minted, accounts):
        assert report["fans"] == {
            "total": FANS, "by_kind": {"stay": FANS}, "by_outcome": {"admitted": FANS}
        }  # fmt: skip
        assert report["errors"]["errors"] == 0, report["errors"]
    sign_ins = {
        (row["status"], row["code"]): row["count"]
        for row in accounts["errors"]["by_endpoint_code"]
        if row["endpoint"] == "signin"
    }
    assert sign_ins == {(201, ""): FANS, (200, ""): FANS}  # registered, then logged in


@pytest.mark.slow
def test_a_fan_whose_join_is_a_duplicate_keeps_its_existing_place(tmp_path: Path) -> None:
    """A signed-in fan who joined already (its first answer lost, as at a gateway killed
    mid-request) is answered 409 DUPLICATE_REQUEST with its place beside the error: the fan
    carries on from that place. The tool used to look for the place inside "error" and the
    fan's task died (seen in the multi-host test)."""
    fans = 5
    with serve_gateway(tmp_path) as base:
        for n in range(fans):
            first = httpx.post(
                f"{base}/api/v1/queue/join",
                json={"event_id": "evt_dup"},
                headers={"Authorization": f"Bearer load-test-bypass-token-fan-{n}"},
            )
            assert first.status_code == 202, first.text
        scenario = load_scenario(
            None,
            {
                "base_url": base,
                "event_id": "evt_dup",
                "fans": fans,
                "burst_share": 1.0,
                "abandon": {"leave_share": 0, "ghost_share": 0},
                "booking": {"enabled": False},
                "sign_in": {"mode": "bypass", "user_prefix": "fan"},
                "max_duration_sec": 60,
            },
        )
        report = build_report(asyncio.run(rehearse(scenario)))
    assert report["fans"]["by_outcome"] == {"admitted": fans}, report["fans"]
    joins = {
        (row["status"], row["code"]): row["count"]
        for row in report["errors"]["by_endpoint_code"]
        if row["endpoint"] == "join"
    }
    assert joins == {(409, "DUPLICATE_REQUEST"): fans}, joins
