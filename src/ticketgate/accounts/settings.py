"""Settings of the built-in accounts: token claims, signing key source, hashing cost.

Read from the environment once (AUTH_*), validated, frozen; the composition root (config.py)
gathers it into the aggregate settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import argon2

from ticketgate.accounts.keys import parse_private_key
from ticketgate.envparse import ConfigError, env_int, env_text


@dataclass(frozen=True, slots=True)
class AccountSettings:
    issuer: str = "ticketgate"
    audience: str = "ticketgate"
    token_ttl_sec: int = 3600
    # Empty: generate on first start and keep it in the database. Never printed.
    signing_key_pem: bytes = field(default=b"", repr=False)
    signing_key_source: str = "database"  # "AUTH_SIGNING_KEY", "AUTH_SIGNING_KEY_FILE" or this
    argon2_time_cost: int = argon2.DEFAULT_TIME_COST
    argon2_memory_kib: int = argon2.DEFAULT_MEMORY_COST
    argon2_parallelism: int = argon2.DEFAULT_PARALLELISM
    hash_concurrency: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AccountSettings:
        issuer = env_text(env, "AUTH_ISSUER") or "ticketgate"
        audience = env_text(env, "AUTH_AUDIENCE") or "ticketgate"
        for name, value in (("AUTH_ISSUER", issuer), ("AUTH_AUDIENCE", audience)):
            if len(value) > 256:
                raise ConfigError(f"{name} must be at most 256 characters")

        pem, source = _signing_key(env)
        parallelism = env_int(env, "AUTH_ARGON2_PARALLELISM", argon2.DEFAULT_PARALLELISM, 1, 64)
        return cls(
            issuer=issuer,
            audience=audience,
            token_ttl_sec=env_int(env, "AUTH_TOKEN_TTL_SEC", 3600, 60, 7 * 86_400),
            signing_key_pem=pem,
            signing_key_source=source,
            argon2_time_cost=env_int(env, "AUTH_ARGON2_TIME_COST", argon2.DEFAULT_TIME_COST, 1, 64),
            argon2_memory_kib=env_int(
                env,
                "AUTH_ARGON2_MEMORY_KIB",
                argon2.DEFAULT_MEMORY_COST,
                8 * parallelism,
                4_194_304,
            ),
            argon2_parallelism=parallelism,
            hash_concurrency=env_int(env, "AUTH_HASH_CONCURRENCY", 4, 1, 256),
        )


def _signing_key(env: Mapping[str, str]) -> tuple[bytes, str]:
    text = env_text(env, "AUTH_SIGNING_KEY")
    path = env_text(env, "AUTH_SIGNING_KEY_FILE")
    if text and path:
        raise ConfigError("set AUTH_SIGNING_KEY or AUTH_SIGNING_KEY_FILE, not both")
    if path:
        try:
            pem = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"AUTH_SIGNING_KEY_FILE cannot be read: {exc.strerror or exc}"
            ) from None
        source = "AUTH_SIGNING_KEY_FILE"
    elif text:
        # Environment files often carry a PEM on one line with literal "\n" separators.
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        pem = text.encode("utf-8")
        source = "AUTH_SIGNING_KEY"
    else:
        return b"", "database"
    try:
        parse_private_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return pem, source
