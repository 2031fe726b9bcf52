"""The two mapping tables, entry by entry, written out here independently of the code."""

from __future__ import annotations

import grpc
import pytest

from ticketgate.backends.errors import BY_ERROR_CODE, BY_STATUS, from_error, from_status
from ticketgate.edge.errors import STATUS_BY_CODE
from ticketgate.proto.common.v1 import common_pb2

E = common_pb2.ErrorCode
S = grpc.StatusCode

# (status, wire code, trips breaker, has Retry-After)
EXPECTED_BY_ERROR_CODE: dict[str, tuple[int, str, bool, bool]] = {
    "ERROR_CODE_UNSPECIFIED": (502, "INTERNAL_ERROR", False, False),
    "ERROR_CODE_UNAUTHENTICATED": (403, "FORBIDDEN", False, False),
    "ERROR_CODE_FORBIDDEN": (403, "FORBIDDEN", False, False),
    "ERROR_CODE_UNAUTHORIZED": (403, "FORBIDDEN", False, False),
    "ERROR_CODE_INVALID_ARGUMENT": (400, "INVALID_REQUEST", False, False),
    "ERROR_CODE_NOT_FOUND": (404, "RESERVATION_NOT_FOUND", False, False),
    "ERROR_CODE_ALREADY_EXISTS": (409, "DUPLICATE_REQUEST", False, False),
    "ERROR_CODE_FAILED_PRECONDITION": (409, "RESERVATION_NOT_HELD", False, False),
    "ERROR_CODE_RATE_LIMITED": (429, "RATE_LIMITED", False, True),
    "ERROR_CODE_QUOTA_EXCEEDED": (409, "SEAT_LIMIT_EXCEEDED", False, False),
    "ERROR_CODE_IDEMPOTENCY_REQUIRED": (400, "IDEMPOTENCY_REQUIRED", False, False),
    "ERROR_CODE_IDEMPOTENCY_CONFLICT": (409, "IDEMPOTENCY_CONFLICT", False, False),
    "ERROR_CODE_RESERVATION_EXPIRED": (410, "RESERVATION_EXPIRED", False, False),
    "ERROR_CODE_PAYMENT_NOT_APPROVED": (412, "PAYMENT_NOT_APPROVED", False, False),
    "ERROR_CODE_INVENTORY_CONFLICT": (409, "SEAT_UNAVAILABLE", False, False),
    "ERROR_CODE_INSUFFICIENT_INVENTORY": (409, "INSUFFICIENT_INVENTORY", False, False),
    "ERROR_CODE_INTERNAL": (502, "INTERNAL_ERROR", False, False),
    "ERROR_CODE_UNAVAILABLE": (503, "UPSTREAM_UNAVAILABLE", True, True),
    "ERROR_CODE_TIMEOUT": (504, "UPSTREAM_TIMEOUT", True, False),
    "ERROR_CODE_UPSTREAM_TIMEOUT": (504, "UPSTREAM_TIMEOUT", True, False),
    "ERROR_CODE_UPSTREAM_ERROR": (502, "INTERNAL_ERROR", False, False),
    "ERROR_CODE_DATA_CORRUPTION": (502, "INTERNAL_ERROR", False, False),
    "ERROR_CODE_CONCURRENT_MODIFICATION": (503, "UPSTREAM_UNAVAILABLE", False, True),
}

EXPECTED_BY_STATUS: dict[grpc.StatusCode, tuple[int, str, bool, bool]] = {
    S.CANCELLED: (503, "UPSTREAM_UNAVAILABLE", False, True),
    S.UNKNOWN: (502, "INTERNAL_ERROR", False, False),
    S.INVALID_ARGUMENT: (400, "INVALID_REQUEST", False, False),
    S.DEADLINE_EXCEEDED: (504, "UPSTREAM_TIMEOUT", True, False),
    S.NOT_FOUND: (404, "RESERVATION_NOT_FOUND", False, False),
    S.ALREADY_EXISTS: (409, "DUPLICATE_REQUEST", False, False),
    S.PERMISSION_DENIED: (403, "FORBIDDEN", False, False),
    S.RESOURCE_EXHAUSTED: (429, "RATE_LIMITED", False, True),
    S.FAILED_PRECONDITION: (409, "RESERVATION_NOT_HELD", False, False),
    S.ABORTED: (503, "UPSTREAM_UNAVAILABLE", False, True),
    S.OUT_OF_RANGE: (400, "INVALID_REQUEST", False, False),
    S.UNIMPLEMENTED: (502, "INTERNAL_ERROR", False, False),
    S.INTERNAL: (502, "INTERNAL_ERROR", False, False),
    S.UNAVAILABLE: (503, "UPSTREAM_UNAVAILABLE", True, True),
    S.DATA_LOSS: (502, "INTERNAL_ERROR", False, False),
    S.UNAUTHENTICATED: (502, "INTERNAL_ERROR", False, False),
}


def test_every_error_code_of_the_contract_has_a_row() -> None:
    assert set(E.keys()) == set(EXPECTED_BY_ERROR_CODE)
    assert set(BY_ERROR_CODE) == set(E.values())


def test_every_failing_grpc_status_has_a_row() -> None:
    assert set(EXPECTED_BY_STATUS) == set(S) - {S.OK}
    assert set(BY_STATUS) == set(EXPECTED_BY_STATUS)


@pytest.mark.parametrize("name", sorted(EXPECTED_BY_ERROR_CODE))
def test_error_code_maps_to_status_and_wire_code(name: str) -> None:
    status, code, trips, retry_after = EXPECTED_BY_ERROR_CODE[name]
    error = from_error(common_pb2.Error(code=E.Value(name), message="seat A-12 is taken"), "x")
    assert (error.status, error.code, error.trips_breaker) == (status, code, trips)
    assert (error.retry_after_sec is not None) is retry_after
    assert error.backend == "x"
    # Every wire code the mapping produces is one the edge knows.
    assert code in STATUS_BY_CODE


@pytest.mark.parametrize("status_code", sorted(EXPECTED_BY_STATUS, key=str))
def test_grpc_status_maps_to_status_and_wire_code(status_code: grpc.StatusCode) -> None:
    status, code, trips, retry_after = EXPECTED_BY_STATUS[status_code]
    error = from_status(status_code, "payment")
    assert (error.status, error.code, error.trips_breaker) == (status, code, trips)
    assert (error.retry_after_sec is not None) is retry_after
    assert code in STATUS_BY_CODE
    assert "payment" in error.message


def test_refusal_messages_are_passed_on_but_failure_messages_are_not() -> None:
    refusal = from_error(
        common_pb2.Error(code=E.Value("ERROR_CODE_INVENTORY_CONFLICT"), message="A-12 is taken"),
        "reservation",
    )
    assert refusal.message == "A-12 is taken"
    failure = from_error(
        common_pb2.Error(code=E.Value("ERROR_CODE_INTERNAL"), message="psycopg: at line 3"),
        "reservation",
    )
    assert "psycopg" not in failure.message
    assert failure.message == "the reservation service failed; quote the trace_id"


def test_an_empty_message_gets_a_default_and_a_long_one_is_cut() -> None:
    empty = from_error(common_pb2.Error(code=E.Value("ERROR_CODE_NOT_FOUND")), "reservation")
    assert empty.message
    long = from_error(
        common_pb2.Error(code=E.Value("ERROR_CODE_NOT_FOUND"), message="x" * 5000), "r"
    )
    assert len(long.message) == 300


def test_an_error_code_newer_than_the_contract_is_a_bad_gateway() -> None:
    error = from_error(common_pb2.Error(code=999), "reservation")  # type: ignore[arg-type]
    assert (error.status, error.code) == (502, "INTERNAL_ERROR")
