"""What the three services share: refusals as `common.v1.Error` (the `rpc` wrapper of every
servicer method), trace ids, clocks, idempotency-key replays, and write transactions that
survive the database's own concurrency errors.

Business refusals travel inside responses (the contract's `error` field) so callers branch on
codes, never on text. Infrastructure failures (database down) become gRPC status UNAVAILABLE
instead: the gateway's breaker counts those, and the caller may retry.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeAlias, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row, Table, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketgate.database import Database
from ticketgate.proto.common.v1 import common_pb2

log = logging.getLogger("ticketgate.services")

ErrorCode: TypeAlias = common_pb2.ErrorCode.ValueType
# A result row of any shape (SQLAlchemy types rows by their column count).
AnyRow: TypeAlias = Row[*tuple[Any, ...]]
T = TypeVar("T")
S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
# PostgreSQL deadlock_detected, serialization_failure: the transaction did nothing; rerun it.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
_WRITE_ATTEMPTS = 5

Context = grpc.aio.ServicerContext[Any, Any]
# A servicer method: (servicer, request, context) → response.
Handler: TypeAlias = Callable[[S, Req, Context], Coroutine[Any, Any, Resp]]


class ServiceError(Exception):
    """A refusal the caller should see as `error {code, message}` in the response."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_proto(self, trace_id: str = "") -> common_pb2.Error:
        return common_pb2.Error(code=self.code, message=self.message, trace_id=trace_id)


def invalid(message: str) -> ServiceError:
    return ServiceError(common_pb2.ERROR_CODE_INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(common_pb2.ERROR_CODE_NOT_FOUND, message)


def now_ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)


def timestamp_from_ms(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def _metadata_value(context: Context, key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return ""


def traceparent_of(context: Context) -> str:
    """The caller's W3C traceparent, to pass on to the services this call reaches."""
    value = _metadata_value(context, "traceparent").strip().lower()
    return value if _TRACEPARENT.fullmatch(value) else ""


def trace_id_of(context: Context) -> str:
    """The trace id of the caller's traceparent ("" without one), echoed in errors."""
    match = _TRACEPARENT.fullmatch(traceparent_of(context))
    return match.group(1) if match else ""


def outgoing_metadata(traceparent: str) -> tuple[tuple[str, str], ...]:
    return (("traceparent", traceparent),) if traceparent else ()


def rpc(
    response: Callable[..., Resp], *echo: str
) -> Callable[[Handler[S, Req, Resp]], Handler[S, Req, Resp]]:
    """Make a servicer method an RPC of the contract: a ServiceError it raises comes back
    as `response(error=...)`, with the request's `echo` fields copied into it (so a refused
    call still names what it was about), and storage trouble becomes status UNAVAILABLE.

    The wrapper is itself a coroutine function: grpc.aio runs only those on the event loop.
    """

    def wrap(method: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
        @functools.wraps(method)
        async def handle(servicer: S, request: Req, context: Context) -> Resp:
            try:
                return await method(servicer, request, context)
            except ServiceError as exc:
                echoed = {name: getattr(request, name) for name in echo}
                return response(error=exc.to_proto(trace_id_of(context)), **echoed)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("storage unavailable: %s", exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "storage unavailable")

        return handle

    return wrap


class Replays(Generic[T]):
    """What a user already asked under an idempotency key, answered again.

    `table` keys rows by (user_id, idempotency_key) and stores each request's `request_hash`;
    `answer` turns a row into what the call returns. The same key with a different request
    is an IDEMPOTENCY_CONFLICT naming `what` was asked.
    """

    def __init__(
        self, database: Database, table: Table, what: str, answer: Callable[[AnyRow], T]
    ) -> None:
        self.database = database
        self.table = table
        self.what = what
        self.answer = answer

    async def find(self, user_id: str, key: str, request_hash: str) -> T | None:
        """The first call's answer to this request under `key`; None without a key or call."""
        if not key:
            return None
        columns = self.table.c
        async with self.database.read() as conn:
            row = (
                await conn.execute(
                    select(self.table).where(
                        columns.user_id == user_id, columns.idempotency_key == key
                    )
                )
            ).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise ServiceError(
                common_pb2.ERROR_CODE_IDEMPOTENCY_CONFLICT,
                f"idempotency key was already used for a different {self.what}",
            )
        return self.answer(row)


def _retryable(exc: DBAPIError) -> bool:
    original = exc.orig
    if getattr(original, "sqlstate", None) in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(original)


async def write_transaction(
    database: Database, work: Callable[[AsyncConnection], Awaitable[T]]
) -> T:
    """Run `work` in one write transaction, rerun on deadlock or serialization failure.

    A ServiceError raised by `work` rolls the transaction back and reaches the caller as is.
    """
    for attempt in range(1, _WRITE_ATTEMPTS + 1):
        try:
            async with database.write() as conn:
                return await work(conn)
        except DBAPIError as exc:
            if attempt == _WRITE_ATTEMPTS or not _retryable(exc):
                raise
            log.debug("retrying a write transaction (attempt %d): %s", attempt, exc.orig)
            await asyncio.sleep(random.uniform(0.001, 0.005) * attempt)
    raise AssertionError("unreachable")
