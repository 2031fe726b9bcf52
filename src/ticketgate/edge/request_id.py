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


def trace_id_from(traceparent: str) -> str:
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.strip())
        if match is not None and match.group(1) != _ZERO_TRACE:
            return match.group(1)
    return os.urandom(16).hex()


def request_id_from(header: str, trace_id: str) -> str:
    if header and _REQUEST_ID.fullmatch(header) is not None:
        return header
    return trace_id
