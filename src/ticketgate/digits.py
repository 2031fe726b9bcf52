"""Strict parsing of decimal numbers from the outside world (headers, query strings, settings).

Python's `int()` accepts far more than a client or an operator means by a number: signs,
spaces, underscores (`1_000`) and every Unicode decimal digit (`'٣'`), while `str.isdigit()`
is true for superscripts (`'²'`) that `int()` then refuses with a ValueError, which is how
`?limit=²` became a 500. Everything that reads a number from text goes through here.
"""

from __future__ import annotations

import re


def ascii_int(text: str) -> int | None:
    """The value of `text` when it is one or more ASCII digits (0-9) and nothing else."""
    if text and text.isascii() and text.isdigit():
        return int(text)
    return None


_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def ascii_decimal(text: str) -> float | None:
    """The value of a plain ASCII decimal (`5`, `0.25`, `.5`): no sign, exponent, `inf`,
    `nan`, underscores or non-ASCII digits."""
    if _DECIMAL.fullmatch(text) is None:
        return None
    return float(text)
