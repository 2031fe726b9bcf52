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
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from ticketgate.database import Database
from ticketgate.proto.payment.v1 import payment_pb2_grpc
from ticketgate.proto.reservation.v1 import reservation_pb2_grpc
from ticketgate.services import tables
from ticketgate.services.common import Context
from ticketgate.services.inventory import (
    DEMO_EVENT_ID,
    InventoryServicer,
    InventoryStore,
    demo_seat_map,
)
from ticketgate.services.payment import PaymentServicer, PaymentSimulator
from ticketgate.services.reservation import ReservationService, ReservationServicer
from ticketgate.services.settings import ServiceSettings, split_address

INVENTORY_SERVICE = "reservation.v1.InventoryService"
RESERVATION_SERVICE = "reservation.v1.ReservationService"
PAYMENT_SERVICE = "payment.v1.PaymentService"


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
