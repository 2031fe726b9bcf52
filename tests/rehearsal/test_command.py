"""`ticketgate rehearse` as a pipeline runs it: Ctrl-C still writes the report, a violated
--slo exits 1, a bad scenario exits 2 naming the field."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rehearsal.gateway import serve_gateway

CLI = [sys.executable, "-m", "ticketgate.cli", "rehearse", "--no-progress"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_gateway(tmp_path_factory.mktemp("gateway"), QUEUE_BUCKET_REFILL_PER_SEC="5") as base:
        yield base


@pytest.mark.slow
def test_ctrl_c_stops_the_fans_and_still_writes_the_report(gateway: str, tmp_path: Path) -> None:
    prefix = tmp_path / "report"
    process = subprocess.Popen(
        [*CLI, "--url", gateway, "--fans", "300", "--ramp", "60", "--event", "evt_ctrl_c",
         "--report", str(prefix)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(6)  # fans have joined and are polling
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    report = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["tool"]["interrupted"]
    assert report["tool"]["duration_sec"] < 30
    assert report["errors"]["requests"] > 0
    assert report["fans"]["by_outcome"].get("not_arrived", 0) > 0  # the Poisson tail was cut
    assert prefix.with_suffix(".html").exists()


@pytest.mark.slow
def test_a_violated_slo_exits_1_and_says_which(gateway: str, tmp_path: Path) -> None:
    prefix = tmp_path / "report"
    done = subprocess.run(
        [*CLI, "--url", gateway, "--fans", "20", "--ramp", "1", "--event", "evt_slo",
         "--duration", "20", "--report", str(prefix), "--slo", "p99<0.001ms,http_5xx=0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    verdict = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))["slo"]
    assert [c["passed"] for c in verdict["clauses"]] == [False, True]
    assert "FAIL" in done.stderr


def test_a_bad_scenario_exits_2_naming_the_field(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("abandon: {ghost_share: 2}\n", encoding="utf-8")
    done = subprocess.run(
        [*CLI, "--scenario", str(scenario)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "abandon.ghost_share" in done.stderr
    bad_slo = subprocess.run(
        [*CLI, "--slo", "p99<3%"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad_slo.returncode == 2
    assert "latency takes" in bad_slo.stderr
