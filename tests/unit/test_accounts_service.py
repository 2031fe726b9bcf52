"""AccountService on SQLite and PostgreSQL: sign-up rules, login, the tokens it mints."""

from __future__ import annotations

import asyncio
import dataclasses

import jwt
import pytest
from sqlalchemy import select, update

from tests.unit.test_accounts_database import (
    FAST_HASHING,
    DatabaseFactory,
    databases,
    shared_key_pem,
)
from ticketgate.accounts import tables
from ticketgate.accounts.keys import LocalJwksSource, TokenSigner
from ticketgate.accounts.passwords import PasswordHasher
from ticketgate.accounts.service import (
    AccountService,
    InvalidAccountInput,
    InvalidCredentials,
    UsernameTaken,
)
from ticketgate.accounts.settings import AccountSettings
from ticketgate.envparse import ConfigError

__all__ = ["databases"]  # the fixture, re-exported for pytest

PASSWORD = "correct-horse-battery"


def make_service(
    factory: DatabaseFactory,
    settings: AccountSettings = FAST_HASHING,
    *,
    configured_key: bool = True,
    clock: float | None = None,
) -> AccountService:
    database = factory.open()
    signer = TokenSigner(database, shared_key_pem() if configured_key else b"")
    if clock is None:
        return AccountService(database, signer, settings)
    return AccountService(database, signer, settings, clock=lambda: clock)


async def verify(service: AccountService, token: str) -> dict[str, object]:
    """Verify like any relying party would: JWKS by kid, RS256 only, iss/aud/exp required."""
    keyset = jwt.PyJWKSet.from_json((await LocalJwksSource(service.signer).fetch()).decode())
    kid = jwt.get_unverified_header(token)["kid"]
    claims: dict[str, object] = jwt.decode(
        token,
        keyset[kid].key,
        algorithms=["RS256"],
        audience=service.settings.audience,
        issuer=service.settings.issuer,
        options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud"]},
    )
    return claims


async def test_register_then_login_yields_a_token_the_jwks_verifies(
    databases: DatabaseFactory,
) -> None:
    service = make_service(databases)
    user = await service.register("alice", PASSWORD)
    assert user.id.startswith("usr_")
    assert user.username == "alice"
    assert user.roles == ("user",)

    token = await service.login("alice", PASSWORD)
    assert token.token_type == "Bearer"
    assert token.expires_in == 3600
    claims = await verify(service, token.access_token)
    assert claims["sub"] == user.id
    assert claims["iss"] == "ticketgate"
    assert claims["aud"] == "ticketgate"
    assert claims["roles"] == ["user"]
    assert claims["exp"] == claims["iat"] + 3600  # type: ignore[operator]
    assert claims["nbf"] == claims["iat"]


async def test_issuer_audience_and_ttl_come_from_settings(databases: DatabaseFactory) -> None:
    settings = dataclasses.replace(
        FAST_HASHING, issuer="https://tickets.example", audience="tg-api", token_ttl_sec=120
    )
    service = make_service(databases, settings, clock=1_000_000.0)
    user = await service.register("bob", PASSWORD)
    token = await service.login("bob", PASSWORD)
    assert token.expires_in == 120
    # Minted "at" t=1e6, so it is long expired now: the expiry is real.
    with pytest.raises(jwt.ExpiredSignatureError):
        await verify(service, token.access_token)
    claims = jwt.decode(token.access_token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["sub"]) == (
        "https://tickets.example",
        "tg-api",
        user.id,
    )
    assert (claims["iat"], claims["exp"]) == (1_000_000, 1_000_120)


async def test_usernames_are_unique_regardless_of_case(databases: DatabaseFactory) -> None:
    service = make_service(databases)
    await service.register("Carol", PASSWORD)
    with pytest.raises(UsernameTaken):
        await service.register("carol", "another-password")
    token = await service.login("CAROL", PASSWORD)
    assert (await verify(service, token.access_token))["sub"]


async def test_concurrent_sign_ups_for_one_name_create_one_user(
    databases: DatabaseFactory,
) -> None:
    services = [make_service(databases) for _ in range(2)]
    await asyncio.gather(*(service.start() for service in services))
    outcomes = await asyncio.gather(
        *(services[i % 2].register("dave", f"password-{i}") for i in range(6)),
        return_exceptions=True,
    )
    created = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    taken = [outcome for outcome in outcomes if isinstance(outcome, UsernameTaken)]
    assert (len(created), len(taken)) == (1, 5)
    winner = outcomes.index(created[0])
    assert (await services[1].login("dave", f"password-{winner}")).access_token


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("ab", PASSWORD),
        ("x" * 65, PASSWORD),
        ("has space", PASSWORD),
        ("semi;colon", PASSWORD),
        ("ünïcode", PASSWORD),
        ("alice\n", PASSWORD),
        ("eve", "short7!"),
        ("eve", "p" * 257),
    ],
)
async def test_sign_up_rules_are_enforced(
    databases: DatabaseFactory, username: str, password: str
) -> None:
    service = make_service(databases)
    with pytest.raises(InvalidAccountInput) as caught:
        await service.register(username, password)
    assert password not in caught.value.message


async def test_boundary_usernames_and_passwords_are_accepted(databases: DatabaseFactory) -> None:
    service = make_service(databases)
    await service.register("a.b", "pq" * 4)
    await service.register("fan_01@example.com", "pq" * 128)
    await service.register("x" * 64, "ぱすわーど-パスワード")
    assert await service.login("x" * 64, "ぱすわーど-パスワード")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("frank", "wrong-password"),
        ("nobody", PASSWORD),
        ("frank", ""),
        ("fr", PASSWORD),
        ("frank", "p" * 257),
    ],
)
async def test_bad_credentials_are_refused_alike(
    databases: DatabaseFactory, username: str, password: str
) -> None:
    service = make_service(databases)
    await service.register("frank", PASSWORD)
    with pytest.raises(InvalidCredentials) as caught:
        await service.login(username, password)
    assert caught.value.message == "invalid username or password"


async def test_first_admin_is_created_with_a_chosen_password_and_both_roles(
    databases: DatabaseFactory,
) -> None:
    service = make_service(databases)
    admin = await service.create_user("root", "a-long-chosen-secret", roles=("admin", "user"))
    assert admin.roles == ("admin", "user")
    claims = await verify(
        service, (await service.login("root", "a-long-chosen-secret")).access_token
    )
    assert claims["roles"] == ["admin", "user"]
    stored = await service.get_user(admin.id)
    assert stored is not None
    assert stored.roles == ("admin", "user")
    with pytest.raises(InvalidAccountInput):
        await service.create_user("root2", "short", roles=("admin",))
    with pytest.raises(InvalidAccountInput):
        await service.create_user("root3", "a-long-chosen-secret", roles=("Admin!",))
    with pytest.raises(InvalidAccountInput):
        await service.create_user("root4", "a-long-chosen-secret", roles=())
    # A typo grants nothing, silently: unknown roles are refused (issue 10 item 17).
    with pytest.raises(InvalidAccountInput, match="unknown role 'admn'"):
        await service.create_user("root5", "a-long-chosen-secret", roles=("admn",))


async def test_passwords_are_stored_as_argon2id_only(databases: DatabaseFactory) -> None:
    service = make_service(databases)
    user = await service.register("grace", PASSWORD)
    async with service.database.read() as conn:
        row = (await conn.execute(select(tables.users).where(tables.users.c.id == user.id))).one()
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in " ".join(str(value) for value in row)


async def test_login_upgrades_a_hash_made_with_old_parameters(databases: DatabaseFactory) -> None:
    service = make_service(databases)
    user = await service.register("heidi", PASSWORD)
    old_hash = await PasswordHasher(time_cost=1, memory_kib=512, parallelism=1).hash(PASSWORD)
    async with service.database.write() as conn:
        await conn.execute(
            update(tables.users).where(tables.users.c.id == user.id).values(password_hash=old_hash)
        )

    await service.login("heidi", PASSWORD)

    async with service.database.read() as conn:
        new_hash = (
            await conn.execute(
                select(tables.users.c.password_hash).where(tables.users.c.id == user.id)
            )
        ).scalar_one()
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await service.login("heidi", PASSWORD)


async def test_two_services_on_one_database_share_users_and_key(
    databases: DatabaseFactory,
) -> None:
    """Two workers (or pods) with a generated key: either one's token verifies with the
    other's JWKS."""
    first = make_service(databases, configured_key=False)
    second = make_service(databases, configured_key=False)
    await asyncio.gather(first.start(), second.start())
    user = await first.register("ivan", PASSWORD)
    token = await second.login("ivan", PASSWORD)
    assert (await verify(first, token.access_token))["sub"] == user.id
    assert await first.signer.jwks() == await second.signer.jwks()


def test_account_settings_from_env_defaults_and_refusals() -> None:
    defaults = AccountSettings.from_env({})
    assert (defaults.issuer, defaults.audience, defaults.token_ttl_sec) == (
        "ticketgate",
        "ticketgate",
        3600,
    )
    assert defaults.signing_key_source == "database"
    custom = AccountSettings.from_env(
        {"AUTH_ISSUER": "iss", "AUTH_AUDIENCE": "aud", "AUTH_TOKEN_TTL_SEC": "900"}
    )
    assert (custom.issuer, custom.audience, custom.token_ttl_sec) == ("iss", "aud", 900)
    for env, reason in (
        ({"AUTH_TOKEN_TTL_SEC": "ten"}, "AUTH_TOKEN_TTL_SEC must be an integer"),
        ({"AUTH_TOKEN_TTL_SEC": "5"}, "AUTH_TOKEN_TTL_SEC must be between"),
        ({"AUTH_ARGON2_MEMORY_KIB": "4"}, "AUTH_ARGON2_MEMORY_KIB must be between"),
        ({"AUTH_ISSUER": "x" * 300}, "AUTH_ISSUER must be at most"),
    ):
        with pytest.raises(ConfigError, match=reason):
            AccountSettings.from_env(env)
