"""Scenarios load from YAML with options on top, and bad ones stop with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketgate.rehearsal.driver import plan_arrivals
from ticketgate.rehearsal.scenario import ScenarioError, load_scenario, scenario_dict


def test_yaml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "fans: 50\nramp_sec: 5\nabandon: {ghost_share: 0.2}\n"
        "booking: {payment_mix: {approve: 1}}\n",
        encoding="utf-8",
    )
    scenario = load_scenario(path, {"fans": 80, "event_id": None})
    assert scenario.fans == 80
    assert scenario.ramp_sec == 5
    assert scenario.abandon.ghost_share == 0.2
    assert scenario.event_id == "evt_2025_1001"
    assert "password" not in scenario_dict(scenario)["sign_in"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("fans: 0\n", "fans must be at least 1"),
        ("fanz: 3\n", "fanz"),
        ("abandon: {ghost_share: 0.7, leave_share: 0.5}\n", "must not exceed 1"),
        ("booking: {payment_mix: {steal: 1}}\n", "unknown scenario"),
        ("sign_in: {mode: jwt}\n", "private_key_file"),
        ("base_url: ftp://x\n", "base_url"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_scenarios_name_the_field(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=why):
        load_scenario(path)


def test_arrivals_are_a_burst_then_a_tail_with_exact_shares_reproducibly() -> None:
    scenario = load_scenario(
        None, {"fans": 1000, "burst_share": 0.4, "burst_sec": 2.0, "ramp_sec": 60.0}
    )
    fans = plan_arrivals(scenario)
    assert [f.arrival for f in fans] == [f.arrival for f in plan_arrivals(scenario)]
    times = [f.arrival for f in fans]
    assert times == sorted(times)
    assert sum(1 for t in times if t <= 2.0) >= 400
    assert 40 < times[-1] < 90  # 600 Poisson arrivals at 10/s after the burst
    ghosts = sum(1 for f in fans if f.kind == "ghost")
    assert 60 < ghosts < 140  # 10% of 1000
