"""`ticketgate admin events | event create/show/set/sweep`: the operator API from a terminal.

The commands talk to a running gateway over its HTTP admin API (never to Redis directly), so
they go through the same authorisation, validation and audit log as any other operator
client. Credentials: a bearer token (--token / TICKETGATE_ADMIN_TOKEN), --username with the
password prompted for or read from stdin (never an argument, so it stays out of shell
history), or the token `ticketgate admin login` kept for an hour in a file only its user can
read. The first admin account is made with `ticketgate admin create-user --role admin`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"  # `ticketgate serve`'s default port
ADMIN_EVENTS = "/api/v1/admin/events"
LOGIN = "/api/v1/auth/login"
TIMEOUT_SEC = 10.0
KEPT_TOKEN_SEC = 3600  # `admin login` keeps a token at most this long (less if it expires first)
CREDENTIALS_FILE = "admin-token.json"

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


class AdminError(Exception):
    """A failed admin call; `status` 0 when the gateway could not be reached at all."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def credentials_path() -> Path:
    """Where `admin login` keeps its token: the user's config directory (XDG_CONFIG_HOME)."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base) / "ticketgate" / CREDENTIALS_FILE


def save_token(url: str, token: str, expires_in: int) -> tuple[Path, float]:
    """Keep `token` for `url`, readable by this user only (directory 0700, file 0600, written
    under a temporary name and renamed, so no other user ever sees a partial or open file)."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    expires_at = time.time() + max(0, min(expires_in, KEPT_TOKEN_SEC))
    record = {"url": url.rstrip("/"), "token": token, "expires_at": expires_at}
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(record, file)
    os.replace(temporary, path)
    return path, expires_at


def kept_token(url: str) -> str:
    """The token `admin login` kept for `url`, or "" when there is none or it has expired."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        record = json.loads(credentials_path().read_text())
        if record["url"] == url.rstrip("/") and float(record["expires_at"]) > time.time() + 5:
            return str(record["token"])
    return ""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True))


class AdminClient:
    """A logged-in HTTP client for the admin API; every failure exits with status 1."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT_SEC)

    @classmethod
    def signed_in(cls, url: str, token: str, username: str, password_stdin: bool) -> AdminClient:
        """A client carrying the given token, a fresh login's, or the one `login` kept."""
        client = cls(url)
        if username:
            token = client.login(username, password_stdin)[0]
        token = token or kept_token(url)
        if not token:
            client.close()
            fail(
                "no credentials: run `ticketgate admin login`, or pass --token "
                "(TICKETGATE_ADMIN_TOKEN) or --username"
            )
        client.use(token)
        return client

    def use(self, token: str) -> None:
        self.http.headers["authorization"] = f"Bearer {token}"

    def login(self, username: str, password_stdin: bool) -> tuple[str, int]:
        """(access token, its lifetime in seconds) for `username`."""
        password = _read_password(password_stdin)
        body = self.request("POST", LOGIN, json={"username": username, "password": password})
        return str(body["access_token"]), int(body.get("expires_in", KEPT_TOKEN_SEC))

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.try_request(method, path, **kwargs)
        except AdminError as exc:
            fail(exc.message)
            raise  # unreachable: fail() exits

    def try_request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's JSON object, or AdminError saying what went wrong."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach {self.http.base_url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise AdminError(
                    f"{response.status_code} {error.get('code')}: {error.get('message')} "
                    f"(trace {error.get('trace_id')})",
                    response.status_code,
                )
            raise AdminError(
                f"{response.status_code}: unexpected answer from {path}", response.status_code
            )
        answer: dict[str, Any] = body
        return answer

    def close(self) -> None:
        self.http.close()


def fail(message: str) -> Any:
    err.print(f"[red]ticketgate: {message}[/red]", markup=True, highlight=False)
    raise typer.Exit(1)


def _flags(event: dict[str, Any]) -> str:
    settings = event["settings"]
    flags = [name for name in ("sold_out", "paused", "closed") if settings.get(name)]
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
        ("state", event.get("state", _flags(event))),
        ("waiting", f"{event['waiting']:,}"),
        ("admitted last minute", f"{event['admitted_last_minute']:,}"),
        ("admission rate", f"{event['admission_rate_per_sec']:.2f}/s"),
        ("tail ETA", f"{_duration(event['tail_eta_sec'])} (confidence {event['eta_confidence']})"),
        (
            "frontier",
            "released {released:,}, used {used:,}, earmarked {earmarked:,}".format(
                **event["frontier"]
            ),
        ),
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
    client = AdminClient.signed_in(url, token, username, password_stdin)
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


Window = Annotated[int | None, typer.Option("--window", help="Admission window")]
BucketSize = Annotated[int | None, typer.Option("--bucket-size", help="Token bucket capacity")]
Rate = Annotated[float | None, typer.Option("--rate", help="Bucket refill, admissions per second")]
Paused = Annotated[bool | None, typer.Option("--pause/--resume", help="Pause or resume admissions")]
Closed = Annotated[
    bool | None, typer.Option("--close/--open", help="Close the queue to newcomers or open it")
]
SoldOut = Annotated[
    bool | None,
    typer.Option(
        "--sold-out/--on-sale",
        help="Mark the event sold out (joins and enters refused, waiters told) or undo it",
    ),
]


def _settings_body(
    window: int | None,
    bucket_size: int | None,
    rate: float | None,
    paused: bool | None,
    closed: bool | None,
    sold_out: bool | None,
) -> dict[str, Any]:
    """The options given (None = not given) under the API's field names."""
    given = {
        "admission_window": window,
        "bucket_capacity": bucket_size,
        "bucket_refill_per_sec": rate,
        "paused": paused,
        "closed": closed,
        "sold_out": sold_out,
    }
    return {name: value for name, value in given.items() if value is not None}


def create_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    window: Window = None,
    bucket_size: BucketSize = None,
    rate: Rate = None,
    paused: Paused = None,
    closed: Closed = None,
    sold_out: SoldOut = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Register an event, optionally with its first settings (e.g. --pause until the sale)."""
    body = _settings_body(window, bucket_size, rate, paused, closed, sold_out)
    answer = _call(
        url,
        token,
        username,
        password_stdin,
        "POST",
        ADMIN_EVENTS,
        json={"event_id": event_id, **body},
    )
    out.print(event_table(answer))


def set_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    window: Window = None,
    bucket_size: BucketSize = None,
    rate: Rate = None,
    paused: Paused = None,
    closed: Closed = None,
    sold_out: SoldOut = None,
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Change an event's settings at runtime (all workers, within a second; audit-logged)."""
    patch = _settings_body(window, bucket_size, rate, paused, closed, sold_out)
    if not patch:
        fail(
            "nothing to change: give --window, --bucket-size, --rate, --pause/--resume, "
            "--close/--open or --sold-out/--on-sale"
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


def login(
    username: Annotated[str, typer.Option("--username", prompt=True, help="Admin login name")],
    url: Url = DEFAULT_URL,
    password_stdin: PasswordStdin = False,
) -> None:
    """Log in once; the other admin commands then use the kept token for an hour."""
    client = AdminClient(url)
    try:
        token, expires_in = client.login(username, password_stdin)
        client.use(token)
        client.request("GET", ADMIN_EVENTS, params={"limit": 1})  # an admin's token?
    finally:
        client.close()
    path, expires_at = save_token(url, token, expires_in)
    until = datetime.fromtimestamp(expires_at, UTC).strftime("%H:%M:%S UTC")
    out.print(f"logged in as [bold]{username}[/bold]; token kept in {path} until {until}")


def _watch_view(event_id: str, body: dict[str, Any] | None, note: str) -> RenderableType:
    if body is None:
        return Text(f"event {event_id}: {note}", style="red")
    return Group(event_table(body), Text(note, style="dim"))


def watch_event(
    event_id: Annotated[str, typer.Argument(help="Event id")],
    interval: Annotated[
        float, typer.Option("--interval", min=0.2, help="Seconds between refreshes")
    ] = 1.0,
    count: Annotated[
        int, typer.Option("--count", min=0, help="Stop after this many refreshes (0: Ctrl-C)")
    ] = 0,
    url: Url = DEFAULT_URL,
    token: Token = "",
    username: Username = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """A live table of one event, refreshed every second until Ctrl-C.

    An unreachable gateway or a 5xx is shown in place of the table and retried on the next
    refresh (a restart should not end the watch); a refusal (4xx) ends it with status 1.
    """
    client = AdminClient.signed_in(url, token, username, password_stdin)
    path = f"{ADMIN_EVENTS}/{event_id}"
    refreshes = 0
    try:
        with Live(console=out, auto_refresh=False) as live:
            while True:
                refreshes += 1
                stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
                try:
                    body: dict[str, Any] | None = client.try_request("GET", path)
                    note = f"update {refreshes} at {stamp} (every {interval:g} s, Ctrl-C stops)"
                except AdminError as exc:
                    if 400 <= exc.status < 500:
                        live.stop()
                        fail(exc.message)
                    body, note = None, f"{exc.message} (update {refreshes} at {stamp})"
                live.update(_watch_view(event_id, body, note), refresh=True)
                if count and refreshes >= count:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def register(admin: typer.Typer) -> None:
    """Add the event commands to the `admin` group of the main CLI."""
    admin.command("events")(list_events)
    admin.command("login")(login)
    event = typer.Typer(no_args_is_help=True, help="One event: create, show, set, sweep, watch")
    event.command("create")(create_event)
    event.command("show")(show_event)
    event.command("watch")(watch_event)
    event.command("set")(set_event)
    event.command("sweep")(sweep_event)
    admin.add_typer(event, name="event")
