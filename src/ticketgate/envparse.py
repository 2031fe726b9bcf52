"""Reading settings from environment variables: one parser per kind of value.

Every package reads its own variables (`<package>/settings.py`) with these, so a number, a
duration or a boolean is accepted and refused the same way everywhere, with a one-line reason
that names the variable. Numbers go through `digits`' strict ASCII parsers: `1_000`, `1e3`,
`inf`, `nan` or `'٣'` are refused rather than read as something the operator did not write.

The `env_*` helpers read `name` from a mapping (the process environment or a test's dict) and
give `default` when it is unset or blank; the `parse_*` ones take text already read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ticketgate.digits import ascii_decimal, ascii_int

MIN_SECRET_LENGTH = 32
ENVIRONMENTS = ("development", "staging", "production")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_DURATION_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)"
_PART = re.compile(_DURATION_PART)
_DURATION = re.compile(f"(?:{_DURATION_PART})+")
_UNIT_SEC = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is one line fit for a terminal."""


def env_text(env: Mapping[str, str], name: str) -> str:
    """The variable's value without surrounding blanks; "" when unset."""
    return env.get(name, "").strip()


def env_environment(env: Mapping[str, str]) -> str:
    """SERVER_ENVIRONMENT, lower-cased; production when unset. Several packages' defaults
    depend on it (development generates secrets and embeds the services), so each reads it
    the same way."""
    environment = env_text(env, "SERVER_ENVIRONMENT").lower() or "production"
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f"SERVER_ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}"
        )
    return environment


def parse_int(name: str, raw: str, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high], optionally negative (`-1` is refused by its range, not its
    spelling); without bounds, any integer (the settings class then checks its invariants)."""
    text = raw.strip()
    digits = ascii_int(text.removeprefix("-"))
    if digits is None:
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    value = -digits if text.startswith("-") else digits
    if low is None or high is None:
        return value
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def env_int(
    env: Mapping[str, str], name: str, default: int, low: int | None = None, high: int | None = None
) -> int:
    """An integer setting in [low, high]; `default` when unset or empty."""
    raw = env_text(env, name)
    return default if raw == "" else parse_int(name, raw, low, high)


def parse_decimal(
    name: str,
    raw: str,
    low: float | None = None,
    high: float | None = None,
    *,
    above_low: bool = False,
    noun: str = "a number",
    unit: str = "",
) -> float:
    """A plain decimal (`5`, `0.25`, `-1`) in [low, high] (or (low, high] with `above_low`);
    without bounds, any such number (the settings class then checks its own invariants).
    `noun` and `unit` word the refusal ("a number of seconds", "between 0 and 300 seconds")."""
    text = raw.strip()
    magnitude = ascii_decimal(text.removeprefix("-"))
    if magnitude is None:
        raise ConfigError(f"{name} must be {noun}, got {raw!r}")
    value = -magnitude if text.startswith("-") else magnitude
    if low is None or high is None:
        return value
    if above_low:
        if not low < value <= high:
            raise ConfigError(f"{name} must be > {low} and <= {high}, got {text}")
    elif not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}{unit}, got {text}")
    return value


def env_decimal(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float | None = None,
    high: float | None = None,
) -> float:
    """A decimal setting (see `parse_decimal`); `default` when unset or empty."""
    raw = env_text(env, name)
    return default if raw == "" else parse_decimal(name, raw, low, high)


def parse_duration_sec(
    name: str, raw: str, low_sec: float, high_sec: float, *, bare_unit: str, example: str
) -> float:
    """Seconds from `600ms`, `0.6s`, `10m`, `1h30m`, or a bare number in `bare_unit`
    (`"ms"` or `"s"`: each variable keeps the unit it always had); `example` is the wording of
    the refusal, e.g. "a duration like '600ms', '0.6s' or '600',"."""
    text = raw.strip().lower()
    bare = ascii_decimal(text.removeprefix("-"))
    if bare is not None:
        seconds = (-bare if text.startswith("-") else bare) * _UNIT_SEC[bare_unit]
    else:
        if _DURATION.fullmatch(text) is None:
            raise ConfigError(f"{name} must be {example} got {raw!r}")
        seconds = sum(float(number) * _UNIT_SEC[unit] for number, unit in _PART.findall(text))
    if not low_sec <= seconds <= high_sec:
        raise ConfigError(
            f"{name} must be between {_duration_text(low_sec)} and {_duration_text(high_sec)},"
            f" got {raw!r}"
        )
    return seconds


def _duration_text(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def parse_bool(name: str, raw: str) -> bool:
    """1/0, true/false, yes/no, on/off (any case)."""
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A true/false setting; `default` when unset or empty."""
    raw = env_text(env, name)
    return default if raw == "" else parse_bool(name, raw)


def parse_list(raw: str) -> tuple[str, ...]:
    """Comma-separated entries, blanks around them and empty entries dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def check_secret(name: str, secret: str) -> None:
    """A shared secret (HMAC key) must be long enough not to be guessed."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")
