"""Waiting and reservation tokens: signed, stateless, unforgeable, not interchangeable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.waitingroom.tokens import (
    MAX_TOKEN_LENGTH,
    InvalidToken,
    KeyedSha256,
    ReservationClaims,
    TokenSigner,
    WaitingClaims,
)

SECRET = b"unit-secret-unit-secret-unit-secret!"
SIGNER = TokenSigner(SECRET)
WAITING = WaitingClaims(event_id="evt_42", seq=1234, joined_ms=1_700_000_000_123, user_id="ann")
RESERVATION = ReservationClaims(event_id="evt_42", seq=1234, user_id="ann", expires_ms=2**41)
TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ !é"

event_ids = st.text(string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=64)
user_ids = st.text(max_size=128)


@given(event_ids, st.integers(1, 2**53), st.integers(0, 2**45), user_ids)
def test_waiting_token_round_trips(event_id: str, seq: int, joined: int, user: str) -> None:
    claims = WaitingClaims(event_id, seq, joined, user)
    token = SIGNER.sign_waiting(claims)
    assert token.startswith("wt1.")
    assert len(token) <= MAX_TOKEN_LENGTH
    assert SIGNER.verify_waiting(token) == claims


@given(event_ids, st.integers(1, 2**53), user_ids, st.integers(0, 2**45))
def test_reservation_token_round_trips(event_id: str, seq: int, user: str, expires: int) -> None:
    claims = ReservationClaims(event_id, seq, user, expires)
    token = SIGNER.sign_reservation(claims)
    assert token.startswith("rt1.")
    assert SIGNER.verify_reservation(token) == claims


def test_tokens_are_url_safe() -> None:
    token = SIGNER.sign_waiting(WAITING)
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")


@pytest.mark.parametrize("kind", ["waiting", "reservation"])
def test_changing_any_character_invalidates_the_token(kind: str) -> None:
    verify: Callable[[str], object]
    if kind == "waiting":
        token, verify = SIGNER.sign_waiting(WAITING), SIGNER.verify_waiting
    else:
        token, verify = SIGNER.sign_reservation(RESERVATION), SIGNER.verify_reservation
    accepted = []
    for index, original in enumerate(token):
        for replacement in TOKEN_CHARS:
            if replacement == original:
                continue
            tampered = token[:index] + replacement + token[index + 1 :]
            try:
                verify(tampered)
            except InvalidToken:
                continue
            accepted.append(tampered)
    assert accepted == [], "only the exact issued string verifies"


@pytest.mark.parametrize("extra", ["=", "==", "A", ".", " ", "\n", "é"])
def test_inserting_or_appending_a_character_invalidates_the_token(extra: str) -> None:
    token = SIGNER.sign_waiting(WAITING)
    for index in range(len(token) + 1):
        with pytest.raises(InvalidToken):
            SIGNER.verify_waiting(token[:index] + extra + token[index:])


def test_removing_any_character_invalidates_the_token() -> None:
    token = SIGNER.sign_waiting(WAITING)
    for index in range(len(token)):
        with pytest.raises(InvalidToken):
            SIGNER.verify_waiting(token[:index] + token[index + 1 :])


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
def test_the_prepared_hmac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    """Keys shorter and longer than SHA-256's 64-byte block (a long one is hashed first)."""
    assert KeyedSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


@pytest.mark.parametrize("length", [1, 32, 63, 64, 65, 128])
def test_the_prepared_hmac_matches_at_the_block_size_edges(length: int) -> None:
    key = bytes(range(256))[:length]
    for message in (b"", b"wt1.", b"x" * 1000):
        assert KeyedSha256(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


@given(st.binary(max_size=100), st.binary(max_size=300), st.binary(max_size=20))
def test_a_prefixed_hmac_is_the_hmac_of_prefix_and_message(
    key: bytes, message: bytes, prefix: bytes
) -> None:
    keyed = KeyedSha256(key or b"k")
    expected = hmac.new(key or b"k", prefix + message, hashlib.sha256).digest()
    assert keyed.prefixed(prefix).digest(message) == expected
    assert keyed.digest(prefix + message) == expected, "the unprefixed state is left as it was"


def test_tokens_issued_before_the_prepared_hmac_still_verify() -> None:
    """A waiting token as the first release signed it (`hmac.new`), byte for byte: fans
    holding one keep their place across an upgrade."""
    payload = msgspec.msgpack.encode(WAITING)
    mac = hmac.new(SECRET, b"wt1." + payload, hashlib.sha256).digest()[:16]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    token = f"wt1.{b64(payload)}.{b64(mac)}"
    assert SIGNER.sign_waiting(WAITING) == token
    assert SIGNER.verify_waiting(token) == WAITING


def test_another_secret_does_not_verify() -> None:
    token = TokenSigner(b"x" * 32).sign_waiting(WAITING)
    with pytest.raises(InvalidToken, match="signature"):
        SIGNER.verify_waiting(token)
    assert TokenSigner(b"x" * 32).verify_waiting(token) == WAITING


def test_a_reservation_token_is_not_a_waiting_token() -> None:
    reservation = SIGNER.sign_reservation(RESERVATION)
    with pytest.raises(InvalidToken):
        SIGNER.verify_waiting(reservation)
    # Swapping the prefix does not help: the prefix is part of what the MAC covers.
    with pytest.raises(InvalidToken, match="signature"):
        SIGNER.verify_waiting("wt1." + reservation.removeprefix("rt1."))


def test_a_waiting_token_is_not_a_reservation_token() -> None:
    waiting = SIGNER.sign_waiting(WAITING)
    with pytest.raises(InvalidToken):
        SIGNER.verify_reservation(waiting)
    with pytest.raises(InvalidToken, match="signature"):
        SIGNER.verify_reservation("rt1." + waiting.removeprefix("wt1."))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "wt1",
        "wt1.",
        "wt1..",
        "wt1.abc",
        "wt1.abc.",
        "wt1.a.b",
        "wt1.!!!!.AAAA",
        "WT1.AAAA.AAAA",
        "wt1.AAAA.AAAA",
        "wt1.é.AAAA",
        "wt1." + "A" * MAX_TOKEN_LENGTH + ".AAAA",
    ],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    with pytest.raises(InvalidToken):
        SIGNER.verify_waiting(token)


def test_a_signed_payload_of_the_wrong_shape_is_invalid() -> None:
    """Even a correctly signed payload must decode to the claims it claims to be."""
    wrong_shape = SIGNER._sign("wt1.", RESERVATION)  # four fields of other types, valid MAC
    with pytest.raises(InvalidToken, match="malformed"):
        SIGNER.verify_waiting(wrong_shape)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        TokenSigner(b"")
