"""Request.query_value: parse_qsl's answer, with the unquote-free fast path taken when it can."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketgate.edge.errors import ApiError
from ticketgate.edge.request import Request

# The characters that matter to the parser, and a few that do not.
queries = st.text(alphabet="ab=&%+2F;é ", max_size=40)
names = st.sampled_from(["a", "b", "", "ab", "a b", "é", "/"])


def request(query: str) -> Request:
    return Request("GET", "/", query.encode("latin-1", "replace"), {}, "trace")


def reference(query: bytes, name: str) -> str | None:
    """What the gateway answered when every query went through parse_qsl."""
    if not query:
        return None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=20)
    return next((value for key, value in pairs if key == name), None)


@given(queries, names)
def test_a_parameter_is_what_parse_qsl_makes_of_it(query: str, name: str) -> None:
    req = request(query)
    if query.count("&") >= 20:
        with pytest.raises(ApiError, match="too many query parameters"):
            req.query_value(name)
    else:
        assert req.query_value(name) == reference(req.query, name)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("token=wt1.abc.def", "wt1.abc.def"),  # the status poll: no unquoting needed
        ("token=a%2Bb", "a+b"),
        ("token=a+b", "a b"),
        ("x=1&token=&token=2", ""),  # present but blank is "", the first one wins
        ("token", ""),
        ("x=1", None),
        ("&&token=t&&", "t"),
    ],
)
def test_examples(query: str, expected: str | None) -> None:
    assert request(query).query_value("token") == expected


def test_more_than_twenty_fields_is_a_client_mistake() -> None:
    assert request("&".join(["a=1"] * 20)).query_value("a") == "1"
    with pytest.raises(ApiError, match="too many query parameters") as refused:
        request("&".join(["a=1"] * 21)).query_value("a")
    assert refused.value.status == 400
