"""Capture what `configure_logging` renders, then put the process's logging back as it was
(pytest's own capture handlers included), so one test's setup never leaks into another."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import structlog

from ticketgate.observability.logs import configure_logging
from ticketgate.observability.settings import LogSettings

_TOUCHED = ("uvicorn", "uvicorn.error", "uvicorn.access", "ticketgate", "httpx", "httpcore")


@contextlib.contextmanager
def captured_logs(
    log_format: str = "json", level: str = "info", access: bool = True
) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {
        name: (list(logger.handlers), logger.propagate, logger.disabled, logger.level)
        for name in _TOUCHED
        for logger in [logging.getLogger(name)]
    }
    for name in _TOUCHED:  # as a fresh process has them, whatever an earlier test's server set
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        logger.disabled = False
    stream = io.StringIO()
    configure_logging(level, LogSettings(format=log_format, access=access), stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        for name, (handlers, propagate, disabled, old_level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled
            logger.setLevel(old_level)
        structlog.reset_defaults()


def json_lines(stream: io.StringIO, *loggers: str) -> list[dict[str, Any]]:
    """Every line is one JSON object (json.loads fails the test otherwise); with `loggers`,
    only theirs (leftovers of earlier tests, e.g. a garbage-collected task's warning, may log
    from the process at any time)."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if not loggers or line.get("logger") in loggers]
