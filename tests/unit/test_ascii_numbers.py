"""Numbers read from text outside the HTTP edge go through ticketgate.digits too: a
superscript digit passes `str.isdigit()` and then makes `int()` raise, which turned
`SERVER_PORT=²` into a start-up traceback instead of one configuration line."""

from __future__ import annotations

import re

import pytest

from ticketgate import webhooks
from ticketgate.config import load_settings
from ticketgate.envparse import ConfigError
from ticketgate.services.settings import split_address


@pytest.mark.parametrize("port", ["²", "٣٠٠٠", "+80", "8_000"])
def test_a_server_port_that_is_not_ascii_digits_is_a_configuration_error(port: str) -> None:
    with pytest.raises(ConfigError, match="SERVER_PORT must be an integer"):
        load_settings({"SERVER_ENVIRONMENT": "development", "SERVER_PORT": port})


@pytest.mark.parametrize("address", ["127.0.0.1:²", "127.0.0.1:٥٠٠٥١", "host:+1"])
def test_a_service_address_with_a_non_ascii_port_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match=re.escape(address)):  # its own refusal, not int()'s
        split_address(address)


def test_a_webhook_timestamp_in_other_digits_is_not_verified() -> None:
    secret, body, now = "s" * 32, b"{}", 1_700_000_000
    good = webhooks.sign(secret, body, now)
    assert webhooks.verify(secret, body, good, now=now)
    mac = good.partition(",")[2]
    forged = f"t={str(now).replace('1', '¹')},{mac}"
    assert not webhooks.verify(secret, body, forged, now=now)
