"""`ticketgate rehearse`: simulated fans against a deployment, and the report they make.

Importable for other harnesses (a multi-host test): `await rehearse(load_scenario(...))`
gives the raw run; `build_report(run, slo)` the JSON-ready report; `write_report` the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ticketgate.rehearsal import slo
from ticketgate.rehearsal.driver import RunResult, rehearse
from ticketgate.rehearsal.scenario import Scenario, ScenarioError, load_scenario

__all__ = [
    "RunResult",
    "Scenario",
    "ScenarioError",
    "build_report",
    "load_scenario",
    "rehearse",
    "save",
]


def build_report(run: RunResult, slo_spec: str = "") -> dict[str, Any]:
    # numpy (analysis) and matplotlib (report) load only when a report is made, so the
    # `ticketgate` command a gateway starts with never imports them.
    from ticketgate.rehearsal import analysis

    report = analysis.analyse(run)
    if slo_spec:
        report["slo"] = slo.as_json(slo.evaluate(slo.parse(slo_spec), report))
    return report


def save(
    run: RunResult, report: dict[str, Any], prefix: Path, *, png_dir: Path | None = None
) -> tuple[Path, Path]:
    """`<prefix>.json` and `<prefix>.html` (plots embedded)."""
    from ticketgate.rehearsal import analysis
    from ticketgate.rehearsal.report import write_report

    return write_report(
        report,
        prefix,
        analysis.eta_samples(run.records),
        analysis.fairness_points(run.records),
        png_dir=png_dir,
    )
