"""Settings of the reference services and `run_services`, which serves all three.

`run_services` starts three grpc.aio servers in the running event loop, so the same code
backs `ticketgate services` (its own process) and the gateway's embedded mode (in-process,
on loopback ports, port 0 allowed). Each server also answers the standard gRPC health check
(`grpc.health.v1.Health/Check`) for orchestrators and the gateway's readiness probe.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from ticketgate.database import Database
from ticketgate.digits import ascii_int
from ticketgate.envparse import MIN_SECRET_LENGTH, ConfigError, env_bool
from ticketgate.proto.payment.v1 import payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import Context
from ticketgate.services.inventory import (
    DEFAULT_MAX_SEATS_PER_USER,
    DEMO_EVENT_ID,
    InventoryServicer,
    InventoryStore,
    demo_seat_map,
)
from ticketgate.services.payment import PaymentServicer, PaymentSimulator
from ticketgate.services.reservation import ReservationService, ReservationServicer

INVENTORY_SERVICE = "reservation.v1.InventoryService"
RESERVATION_SERVICE = "reservation.v1.ReservationService"
PAYMENT_SERVICE = "payment.v1.PaymentService"
_ENVIRONMENTS = ("development", "staging", "production")


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Where the services listen and how they behave; `from_env` reads the environment."""

    inventory_address: str = "127.0.0.1:50051"
    reservation_address: str = "127.0.0.1:50052"
    payment_address: str = "127.0.0.1:50053"
    hold_ttl_sec: int = 60
    sweep_interval_sec: float = 1.0
    upstream_timeout_sec: float = 5.0
    webhook_secret: bytes = b""
    webhook_secret_generated: bool = False
    payment_delay_sec: float = 3.0
    payment_approve_delay_sec: float = 0.1
    payment_timeout_stall_sec: float = 30.0
    payment_approve_probability: float = 0.8
    payment_recovery_interval_sec: float = 1.0
    webhook_timeout_sec: float = 2.0
    webhook_max_attempts: int = 5
    webhook_backoff_sec: float = 0.2
    seed_demo_event: bool = True
    max_seats_per_user: int = DEFAULT_MAX_SEATS_PER_USER
    stop_grace_sec: float = 1.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, webhook_secret: bytes | None = None
    ) -> ServiceSettings:
        """Validate every variable; raise ConfigError naming the first bad one.

        PAYMENT_WEBHOOK_SECRET is required outside SERVER_ENVIRONMENT=development; in
        development one is generated (`webhook_secret_generated`), which a gateway in another
        process cannot know. A gateway running the services in-process passes its own secret
        as `webhook_secret` instead: then nothing is read, required or generated.
        """

        def get(name: str) -> str:
            return env.get(name, "").strip()

        environment = get("SERVER_ENVIRONMENT").lower() or "production"
        if environment not in _ENVIRONMENTS:
            raise ConfigError(
                f"SERVER_ENVIRONMENT must be one of {', '.join(_ENVIRONMENTS)}, got {environment!r}"
            )
        secret = get("PAYMENT_WEBHOOK_SECRET")
        generated = False
        if webhook_secret is not None:
            if not webhook_secret:
                raise ValueError("webhook_secret must not be empty")
        elif not secret:
            if environment != "development":
                raise ConfigError(
                    "PAYMENT_WEBHOOK_SECRET is required outside development "
                    f"(at least {MIN_SECRET_LENGTH} characters)"
                )
            secret, generated = secrets.token_urlsafe(32), True
        elif len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"PAYMENT_WEBHOOK_SECRET must be at least {MIN_SECRET_LENGTH} characters"
            )
        defaults = cls()
        return cls(
            inventory_address=_address(
                env, "SERVICES_INVENTORY_ADDRESS", defaults.inventory_address
            ),
            reservation_address=_address(
                env, "SERVICES_RESERVATION_ADDRESS", defaults.reservation_address
            ),
            payment_address=_address(env, "SERVICES_PAYMENT_ADDRESS", defaults.payment_address),
            hold_ttl_sec=int(_number(env, "RESERVATION_HOLD_TTL_SEC", 60, 1, 3600, int)),
            sweep_interval_sec=_number(env, "RESERVATION_SWEEP_INTERVAL_SEC", 1.0, 0.05, 3600),
            upstream_timeout_sec=_number(env, "SERVICES_UPSTREAM_TIMEOUT_SEC", 5.0, 0.05, 600),
            webhook_secret=secret.encode() if webhook_secret is None else webhook_secret,
            webhook_secret_generated=generated,
            payment_delay_sec=_number(env, "PAYMENT_DELAY_SEC", 3.0, 0, 3600),
            webhook_timeout_sec=_number(env, "PAYMENT_WEBHOOK_TIMEOUT_SEC", 2.0, 0.05, 60),
            webhook_max_attempts=int(_number(env, "PAYMENT_WEBHOOK_MAX_ATTEMPTS", 5, 1, 100, int)),
            max_seats_per_user=int(
                _number(
                    env, "BOOKING_MAX_SEATS_PER_USER", DEFAULT_MAX_SEATS_PER_USER, 1, 10_000, int
                )
            ),
            # The demo seat map is for trying things out: never in a real sale unless asked.
            seed_demo_event=env_bool(env, "SERVICES_SEED_DEMO_EVENT", environment == "development"),
        )


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    kind: Callable[[str], float] = float,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError when malformed."""
    host, separator, port_text = address.rpartition(":")
    port = ascii_int(port_text)
    if not separator or not host or port is None:
        raise ValueError(address)
    if port > 65_535 or (host.startswith("[") != host.endswith("]")):
        raise ValueError(address)
    return host, port


def _address(env: Mapping[str, str], name: str, default: str) -> str:
    address = env.get(name, "").strip() or default
    try:
        split_address(address)
    except ValueError:
        raise ConfigError(
            f"{name} must be host:port (port 0 picks a free one), got {address!r}"
        ) from None
    return address


def dial_address(bind_address: str, port: int) -> str:
    """Where a local client reaches a server bound to `bind_address` (wildcards → loopback)."""
    host, _ = split_address(bind_address)
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "*": "127.0.0.1"}.get(host, host)
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class RunningServices:
    """The three servers as started: dial these addresses (the real ports, never 0)."""

    inventory_address: str
    reservation_address: str
    payment_address: str
    inventory: InventoryStore
    reservations: ReservationService
    payments: PaymentSimulator
    settings: ServiceSettings


def _health_handler(names: frozenset[str]) -> grpc.GenericRpcHandler[Any, Any]:
    """grpc.health.v1.Health/Check without grpcio-health-checking: its request and response
    are wire-identical to StringValue (service = 1) and Int32Value (status = 1, SERVING=1)."""

    async def check(request: wrappers_pb2.StringValue, context: Context) -> wrappers_pb2.Int32Value:
        if request.value and request.value not in names:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return wrappers_pb2.Int32Value(value=1)

    handler = grpc.unary_unary_rpc_method_handler(
        check,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.Int32Value.SerializeToString,
    )
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})


async def _serve(
    stack: contextlib.AsyncExitStack,
    address: str,
    service_name: str,
    register: Callable[[grpc.aio.Server], None],
    grace: float,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]],
) -> str:
    server = grpc.aio.server(interceptors=interceptors)
    register(server)
    server.add_generic_rpc_handlers([_health_handler(frozenset({service_name}))])
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address}: {exc}") from None
    await server.start()
    stack.push_async_callback(server.stop, grace)
    return dial_address(address, port)


@contextlib.asynccontextmanager
async def run_services(
    settings: ServiceSettings,
    database: Database,
    *,
    rng: random.Random | None = None,
    clock: Callable[[], float] = time.time,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> AsyncIterator[RunningServices]:
    """Create the tables, seed the demo event, serve inventory, payment and reservation in
    the current event loop; stop them (in reverse) on exit. The database stays open: the
    caller owns it. `rng` and `clock` exist for tests (RANDOM outcomes, hold expiry).
    `interceptors` wrap every RPC of the three servers: the caller's instruments (tracing's
    SERVER span per RPC when it is on), so the services import no instrument."""
    inventory = InventoryStore(
        database,
        default_ttl_sec=settings.hold_ttl_sec,
        max_seats_per_user=settings.max_seats_per_user,
        clock=clock,
    )
    payments = PaymentSimulator(
        database,
        webhook_secret=settings.webhook_secret or secrets.token_bytes(32),
        approve_delay_sec=settings.payment_approve_delay_sec,
        delay_sec=settings.payment_delay_sec,
        timeout_stall_sec=settings.payment_timeout_stall_sec,
        approve_probability=settings.payment_approve_probability,
        webhook_timeout_sec=settings.webhook_timeout_sec,
        webhook_max_attempts=settings.webhook_max_attempts,
        webhook_backoff_sec=settings.webhook_backoff_sec,
        recovery_interval_sec=settings.payment_recovery_interval_sec,
        rng=rng,
        clock=clock,
    )
    database.register(tables.reservation_metadata)
    await database.create_all()
    if settings.seed_demo_event:
        await inventory.seed_event(DEMO_EVENT_ID, demo_seat_map())

    grace = settings.stop_grace_sec
    async with contextlib.AsyncExitStack() as stack:
        inventory_address = await _serve(
            stack,
            settings.inventory_address,
            INVENTORY_SERVICE,
            lambda server: reservation_pb2_grpc.add_InventoryServiceServicer_to_server(
                InventoryServicer(inventory), server
            ),
            grace,
            interceptors,
        )
        await payments.start()
        stack.push_async_callback(payments.close, grace)
        payment_address = await _serve(
            stack,
            settings.payment_address,
            PAYMENT_SERVICE,
            lambda server: payment_pb2_grpc.add_PaymentServiceServicer_to_server(
                PaymentServicer(payments), server
            ),
            grace,
            interceptors,
        )
        inventory_channel = grpc.aio.insecure_channel(inventory_address)
        stack.push_async_callback(inventory_channel.close, None)
        payment_channel = grpc.aio.insecure_channel(payment_address)
        stack.push_async_callback(payment_channel.close, None)
        reservations = ReservationService(
            database,
            reservation_pb2_grpc.InventoryServiceStub(inventory_channel),
            payment_pb2_grpc.PaymentServiceStub(payment_channel),
            hold_ttl_sec=settings.hold_ttl_sec,
            upstream_timeout_sec=settings.upstream_timeout_sec,
            sweep_interval_sec=settings.sweep_interval_sec,
            clock=clock,
        )
        await reservations.start()
        stack.push_async_callback(reservations.close)
        reservation_address = await _serve(
            stack,
            settings.reservation_address,
            RESERVATION_SERVICE,
            lambda server: reservation_pb2_grpc.add_ReservationServiceServicer_to_server(
                ReservationServicer(reservations), server
            ),
            grace,
            interceptors,
        )
        yield RunningServices(
            inventory_address=inventory_address,
            reservation_address=reservation_address,
            payment_address=payment_address,
            inventory=inventory,
            reservations=reservations,
            payments=payments,
            settings=settings,
        )
