"""What a rehearsal simulates: the on-sale's arrivals, the fans' habits and the target.

One `Scenario` comes from a YAML file (`--scenario`), from command-line options, or from
both (options win). msgspec checks it on load, so a typo in a field name or a share above 1
stops the run with the field named instead of silently simulating something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec
import msgspec.yaml

SignInMode = Literal["none", "bypass", "accounts", "jwt"]
ClientLibrary = Literal["aiohttp", "httpx"]
AdmissionRule = Literal["auto", "window", "frontier"]
PAYMENT_SCENARIOS = ("approve", "fail", "delay", "random", "timeout")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the field."""


class Abandon(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Fans who give up: `leave_share` say so (DELETE leave), `ghost_share` just go silent
    (close the tab) and must be swept by the gateway. Each gives up after a random number of
    polls between 0 and `after_polls_max`."""

    leave_share: float = 0.05
    ghost_share: float = 0.10
    after_polls_max: int = 5


class SignIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How fans become users (entering the queue needs one).

    - `none`: anonymous fans (they can join and poll, never enter);
    - `bypass`: development bypass tokens `load-test-bypass-token-<n>`;
    - `accounts`: register and log in one account per fan with `password` (the gateway's
      own accounts; costs an argon2 hash per fan on the gateway);
    - `jwt`: RS256 tokens minted from `private_key_file` for a deployment that trusts its
      public key (its JWKS), with `issuer`, `audience` and `kid` (default: the RFC 7638
      thumbprint, as the gateway's own keys use).
    """

    mode: SignInMode = "bypass"
    user_prefix: str = "rehearsal"
    password: str = "rehearsal-password-42"
    private_key_file: str = ""
    issuer: str = "ticketgate"
    audience: str = "ticketgate"
    kid: str = ""
    token_lifetime_sec: int = 4 * 3600


class Booking(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What admitted fans buy. `quantity_weights[i]` is the weight of buying i+1 seats;
    `named_share` of fans pick named seats from the seat map (rows × seats_per_row), the
    rest take best-available. `capacity` is the event's seat count (for "sold against
    capacity"); 0 = unknown."""

    enabled: bool = True
    quantity_weights: tuple[float, ...] = (0.3, 0.4, 0.15, 0.15)
    named_share: float = 0.2
    rows: str = "ABCDEFGHIJ"
    seats_per_row: int = 30
    capacity: int = 300
    payment_mix: dict[str, float] = msgspec.field(
        default_factory=lambda: {"approve": 0.9, "fail": 0.05, "delay": 0.05}
    )
    # The reservation service's gRPC address (host:port), when the rehearsal host can reach
    # it: every reservation is then read back from it ("sold" and "sold twice" by its records).
    reservation_grpc: str = ""
    # After paying: how long to wait for the payment's webhook to confirm the order before
    # confirming explicitly, and how long to keep confirming a payment still settling.
    webhook_wait_sec: float = 6.0
    confirm_timeout_sec: float = 15.0


class QueueFacts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The target's queue settings the analysis needs (they are not public): the heartbeat
    TTL and sweep interval bound how fast ghosts must vanish; the admission rule, window and
    bucket capacity say which overtakings the rule allows. `rule: auto` reads the rule from
    the status answers (a serving frontier announces itself)."""

    heartbeat_ttl_sec: float = 300.0
    sweep_interval_ms: int = 1000
    admission_window: int = 100
    bucket_capacity: int = 500
    rule: AdmissionRule = "auto"


class Client(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The rehearsal's own HTTP client. `forwarded_for` gives every fan its own
    X-Forwarded-For address so a gateway that trusts the rehearsal host as a proxy
    (RATE_LIMIT_TRUSTED_PROXIES) rate-limits fans, not the whole rehearsal, per IP."""

    library: ClientLibrary = "aiohttp"
    connections: int = 500
    timeout_sec: float = 10.0
    forwarded_for: bool = True


class Scenario(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    base_url: str = "http://127.0.0.1:8000"
    event_id: str = "evt_2025_1001"
    fans: int = 1000
    # Doors open: this share of the fans arrives within burst_sec; the rest arrive as a
    # Poisson process whose mean rate spreads them over ramp_sec.
    burst_share: float = 0.5
    burst_sec: float = 2.0
    ramp_sec: float = 60.0
    max_duration_sec: float = 900.0
    seed: int = 1
    # Freeze the start-up heap and collect young objects less often, so the collector does
    # not stall 20,000 fans at once (docs/benchmarks.md); false = CPython's defaults.
    tune_gc: bool = True
    abandon: Abandon = msgspec.field(default_factory=Abandon)
    sign_in: SignIn = msgspec.field(default_factory=SignIn)
    booking: Booking = msgspec.field(default_factory=Booking)
    queue: QueueFacts = msgspec.field(default_factory=QueueFacts)
    client: Client = msgspec.field(default_factory=Client)

    def validate(self) -> Scenario:
        """Raise ScenarioError for values msgspec's types cannot express."""
        problems: list[str] = []
        if self.fans < 1:
            problems.append("fans must be at least 1")
        for name, share in (
            ("burst_share", self.burst_share),
            ("abandon.leave_share", self.abandon.leave_share),
            ("abandon.ghost_share", self.abandon.ghost_share),
            ("booking.named_share", self.booking.named_share),
        ):
            if not 0.0 <= share <= 1.0:
                problems.append(f"{name} must be between 0 and 1")
        if self.abandon.leave_share + self.abandon.ghost_share > 1.0:
            problems.append("abandon.leave_share + abandon.ghost_share must not exceed 1")
        if self.burst_sec < 0 or self.ramp_sec < 0 or self.max_duration_sec <= 0:
            problems.append("burst_sec and ramp_sec must be >= 0, max_duration_sec > 0")
        unknown = set(self.booking.payment_mix) - set(PAYMENT_SCENARIOS)
        if unknown:
            problems.append(
                f"booking.payment_mix: unknown scenario(s) {sorted(unknown)}; "
                f"use {', '.join(PAYMENT_SCENARIOS)}"
            )
        if self.booking.enabled and (
            not self.booking.payment_mix or sum(self.booking.payment_mix.values()) <= 0
        ):
            problems.append("booking.payment_mix needs at least one positive weight")
        if not self.booking.quantity_weights or any(w < 0 for w in self.booking.quantity_weights):
            problems.append("booking.quantity_weights must be non-negative weights")
        if self.sign_in.mode == "jwt" and not self.sign_in.private_key_file:
            problems.append("sign_in.private_key_file is required with sign_in.mode: jwt")
        if not self.base_url.startswith(("http://", "https://")):
            problems.append("base_url must start with http:// or https://")
        if self.client.connections < 1:
            problems.append("client.connections must be at least 1")
        if problems:
            raise ScenarioError("; ".join(problems))
        return self


def load_scenario(path: Path | None, overrides: dict[str, object] | None = None) -> Scenario:
    """The scenario in `path` (YAML) with top-level `overrides` applied (None = keep)."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            loaded = msgspec.yaml.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ScenarioError(f"scenario {path} must be a mapping of settings")
        data = dict(loaded or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        scenario = msgspec.convert(data, Scenario, strict=False)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"scenario: {exc}") from None
    return scenario.validate()


def scenario_dict(scenario: Scenario) -> dict[str, object]:
    """The scenario as plain data for the report (never the account password)."""
    data = msgspec.to_builtins(scenario)
    assert isinstance(data, dict)
    sign_in = dict(data["sign_in"])
    sign_in.pop("password", None)
    data["sign_in"] = sign_in
    return data
