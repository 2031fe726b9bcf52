"""Settings of logging (LOG_LEVEL, LOG_FORMAT, LOG_ACCESS) and tracing
(OBSERVABILITY_TRACING_*, OBSERVABILITY_SAMPLE_RATE, OTEL_*), read from the environment.

LOG_LEVEL is read on its own (`log_level_from_env`): the gateway's aggregate settings carry
it as `Settings.log_level`. The precedence of the tracing variables is told in tracing.py's
docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.trace.export import SpanExporter

from ticketgate.envparse import ConfigError, env_bool, env_decimal, env_int, env_text

FORMATS = ("json", "console")
LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_SAMPLE_RATE = 0.1


def log_level_from_env(env: Mapping[str, str]) -> str:
    """LOG_LEVEL, lower-cased; info when unset."""
    level = env_text(env, "LOG_LEVEL").lower() or "info"
    if level not in LEVELS:
        raise ConfigError(
            f"LOG_LEVEL must be debug, info, warning, error or critical, got {level!r}"
        )
    return level


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "json"
    access: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, development: bool) -> LogSettings:
        raw = env_text(env, "LOG_FORMAT").lower()
        log_format = raw or ("console" if development else "json")
        if log_format not in FORMATS:
            raise ConfigError(f"LOG_FORMAT must be json or console, got {raw!r}")
        return cls(format=log_format, access=env_bool(env, "LOG_ACCESS", True))


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What `from_env` read; `exporter` is never read from the environment: None means OTLP
    over gRPC, and tests hand in the SDK's in-memory exporter instead."""

    enabled: bool = False
    otlp_endpoint: str = ""
    sample_rate: float = DEFAULT_SAMPLE_RATE
    exporter: SpanExporter | None = None
    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    export_timeout_ms: int = 30000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TracingSettings:
        enabled = env_bool(env, "OBSERVABILITY_TRACING_ENABLED", False)
        if env_bool(env, "OTEL_SDK_DISABLED", False):
            enabled = False
        name = "OBSERVABILITY_SAMPLE_RATE"
        if not env_text(env, name):
            name = "OTEL_TRACES_SAMPLER_ARG"
        rate = env_decimal(env, name, DEFAULT_SAMPLE_RATE, 0, 1)
        endpoint = env_text(env, "OBSERVABILITY_OTLP_ENDPOINT")
        if endpoint and "://" not in endpoint and ":" not in endpoint:
            raise ConfigError(
                f"OBSERVABILITY_OTLP_ENDPOINT must be host:port or a URL, got {endpoint!r}"
            )
        return cls(
            enabled=enabled,
            otlp_endpoint=endpoint,
            sample_rate=rate,
            schedule_delay_ms=env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, 1, 3_600_000),
            max_queue_size=env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, 1_000_000),
            max_export_batch_size=env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, 1_000_000),
            export_timeout_ms=env_int(env, "OTEL_BSP_EXPORT_TIMEOUT", 30000, 1, 3_600_000),
        )
