"""`ticketgate rehearse`: the command-line face of the rehearsal (registered in cli.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console

from ticketgate.rehearsal.scenario import ClientLibrary, ScenarioError, load_scenario
from ticketgate.rehearsal.slo import SloError, parse

EXIT_SLO_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def rehearse_command(
    url: Annotated[
        str | None, typer.Option(help="Base URL of the deployment (scenario base_url)")
    ] = None,
    scenario_file: Annotated[
        Path | None, typer.Option("--scenario", help="YAML scenario file (options override it)")
    ] = None,
    fans: Annotated[int | None, typer.Option(help="Number of fans")] = None,
    ramp: Annotated[
        float | None, typer.Option(help="Seconds over which the Poisson tail arrives")
    ] = None,
    event: Annotated[str | None, typer.Option(help="Event id to queue for")] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (max_duration_sec)")
    ] = None,
    client: Annotated[
        str | None, typer.Option(help="HTTP client library: aiohttp (default) or httpx")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (arrivals, habits)")] = None,
    report: Annotated[
        Path, typer.Option(help="Report path prefix: writes <prefix>.json and <prefix>.html")
    ] = Path("rehearsal-report"),
    slo: Annotated[
        str,
        typer.Option(
            help="Exit 1 when violated, e.g. 'p99<300ms,errors<0.1%,eta_p50_error<20%,"
            "fifo_unexplained=0'"
        ),
    ] = "",
    png_dir: Annotated[
        Path | None, typer.Option(help="Also write each plot as a PNG file here")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Live progress in the terminal")] = True,
) -> None:
    """Rehearse an on-sale: simulated fans join, poll, give up or enter, reserve and pay
    against URL; writes a report with plots and exits 1 when the --slo is violated."""
    console = Console(stderr=True)
    overrides: dict[str, object] = {
        "base_url": url,
        "fans": fans,
        "ramp_sec": ramp,
        "event_id": event,
        "max_duration_sec": duration,
        "seed": seed,
    }
    try:
        scenario = load_scenario(scenario_file, overrides)
        if client is not None:
            if client not in ("aiohttp", "httpx"):
                raise ScenarioError("--client must be aiohttp or httpx")
            library: ClientLibrary = "httpx" if client == "httpx" else "aiohttp"
            scenario = msgspec.structs.replace(
                scenario, client=msgspec.structs.replace(scenario.client, library=library)
            )
        if slo:
            parse(slo)
    except (ScenarioError, SloError) as exc:
        console.print(f"[red]ticketgate rehearse:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None

    from ticketgate.rehearsal import build_report, rehearse, save

    stopped_by_user = False

    async def run() -> object:
        nonlocal stopped_by_user
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal() -> None:
            nonlocal stopped_by_user
            stopped_by_user = True
            stop.set()

        loop.add_signal_handler(signal.SIGINT, on_signal)
        loop.add_signal_handler(signal.SIGTERM, on_signal)
        if progress and console.is_terminal:
            from rich.live import Live as RichLive

            from ticketgate.rehearsal.progress import Progress

            with RichLive(console=console, refresh_per_second=2) as display:
                return await rehearse(scenario, stop=stop, on_progress=Progress(display))
        return await rehearse(scenario, stop=stop)

    console.print(
        f"rehearsing [bold]{scenario.fans}[/bold] fans against [cyan]{scenario.base_url}"
        f"[/cyan] (event {scenario.event_id}); Ctrl-C stops and still writes the report"
    )
    if sys.platform != "win32":
        import uvloop

        result = uvloop.run(run())
    else:
        result = asyncio.run(run())
    from ticketgate.rehearsal.driver import RunResult

    assert isinstance(result, RunResult)
    data = build_report(result, slo)
    json_path, html_path = save(result, data, report, png_dir=png_dir)
    tool, fair, eta = data["tool"], data["fairness"], data["eta"]
    console.print(
        f"fans {data['fans']['total']}  outcomes {data['fans']['by_outcome']}\n"
        f"time to admission p50 {data['time_to_admission_sec'].get('p50')} s  "
        f"ETA median error after 1 min {eta['after_first_minute']['error'].get('p50')}  "
        f"FIFO inversions {fair['inversions']} (unexplained {fair['unexplained']})\n"
        f"requests {data['errors']['requests']}  errors {data['errors']['errors']}  "
        f"p99 {data['latency']['all'].get('p99')} ms  seats sold {data['seats']['sold']} "
        f"(twice: {data['seats']['sold_twice']})\n"
        f"tool: {tool['fans_per_cpu_sec']} fans/CPU-s, loop lag p99 "
        f"{tool['loop_lag_ms'].get('p99')} ms, max {tool['loop_lag_ms'].get('max')} ms\n"
        f"report: {html_path}  {json_path}"
    )
    verdict = data.get("slo")
    if verdict is not None:
        for clause in verdict["clauses"]:
            mark = "[green]pass[/green]" if clause["passed"] else "[red]FAIL[/red]"
            console.print(f"  SLO {clause['clause']:<28} value {clause['value']}  {mark}")
        if not verdict["passed"]:
            raise typer.Exit(EXIT_SLO_FAILED)
    if stopped_by_user:
        raise typer.Exit(EXIT_INTERRUPTED)
