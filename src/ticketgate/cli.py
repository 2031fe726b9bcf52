"""Console entry point: `ticketgate serve`, `services`, `rehearse`, `admin …`."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from ticketgate import __version__
from ticketgate.accounts.service import KNOWN_ROLES
from ticketgate.admin_cli import register as register_admin_commands
from ticketgate.cli_output import config_failure, stderr_console
from ticketgate.config import Settings, check_replicas, load_settings, single_process_warning
from ticketgate.envparse import ConfigError
from ticketgate.observability.logs import configure_logging
from ticketgate.rehearsal.command import rehearse_command
from ticketgate.services.cli import services_command

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="ticketgate gateway")
console = stderr_console()


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
    if not settings.queue.auto_create_events:
        console.print(
            "  events       registered ones only (QUEUE_AUTO_CREATE_EVENTS=false): "
            "ticketgate admin event create ID"
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
    if not env.get("PAYMENT_WEBHOOK_SECRET") and not env.get("BACKEND_PAYMENT_API_GRPC_ADDRESS"):
        # Embedded payment simulator: every worker must sign and verify webhooks alike.
        os.environ["PAYMENT_WEBHOOK_SECRET"] = secrets.token_urlsafe(32)
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise config_failure(exc) from None
    if os.environ.get("TICKETGATE_SECRET_GENERATED"):
        from dataclasses import replace

        settings = replace(settings, token_secret_generated=True)
    try:
        check_replicas(settings)
    except ConfigError as exc:
        raise config_failure(exc) from None
    _banner(settings)
    # The parent's own lines (uvicorn's supervisor) in the workers' format; each worker sets
    # itself up again in app_factory.
    configure_logging(settings.log_level, settings.logs)
    warning = single_process_warning(settings)
    if warning is not None:
        logging.getLogger("ticketgate").warning(warning)
    metrics_dir = None
    if settings.metrics_enabled and settings.workers > 1:
        # Before the workers exist: they are spawned, import prometheus_client with this
        # variable set and so write their values where any worker's /metrics can merge them.
        from ticketgate.observability.prometheus import prepare_multiprocess_dir

        metrics_dir = prepare_multiprocess_dir(os.environ)
    _exit_zero_on_sigterm()
    try:
        _run_uvicorn(settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_zero_on_sigterm() -> None:
    """A SIGTERM that was handled ends the process with status 0, not "killed by SIGTERM".

    uvicorn catches SIGTERM, shuts down gracefully, restores the handler it found and raises
    the signal again; with the default handler that last step kills a one-worker process
    (status 143 after a clean drain, which orchestrators count as a failure). With this handler
    found instead, the re-raise becomes a normal exit. A SIGTERM during start-up, before
    uvicorn's own handler, ends the process the same way (nothing is being served yet).
    """

    def exit_zero(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_zero)


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    from ticketgate.http.server import HTTP_PROTOCOL

    uvicorn.run(
        "ticketgate.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=HTTP_PROTOCOL,  # ticketgate's httptools protocol, one write per response
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers propagate to our root handler (observability/logs)
        access_log=False,  # ours is one JSON line per request with the route template
        server_header=False,
        date_header=False,
        # Client addresses come from the socket; only RATE_LIMIT_TRUSTED_PROXIES may vouch
        # for X-Forwarded-For (uvicorn's own rewrite would bypass that list).
        proxy_headers=False,
        # On SIGTERM: stop accepting, let requests in flight finish for at most this long,
        # then close what is left (a stuck client must not hold a rollout for minutes).
        timeout_graceful_shutdown=settings.shutdown_timeout_sec,
    )


# The reference gRPC services (inventory, reservation, payment simulator) until Ctrl-C.
cli.command("services")(services_command)
# Simulated fans against a deployment, with a report and an SLO gate (rehearsal/).
cli.command("rehearse")(rehearse_command)


admin = typer.Typer(no_args_is_help=True, help="Operator commands")
cli.add_typer(admin, name="admin")
# events, event show/set/sweep: the HTTP admin API of a running gateway (admin_cli.py).
register_admin_commands(admin)


@admin.command("create-user")
def create_user(
    username: Annotated[str, typer.Option(help="Login name (3-64 of A-Z a-z 0-9 _ . @ -)")],
    role: Annotated[
        list[str] | None,
        typer.Option(help=f"Role to grant ({', '.join(KNOWN_ROLES)}); repeat for several"),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input")
    ] = False,
    create_database: Annotated[
        bool,
        typer.Option("--create-database", help="Create the SQLite file when it does not exist yet"),
    ] = False,
) -> None:
    """Create an account in the gateway's database (the way to make the first admin:
    `ticketgate admin create-user --username ops --role admin --role user`).

    Needs only DATABASE_URL or DATABASE_PATH (and AUTH_* when set), not the gateway's other
    settings. The database used is printed first; a SQLite file that does not exist is not
    created unless asked (a relative DATABASE_PATH run from the wrong directory would
    otherwise give the account to a database no gateway reads). The password is prompted for
    (or read from stdin), never taken as an argument, so it stays out of shell history; there
    is no default password anywhere.
    """
    import asyncio

    from sqlalchemy import make_url

    from ticketgate.accounts.keys import TokenSigner
    from ticketgate.accounts.service import AccountError, AccountService
    from ticketgate.accounts.settings import AccountSettings
    from ticketgate.database import Database
    from ticketgate.database.settings import DatabaseSettings

    roles = tuple(role or ("user",))
    unknown = [name for name in roles if name not in KNOWN_ROLES]
    if unknown:
        console.print(
            f"[red]ticketgate: unknown role {unknown[0]!r}: roles are "
            f"{', '.join(KNOWN_ROLES)}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        database_settings = DatabaseSettings.from_env(os.environ)
        account_settings = AccountSettings.from_env(os.environ)
    except ConfigError as exc:
        raise config_failure(exc) from None
    url = make_url(database_settings.url)
    console.print(
        f"database: {url.render_as_string(hide_password=True)}", highlight=False, soft_wrap=True
    )
    if url.drivername.startswith("sqlite") and not create_database:
        path = Path(url.database or "")
        if not path.exists():
            console.print(
                f"[red]ticketgate: no database at {path}: set DATABASE_PATH (or DATABASE_URL) "
                "to the gateway's, or pass --create-database to start a new one[/red]",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
    database = Database.from_settings(database_settings)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def run() -> str:
        signer = TokenSigner(database, account_settings.signing_key_pem)
        service = AccountService(database, signer, account_settings)
        try:
            user = await service.create_user(username, password, roles=roles)
            return user.id
        finally:
            await database.dispose()

    try:
        user_id = asyncio.run(run())
    except AccountError as exc:
        console.print(f"[red]ticketgate: {exc.message}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"created [bold]{username}[/bold] ({user_id}) with roles {', '.join(roles)}")


@cli.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
