"""Trace and request ids: every response, and every error body, names its request.

`trace_id` is the W3C trace id (from an incoming `traceparent`, else new); `X-Request-ID`
echoes the caller's id when it sent a sane one, else carries the trace id.
"""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ZERO_TRACE = "0" * 32


class _RandomIds:
    """16 random bytes per new trace id, from the OS in blocks of 256 ids.

    `os.urandom(16)` per request is a getrandom() system call per request; a block costs one
    per 256 requests and the ids stay unpredictable (another client's request id cannot be
    guessed from one's own). A forked child starts a block of its own, so two workers never
    hand out the same ids.
    """

    BLOCK = 16 * 256

    def __init__(self) -> None:
        self._block = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._block = b""
        self._offset = 0

    def hex(self) -> str:
        offset = self._offset
        if offset >= len(self._block):
            self._block = os.urandom(self.BLOCK)
            offset = 0
        self._offset = offset + 16
        return self._block[offset : offset + 16].hex()


_random_ids = _RandomIds()


def trace_id_from(traceparent: str) -> str:
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.strip())
        if match is not None and match.group(1) != _ZERO_TRACE:
            return match.group(1)
    return _random_ids.hex()


def request_id_from(header: str, trace_id: str) -> str:
    if header and _REQUEST_ID.fullmatch(header) is not None:
        return header
    return trace_id
