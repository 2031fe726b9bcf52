"""Console entry point: `ticketgate serve` (more commands arrive with later issues)."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from typing import Annotated

import typer
from rich.console import Console

from ticketgate import __version__
from ticketgate.config import ConfigError, Settings, load_settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="ticketgate gateway")
console = Console(stderr=True)


def _banner(settings: Settings) -> None:
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"[bold]ticketgate {__version__}[/bold] listening on [cyan]{url}[/cyan]")
    store = settings.store_name
    if settings.redis.enabled:
        store += f" at {settings.redis.address}"
    console.print(f"  store        {store}")
    console.print(
        f"  environment  {settings.environment}"
        + ("  (dev bypass tokens ON)" if settings.dev_bypass_enabled else "")
    )
    console.print(f"  workers      {settings.workers}")
    console.print(
        f"  try          curl -X POST {url}/api/v1/queue/join "
        "-H 'Content-Type: application/json' -d '{\"event_id\":\"evt_2025_1001\"}'"
    )
    if settings.token_secret_generated:
        console.print(
            "  [yellow]QUEUE_TOKEN_SECRET not set: generated one for this run; "
            "waiting tokens will not survive a restart[/yellow]"
        )


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (SERVER_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SERVER_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (SERVER_WORKERS)")] = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="Shorthand for SERVER_ENVIRONMENT=development")
    ] = False,
) -> None:
    """Run the gateway (embedded memory store unless REDIS_ADDRESS is set)."""
    overrides = {"SERVER_HOST": host, "SERVER_PORT": port, "SERVER_WORKERS": workers}
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    if dev:
        os.environ["SERVER_ENVIRONMENT"] = "development"
    env = os.environ
    if env.get("SERVER_ENVIRONMENT", "").lower() == "development" and not env.get(
        "QUEUE_TOKEN_SECRET"
    ):
        # One generated secret for all workers of this run, announced in the banner.
        os.environ["QUEUE_TOKEN_SECRET"] = secrets.token_urlsafe(32)
        os.environ["TICKETGATE_SECRET_GENERATED"] = "1"
    try:
        settings = load_settings()
    except ConfigError as exc:
        console.print(f"[red]ticketgate: configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    if os.environ.get("TICKETGATE_SECRET_GENERATED"):
        from dataclasses import replace

        settings = replace(settings, token_secret_generated=True)
    _banner(settings)

    import uvicorn

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        "ticketgate.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        date_header=False,
    )


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    cli()
