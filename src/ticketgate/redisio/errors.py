"""Which Redis failures mean "not now", decided in one place by exception class.

Matching reply text broke when redis-py 8 reworded its messages, and READONLY (a primary
demoted during a failover), OOM (maxmemory reached), MASTERDOWN, CLUSTERDOWN and LOADING
then surfaced as 500s. redis-py's parser already turns each error code into a class
(`ReadOnlyError`, `OutOfMemoryError`, `BusyLoadingError`, `ClusterDownError` and its
`MasterDownError`, `TryAgainError`); the few codes it leaves as a bare `ResponseError` are
matched on the code, the reply's first word, which the protocol fixes.

Everything classified here is answered 503 (QUEUE_UNAVAILABLE, Retry-After) with a message
fit for a client: the exception's own text names internal addresses ("Error 111 connecting to
10.0.3.7:6379") and goes to the log only, at most once per reason every few seconds.
"""

from __future__ import annotations

import logging
import os
import time

import redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("ticketgate.redis")


class RedisUnavailable(Exception):
    """Redis cannot answer now (down, timed out, or too many commands pending)."""


# Error codes redis-py leaves as a plain ResponseError: a script over its time limit (BUSY),
# a failed background save with stop-writes-on-bgsave-error (MISCONF), too few replicas for
# min-replicas-to-write (NOREPLICAS).
_TRANSIENT_CODES = {
    "BUSY": "busy",
    "MISCONF": "readonly",
    "NOREPLICAS": "failover",
}

# (class, reason), most specific first: BusyLoadingError is a ConnectionError subclass.
_TRANSIENT_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (BusyLoadingError, "loading"),
    (ReadOnlyError, "failover"),
    (ClusterDownError, "failover"),  # MasterDownError is a subclass
    (TryAgainError, "failover"),
    (OutOfMemoryError, "full"),
    (RedisUnavailable, "unreachable"),
    (RedisTimeoutError, "unreachable"),
    (RedisConnectionError, "unreachable"),
    (TimeoutError, "unreachable"),
    (OSError, "unreachable"),
)

_CLIENT_MESSAGES = {
    "loading": "the queue store is loading its data; retry shortly",
    "failover": "the queue store is failing over; retry shortly",
    "full": "the queue store is out of memory; retry shortly",
    "busy": "the queue store is busy; retry shortly",
    "readonly": "the queue store refuses writes for now; retry shortly",
    "unreachable": "the queue store is unreachable; retry shortly",
}

_LOG_EVERY_SEC = 5.0
_last_logged: dict[str, float] = {}


def unavailable_reason(exc: BaseException) -> str | None:
    """Why Redis cannot serve this now (a key of the client messages), or None when the
    error is not transient (a script bug, a wrong type: a 500 worth a traceback)."""
    for cls, reason in _TRANSIENT_CLASSES:
        if isinstance(exc, cls):
            return reason
    if type(exc) is ResponseError:
        code = str(exc).partition(" ")[0]
        return _TRANSIENT_CODES.get(code)
    return None


def client_message(reason: str) -> str:
    """What a client is told: the state, never an address or the server's own words."""
    return _CLIENT_MESSAGES.get(reason, _CLIENT_MESSAGES["unreachable"])


def note_unavailable(reason: str, exc: BaseException) -> None:
    """Log the detail for operators, at most once per reason every few seconds (a Redis
    outage fails every request; one line per request would flood the log)."""
    now = time.monotonic()
    if now - _last_logged.get(reason, -_LOG_EVERY_SEC) >= _LOG_EVERY_SEC:
        _last_logged[reason] = now
        log.warning("Redis unavailable (%s): %s: %s", reason, type(exc).__name__, exc)


# Any error raised by talking to Redis, transient or not: for `except REDIS_FAILURES:` where
# a caller degrades on every Redis failure (a health probe, an optional preload).
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisUnavailable)


def cluster_client_unavailable(exc: BaseException) -> bool:
    """Whether an error out of redis-py's cluster client (other than a reply) means the
    cluster cannot answer now: a transient class above, any redis-py exception (it raises
    its own for slots moving, no reachable node, too many redirections), or an error raised
    inside redis-py's own code during a failover (see `raised_inside_redis_py`)."""
    return (
        unavailable_reason(exc) is not None
        or type(exc).__module__.startswith("redis")
        or raised_inside_redis_py(exc)
    )


_REDIS_PY_DIR = os.path.dirname(redis.__file__) + os.sep


def raised_inside_redis_py(exc: BaseException) -> bool:
    """Whether the innermost frame of `exc` is redis-py's own code.

    During a cluster failover redis-py's cluster client can use a connection that a concurrent
    reconnect has just torn down and fail with a plain AttributeError ("'NoneType' object has
    no attribute 'writelines'", seen in the multi-host test as 500s within a second of killing
    a primary). That is a lost connection, not a bug of ours: an error raised from inside the
    client library counts as Redis being unavailable, while the same error class raised by our
    own code still surfaces as a 500.
    """
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename.startswith(_REDIS_PY_DIR)
