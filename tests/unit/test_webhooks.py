"""Webhook signatures: the exact header format, and everything a forger might try."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ticketgate.webhooks import sign, verify

SECRET = b"whsec-0123456789abcdef0123456789abcdef"
BODY = b'{"payment_intent_id":"pi_1","status":"COMPLETED"}'
NOW = 1_760_000_000.7


def test_the_header_is_t_and_a_hex_hmac_of_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, NOW)
    expected = hmac.new(SECRET, b"1760000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1760000000,v1={expected}"
    assert verify(SECRET, BODY, header, NOW)
    assert verify(SECRET.decode(), BODY, header, NOW)  # str and bytes secrets agree


def test_a_changed_body_or_another_secret_does_not_verify() -> None:
    header = sign(SECRET, BODY, NOW)
    assert not verify(SECRET, BODY.replace(b"COMPLETED", b"FAILED"), header, NOW)
    assert not verify(SECRET, BODY + b"\n", header, NOW)
    assert not verify(b"another-secret-another-secret-another", BODY, header, NOW)


def test_the_timestamp_is_signed_and_bounded_by_the_tolerance() -> None:
    header = sign(SECRET, BODY, NOW)
    signed_at = int(NOW)
    assert verify(SECRET, BODY, header, signed_at + 300)
    assert verify(SECRET, BODY, header, signed_at - 300)  # a sender clock slightly ahead
    assert not verify(SECRET, BODY, header, signed_at + 300.5)
    assert not verify(SECRET, BODY, header, signed_at - 301)
    assert verify(SECRET, BODY, header, NOW + 3_000, tolerance_sec=3_600)
    # Moving t forward to dodge the window breaks the MAC.
    signature = header.split(",v1=")[1]
    assert not verify(SECRET, BODY, f"t={int(NOW) + 1000},v1={signature}", NOW + 1000)


def test_any_of_several_signatures_may_match() -> None:
    good = sign(SECRET, BODY, NOW).split(",")[1]
    stale = sign(b"old-secret-old-secret-old-secret-old", BODY, NOW).split(",")[1]
    assert verify(SECRET, BODY, f"t={int(NOW)},{stale},{good}", NOW)
    assert verify(SECRET, BODY, f"t={int(NOW)}, {good.upper().replace('V1=', 'v1=')}", NOW)
    assert not verify(SECRET, BODY, f"t={int(NOW)},{stale}", NOW)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "v1=abc",
        "t=1760000000",
        "t=,v1=abc",
        "t=-1760000000,v1=abc",
        "t=1760000000.5,v1=abc",
        "t=1760000000,t=1760000000,v1=abc",
        "t=１７６０,v1=abc",
        "t=1760000000,v1=ü",
        "t=1760000000,v1",
        "t=1760000000," + "v1=00," * 500,
    ],
)
def test_malformed_headers_are_rejected_without_raising(header: str | None) -> None:
    assert verify(SECRET, BODY, header, NOW) is False


def test_an_empty_secret_never_signs_or_verifies() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign(b"", BODY, NOW)
    unkeyed = "t=1760000000,v1=" + hmac.new(b"", b"1760000000." + BODY, hashlib.sha256).hexdigest()
    assert not verify(b"", BODY, unkeyed, NOW)
