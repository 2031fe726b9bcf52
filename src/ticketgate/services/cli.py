"""`ticketgate services`: the three reference services in one process, until Ctrl-C.

Registered by the main CLI as `cli.command("services")(services_command)`; everything else
(settings, database, banner, signals) lives here so the main CLI stays a thin dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Annotated

import typer

from ticketgate.cli_output import config_failure, stderr_console
from ticketgate.database import Database
from ticketgate.database.settings import DatabaseSettings
from ticketgate.envparse import ConfigError, env_environment
from ticketgate.observability.logs import configure_logging
from ticketgate.observability.settings import LogSettings, TracingSettings, log_level_from_env
from ticketgate.observability.tracing import TracingServerInterceptor, start_tracing
from ticketgate.services.inventory import DEMO_EVENT_ID
from ticketgate.services.server import RunningServices, run_services
from ticketgate.services.settings import ServiceSettings

console = stderr_console()


def services_command(
    inventory_address: Annotated[
        str | None, typer.Option(help="Inventory listen address (SERVICES_INVENTORY_ADDRESS)")
    ] = None,
    reservation_address: Annotated[
        str | None,
        typer.Option(help="Reservation listen address (SERVICES_RESERVATION_ADDRESS)"),
    ] = None,
    payment_address: Annotated[
        str | None, typer.Option(help="Payment listen address (SERVICES_PAYMENT_ADDRESS)")
    ] = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="Shorthand for SERVER_ENVIRONMENT=development")
    ] = False,
) -> None:
    """Run the reference inventory, reservation and payment gRPC services (SQLite by
    default, PostgreSQL via DATABASE_URL) until interrupted."""
    overrides = {
        "SERVICES_INVENTORY_ADDRESS": inventory_address,
        "SERVICES_RESERVATION_ADDRESS": reservation_address,
        "SERVICES_PAYMENT_ADDRESS": payment_address,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value
    if dev:
        os.environ["SERVER_ENVIRONMENT"] = "development"
    try:
        settings = ServiceSettings.from_env(os.environ)
        database_settings = DatabaseSettings.from_env(os.environ)
        tracing_settings = TracingSettings.from_env(os.environ)
        development = env_environment(os.environ) == "development"
        log_settings = LogSettings.from_env(os.environ, development=development)
        level = log_level_from_env(os.environ)
    except ConfigError as exc:
        raise config_failure(exc) from None
    configure_logging(level, log_settings)
    try:
        asyncio.run(_serve(settings, database_settings, tracing_settings))
    except OSError as exc:
        console.print(f"[red]ticketgate services: {exc}[/red]")
        raise typer.Exit(1) from None


async def _serve(
    settings: ServiceSettings, database_settings: DatabaseSettings, tracing: TracingSettings
) -> None:
    # Before the servers start: a SERVER span per RPC, continuing the caller's traceparent.
    pipeline = start_tracing(tracing, "ticketgate-services") if tracing.enabled else None
    if pipeline is not None:
        pipeline.start()
    database = Database.from_settings(database_settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        interceptors = (TracingServerInterceptor(),) if pipeline is not None else ()
        async with run_services(settings, database, interceptors=interceptors) as running:
            _banner(running, database)
            await stop.wait()
            console.print("stopping…")
    finally:
        await database.dispose()
        if pipeline is not None:
            await pipeline.stop()  # sends the spans still waiting


def _banner(running: RunningServices, database: Database) -> None:
    console.print("[bold]ticketgate services[/bold] listening")
    console.print(f"  inventory    [cyan]{running.inventory_address}[/cyan]")
    console.print(f"  reservation  [cyan]{running.reservation_address}[/cyan]")
    console.print(f"  payment      [cyan]{running.payment_address}[/cyan]")
    console.print(f"  database     {database.display_url}")
    if running.settings.seed_demo_event:
        console.print(f"  demo event   {DEMO_EVENT_ID} (300 seats, rows A-J)")
    if running.settings.webhook_secret_generated:
        console.print(
            "  [yellow]PAYMENT_WEBHOOK_SECRET not set: generated one for this run; a gateway "
            "in another process cannot verify these webhooks — set the same secret on both"
            "[/yellow]"
        )
