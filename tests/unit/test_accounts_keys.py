"""The signing key: RFC 7638 kid, config or database source, one key for every process."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select

from tests.unit.test_accounts_database import DatabaseFactory, databases, shared_key_pem
from ticketgate.accounts import tables
from ticketgate.accounts.keys import (
    LocalJwksSource,
    SigningKey,
    TokenSigner,
    generate_private_pem,
    jwk_thumbprint,
    parse_private_key,
    store_pem_if_absent,
)
from ticketgate.accounts.settings import AccountSettings
from ticketgate.envparse import ConfigError

__all__ = ["databases"]  # the fixture, re-exported for pytest

RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
    "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
    "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def _b64_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_kid_is_the_rfc7638_thumbprint_of_the_spec_example() -> None:
    public = rsa.RSAPublicNumbers(_b64_int("AQAB"), _b64_int(RFC7638_N)).public_key()
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_jwks_publishes_only_the_public_half_of_the_key() -> None:
    key = SigningKey.from_pem(shared_key_pem(), "config")
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "use", "alg", "kid", "n", "e"}
    assert (jwk["kty"], jwk["use"], jwk["alg"]) == ("RSA", "sig", "RS256")
    numbers = key.private_key.public_key().public_numbers()
    assert _b64_int(jwk["n"]) == numbers.n
    assert _b64_int(jwk["e"]) == numbers.e
    # PyJWT accepts it as the key for the same kid.
    parsed = jwt.PyJWK.from_dict(jwk)
    assert parsed.key_id == key.kid


@pytest.mark.parametrize(
    ("pem", "reason"),
    [
        (b"not a key", "not a PEM-encoded private key"),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "needs an RSA key",
        ),
        (generate_private_pem(1024), "at least 2048"),
        (
            rsa.generate_private_key(65537, 2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pass-phrase"),
            ),
            "encrypted",
        ),
    ],
)
def test_unusable_private_keys_are_refused_with_a_reason(pem: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_private_key(pem)


def test_configured_key_from_text_with_escaped_newlines_or_from_a_file(tmp_path: Path) -> None:
    pem = shared_key_pem()
    one_line = pem.decode().strip().replace("\n", "\\n")
    from_text = AccountSettings.from_env({"AUTH_SIGNING_KEY": one_line})
    assert from_text.signing_key_source == "AUTH_SIGNING_KEY"
    assert parse_private_key(from_text.signing_key_pem).private_numbers() == (
        parse_private_key(pem).private_numbers()
    )
    path = tmp_path / "signing.pem"
    path.write_bytes(pem)
    from_file = AccountSettings.from_env({"AUTH_SIGNING_KEY_FILE": str(path)})
    assert from_file.signing_key_pem == pem
    assert "PRIVATE KEY" not in repr(from_file)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"AUTH_SIGNING_KEY": "garbage"}, "AUTH_SIGNING_KEY: not a PEM-encoded private key"),
        ({"AUTH_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, "AUTH_SIGNING_KEY_FILE cannot be read"),
        ({"AUTH_SIGNING_KEY": "x", "AUTH_SIGNING_KEY_FILE": "y"}, "not both"),
    ],
)
def test_bad_key_configuration_stops_the_start(env: dict[str, str], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        AccountSettings.from_env(env)


async def _stored_key_count(factory: DatabaseFactory) -> int:
    database = factory.open()
    async with database.read() as conn:
        count: int = (
            await conn.execute(select(func.count()).select_from(tables.signing_keys))
        ).scalar_one()
    return count


async def test_configured_key_is_used_and_not_stored(databases: DatabaseFactory) -> None:
    database = databases.open()
    signer = TokenSigner(database, shared_key_pem())
    await database.create_all()
    key = await signer.load()
    assert key.source == "config"
    assert key.kid == jwk_thumbprint(parse_private_key(shared_key_pem()).public_key())
    assert await _stored_key_count(databases) == 0


async def test_generated_key_is_persisted_and_reused_by_the_next_start(
    databases: DatabaseFactory,
) -> None:
    first_db = databases.open()
    first = TokenSigner(first_db)
    await first_db.create_all()
    generated = await first.load()
    assert generated.source == "generated"
    assert generated.private_key.key_size == 2048
    await first_db.dispose()

    # A restart, or another pod: a new engine and signer on the same database.
    second_db = databases.open()
    second = TokenSigner(second_db)
    await second_db.create_all()
    reloaded = await second.load()
    assert reloaded.source == "database"
    assert not second.generated_candidate
    assert reloaded.kid == generated.kid
    assert await first.jwks() == await second.jwks()
    assert await _stored_key_count(databases) == 1


async def test_concurrent_first_starts_converge_on_one_key(databases: DatabaseFactory) -> None:
    instances = [databases.open() for _ in range(4)]
    signers = [TokenSigner(database) for database in instances]
    await asyncio.gather(*(database.create_all() for database in instances))
    keys = await asyncio.gather(*(signer.load() for signer in signers))
    assert len({key.kid for key in keys}) == 1
    assert sum(key.source == "generated" for key in keys) <= 1
    assert await _stored_key_count(databases) == 1


async def test_two_different_candidates_inserted_at_once_both_read_back_the_winner(
    databases: DatabaseFactory,
) -> None:
    """The race itself, made certain: two distinct keys offered concurrently."""
    first_db, second_db = databases.open(), databases.open()
    TokenSigner(first_db)  # registers the tables
    TokenSigner(second_db)
    await first_db.create_all()
    candidates = [shared_key_pem(), generate_private_pem()]
    winners = await asyncio.gather(
        store_pem_if_absent(first_db, candidates[0]),
        store_pem_if_absent(second_db, candidates[1]),
    )
    assert winners[0] == winners[1]
    assert winners[0] in candidates
    assert await _stored_key_count(databases) == 1


async def test_local_jwks_source_serves_the_key_that_signs(databases: DatabaseFactory) -> None:
    database = databases.open()
    signer = TokenSigner(database)
    await database.create_all()
    document = await LocalJwksSource(signer).fetch()
    token = await signer.sign({"sub": "usr_x", "aud": "a", "iss": "i", "exp": 2_000_000_000})
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    keyset = jwt.PyJWKSet.from_json(document.decode())
    claims = jwt.decode(
        token, keyset[header["kid"]].key, algorithms=["RS256"], audience="a", issuer="i"
    )
    assert claims["sub"] == "usr_x"
    assert [key["kid"] for key in json.loads(document)["keys"]] == [header["kid"]]
