"""NIST SP 800-63B passwords (issue 10 item 15): the probes that were accepted before."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_accounts_database import FAST_HASHING, database_factory, shared_key_pem
from ticketgate.accounts.keys import TokenSigner
from ticketgate.accounts.password_policy import common_passwords, password_problem
from ticketgate.accounts.service import AccountService, InvalidAccountInput


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("12345678", "too common"),
        ("password", "too common"),
        ("Password", "too common"),  # case does not make a listed password uncommon
        ("qwertyuiop", "too common"),
        ("iloveyou", "too common"),
        (" " * 8, "one repeated character"),
        ("a" * 12, "one repeated character"),
        ("\x00" * 8, "control characters"),
        ("correct\thorse", "control characters"),
        ("correct horse\n", "control characters"),
        ("abc\x7fdefgh", "control characters"),
        ("short", "8-256 characters"),
        ("x" * 257, "8-256 characters"),
        ("alice.smith", "the username"),
        ("ALICE.SMITH", "the username"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, reason: str) -> None:
    problem = password_problem(password, "alice.smith")
    assert problem is not None
    assert reason in problem
    assert problem.startswith("password ")  # a reason, never the password quoted back
    assert "'" not in problem
    assert '"' not in problem


@pytest.mark.parametrize(
    "password",
    [
        "correct horse 42",
        "Tr0ub4dor&3x",
        "비밀번호는길어야해요",  # Hangul: 10 code points
        "пароль-надёжный",
        "🎫🎫🎤🎸🎹🥁🎻🎺",  # 8 emoji
        "a b c d e f",  # spaces inside are fine
    ],
)
def test_long_unicode_and_spaced_passwords_are_accepted(password: str) -> None:
    assert password_problem(password, "alice.smith") is None


def test_the_blocklist_ships_in_the_package() -> None:
    listed = common_passwords()
    assert len(listed) > 8_000
    assert all(len(entry) >= 8 and entry == entry.lower() for entry in listed)


async def test_registration_refuses_a_common_password(tmp_path: Path) -> None:
    async with database_factory("sqlite", tmp_path) as factory:
        database = factory.open()
        service = AccountService(database, TokenSigner(database, shared_key_pem()), FAST_HASHING)
        with pytest.raises(InvalidAccountInput, match="too common"):
            await service.register("bob", "12345678")
        with pytest.raises(InvalidAccountInput, match="control characters"):
            await service.register("bob", "\x00" * 8)
        user = await service.register("bob", "비밀번호는길어야해요")
        assert user.username == "bob"
