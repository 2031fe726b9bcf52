"""The one parser per kind of setting: what it accepts, and the one-line refusal it gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ticketgate.envparse import (
    MIN_SECRET_LENGTH,
    ConfigError,
    check_secret,
    env_bool,
    env_decimal,
    env_int,
    parse_decimal,
    parse_duration_sec,
    parse_int,
    parse_list,
)


def refusal(parse: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The whole one-line message `parse(*args, **kwargs)` is refused with."""
    with pytest.raises(ConfigError) as refused:
        parse(*args, **kwargs)
    return str(refused.value)


def test_unset_or_blank_takes_the_default() -> None:
    assert env_int({}, "N", 7, 0, 10) == 7
    assert env_int({"N": "  "}, "N", 7, 0, 10) == 7
    assert env_decimal({"N": ""}, "N", 0.5, 0, 1) == 0.5
    assert env_bool({"B": " "}, "B", True)


def test_integers_are_plain_ascii_digits_within_their_range() -> None:
    assert parse_int("N", " 42 ", 0, 100) == 42
    assert parse_int("N", "-3", -5, 5) == -3
    for raw in ("1_000", "+5", "²", "٣", "1.0", "ten"):
        assert refusal(parse_int, "N", raw, 0, 10_000) == f"N must be an integer, got {raw!r}"
    assert refusal(parse_int, "N", "0", 1, 65_535) == "N must be between 1 and 65535, got 0"


def test_decimals_are_plain_ascii_and_a_sign_is_refused_by_the_range() -> None:
    assert parse_decimal("R", ".5", 0, 1) == 0.5
    assert parse_decimal("R", "-2") == -2.0
    for raw in ("1e3", "inf", "nan", "1_0", "٣", "0x10", ""):
        assert refusal(parse_decimal, "R", raw, 0, 10_000) == f"R must be a number, got {raw!r}"
    assert refusal(parse_decimal, "R", "-1", 0, 1) == "R must be between 0 and 1, got -1"
    assert (
        refusal(parse_decimal, "R", "301", 0, 300, noun="a number of seconds", unit=" seconds")
        == "R must be between 0 and 300 seconds, got 301"
    )
    assert (
        refusal(parse_decimal, "R", "x", 0, 300, noun="a number of seconds")
        == "R must be a number of seconds, got 'x'"
    )


def test_an_exclusive_lower_bound_says_so() -> None:
    assert parse_decimal("R", "0.001", 0, 10, above_low=True) == 0.001
    assert (
        refusal(parse_decimal, "R", "0", 0, 10, above_low=True) == "R must be > 0 and <= 10, got 0"
    )


MS = "a duration like '600ms', '0.6s' or '600',"
SEC = "seconds or a duration like 600s, 10m, 1h;"


def test_durations_keep_each_variables_bare_unit() -> None:
    assert parse_duration_sec("D", "600", 0.001, 60, bare_unit="ms", example=MS) == 0.6
    assert parse_duration_sec("D", "600", 1, 86_400, bare_unit="s", example=SEC) == 600
    assert parse_duration_sec("D", "0.6s", 0.001, 60, bare_unit="ms", example=MS) == 0.6
    assert parse_duration_sec("D", "600 MS", 0.001, 60, bare_unit="ms", example=MS) == 0.6
    assert parse_duration_sec("D", "1h30m", 1, 86_400, bare_unit="s", example=SEC) == 5400
    assert parse_duration_sec("D", "1.5m", 1, 86_400, bare_unit="s", example=SEC) == 90


def test_durations_are_refused_in_one_line_naming_the_variable() -> None:
    for raw in ("soon", "1h 30m", "10x", "1e3s", "-"):
        assert (
            refusal(parse_duration_sec, "D", raw, 1, 86_400, bare_unit="s", example=SEC)
            == f"D must be {SEC} got {raw!r}"
        )
    assert (
        refusal(parse_duration_sec, "D", "61s", 0.001, 60, bare_unit="ms", example=MS)
        == "D must be between 1ms and 60s, got '61s'"
    )
    assert (
        refusal(parse_duration_sec, "D", "0", 1, 86_400, bare_unit="s", example=SEC)
        == "D must be between 1s and 86400s, got '0'"
    )


def test_booleans_have_four_spellings_each_way() -> None:
    for raw in ("1", "true", "YES", "on"):
        assert env_bool({"B": raw}, "B", False)
    for raw in ("0", "false", "No", "off"):
        assert not env_bool({"B": raw}, "B", True)
    assert refusal(env_bool, {"B": "maybe"}, "B", False) == "B must be true or false, got 'maybe'"


def test_lists_drop_blanks_and_empty_entries() -> None:
    assert parse_list(" a, ,b ,") == ("a", "b")
    assert parse_list("") == ()


def test_a_secret_must_be_long_enough() -> None:
    check_secret("S", "s" * MIN_SECRET_LENGTH)
    assert (
        refusal(check_secret, "S", "s" * (MIN_SECRET_LENGTH - 1))
        == f"S must be at least {MIN_SECRET_LENGTH} characters"
    )
