"""Readiness probe of a gRPC backend: one `grpc.health.v1.Health/Check` on the client's own
channel, so it tests the connection the booking calls use, not a second one.

The reference services answer the standard health check (services/server.py) with messages
wire-identical to StringValue / Int32Value, so the probe uses those too and needs no
grpcio-health-checking. A backend that answers UNIMPLEMENTED or NOT_FOUND (no health service,
or not for this service name) has still answered over the channel: it counts as reachable.
Only NOT_SERVING, a transport failure or the deadline make it unavailable.
"""

from __future__ import annotations

import grpc
from google.protobuf import wrappers_pb2

from ticketgate.backends.clients import PaymentClient, ReservationClient
from ticketgate.proto.payment.v1 import payment_pb2
from ticketgate.proto.reservation.v1 import reservation_pb2

CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1  # grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING
CONNECTED = "connected"
UNAVAILABLE = "unavailable"
_ANSWERED = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND})
# The name a health check asks about, per backend: the full name of the service it serves.
SERVICES = {
    "reservation": reservation_pb2.DESCRIPTOR.services_by_name["ReservationService"].full_name,
    "payment": payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name,
}


class GrpcHealthProbe:
    """`await probe(within_sec)` -> "connected" or "unavailable"; never raises."""

    def __init__(self, client: ReservationClient | PaymentClient) -> None:
        self._client = client
        self.service = SERVICES[client.backend.name]

    async def __call__(self, within_sec: float) -> str:
        try:
            channel = self._client.backend.channel()
        except RuntimeError:  # no address yet (embedded services not started)
            return UNAVAILABLE
        check = channel.unary_unary(
            CHECK,
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.Int32Value.FromString,
        )
        try:
            # No wait_for_ready: a channel that cannot connect fails now, not at the deadline.
            answer = await check(wrappers_pb2.StringValue(value=self.service), timeout=within_sec)
        except grpc.aio.AioRpcError as exc:
            return CONNECTED if exc.code() in _ANSWERED else UNAVAILABLE
        return CONNECTED if answer.value == SERVING else UNAVAILABLE
