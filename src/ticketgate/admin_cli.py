"""`ticketgate admin events | event show/set/sweep`: the operator API from a terminal.

The commands talk to a running gateway over its HTTP admin API (never to Redis directly), so
they go through the same authorisation, validation and audit log as any other operator
client. Credentials: a bearer token (--token / TICKETGATE_ADMIN_TOKEN) or --username with the
password prompted for or read from stdin (never an argument, so it stays out of shell
history). The first admin account is made with `ticketgate admin create-user --role admin`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN_EVENTS = "/api/v1/admin/events"
LOGIN = "/api/v1/auth/login"
TIMEOUT_SEC = 10.0

out = Console()
err = Console(stderr=True)

Url = Annotated[str, typer.Option("--url", envvar="TICKETGATE_URL", help="Gateway base URL")]
Token = Annotated[
    str,
    typer.Option(
        "--token", envvar="TICKETGATE_ADMIN_TOKEN", help="Bearer token of an admin account"
    ),
]
Username = Annotated[
    str, typer.Option("--username", help="Log in as this admin (password prompted)")
]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input")
]


class AdminClient:
    """A logged-in HTTP client for the admin API; every failure exits with status 1."""

    def __init__(self, url: str, token: str, username: str, password_stdin: bool) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT_SEC)
        if username:
            token = self._login(username, password_stdin)
        if not token:
            fail("no credentials: pass --token (or TICKETGATE_ADMIN_TOKEN) or --username")
        self.http.headers["authorization"] = f"Bearer {token}"

    def _login(self, username: str, password_stdin: bool) -> str:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("Password", hide_input=True)
        body = self.request("POST", LOGIN, json={"username": username, "password": password})
        return str(body["access_token"])

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach {self.http.base_url}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                fail(
                    f"{response.status_code} {error.get('code')}: {error.get('message')} "
                    f"(trace {error.get('trace_id')})"
                )
            fail(f"{response.status_code}: unexpected answer from {path}")
        answer: dict[str, Any] = body
        return answer

    def close(self) -> None:
        self.http.close()


def fail(message: str) -> Any:
    err.print(f"[red]ticketgate: {message}[/red]", markup=True, highlight=False)
    raise typer.Exit(1)


def _flags(event: dict[str, Any]) -> str:
    settings = event["settings"]
    flags = [name for name in ("paused", "closed") if settings[name]]
    return ", ".join(flags) or "open"


def _duration(seconds: int) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="events (most waiting first)")
    for column in ("event", "waiting", "admitted/min", "tail ETA", "oldest wait", "state"):
        table.add_column(column, justify="left" if column in ("event", "state") else "right")
    for event in events:
        table.add_row(
            event["event_id"],
            f"{event['waiting']:,}",
            f"{event['admitted_last_minute']:,}",
            _duration(event["tail_eta_sec"]),
            _duration(event["oldest_wait_sec"]),
            _flags(event),
        )
    return table


def event_table(event: dict[str, Any]) -> Table:
    table = Table(title=f"event {event['event_id']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    overridden = set(event["overridden"])
    rows: list[tuple[str, str]] = [
        ("waiting", f"{event['waiting']:,}"),
        ("admitted last minute", f"{event['admitted_last_minute']:,}"),
        ("admission rate", f"{event['admission_rate_per_sec']:.2f}/s"),
        ("tail ETA", _duration(event["tail_eta_sec"])),
        ("oldest wait", _duration(event["oldest_wait_sec"])),
    ]
    for name, value in event["settings"].items():
        mark = " (runtime override)" if name in overridden else ""
        rows.append((name, f"{value}{mark}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _call(
    url: str, token: str, username: str, password_stdin: bool, method: str, path: str, **kw: Any
) -> dict[str, Any]:
    """One admin request on a fresh client (each command makes one, then exits)."""
    client = AdminClient(url, token, username, password_stdin)
    try:
        return client.request(method, path, **kw)
    finally:
        client.close()


def list_events(
    limit: Annotated[int, typer.Option(help="At most this many events (1-1000)")] = 100,
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Events with live stats, most waiters first."""
    body = _call(url, token, username, password_stdin, "GET", ADMIN_EVENTS, params={"limit": limit})
    out.print(events_table(body["events"]))


def show_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """One event's live stats and the settings in effect."""
    body = _call(url, token, username, password_stdin, "GET", f"{ADMIN_EVENTS}/{event_id}")
    out.print(event_table(body))


def set_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    window: Annotated[int | None, typer.Option("--window", help="Admission window")] = None,
    bucket_size: Annotated[
        int | None, typer.Option("--bucket-size", help="Token bucket capacity")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Bucket refill, admissions per second")
    ] = None,
    paused: Annotated[
        bool | None, typer.Option("--pause/--resume", help="Pause or resume admissions")
    ] = None,
    closed: Annotated[
        bool | None, typer.Option("--close/--open", help="Close the queue to newcomers or open it")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Change an event's settings at runtime (all workers, within a second; audit-logged)."""
    patch: dict[str, Any] = {
        name: value
        for name, value in (
            ("admission_window", window),
            ("bucket_capacity", bucket_size),
            ("bucket_refill_per_sec", rate),
            ("paused", paused),
            ("closed", closed),
        )
        if value is not None
    }
    if not patch:
        fail(
            "nothing to change: give --window, --bucket-size, --rate, --pause/--resume or "
            "--close/--open"
        )
    body = _call(
        url, token, username, password_stdin, "PATCH", f"{ADMIN_EVENTS}/{event_id}", json=patch
    )
    out.print(event_table(body))


def sweep_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Remove the event's ghost waiters now."""
    body = _call(url, token, username, password_stdin, "POST", f"{ADMIN_EVENTS}/{event_id}/sweep")
    out.print(f"swept [bold]{body['removed']}[/bold] ghost waiters from {body['event_id']}")


def register(admin: typer.Typer) -> None:
    """Add the event commands to the `admin` group of the main CLI."""
    admin.command("events")(list_events)
    event = typer.Typer(no_args_is_help=True, help="One event: show, set, sweep")
    event.command("show")(show_event)
    event.command("set")(set_event)
    event.command("sweep")(sweep_event)
    admin.add_typer(event, name="event")
