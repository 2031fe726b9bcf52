"""Property tests: whatever a client throws at the queue routes, the answer is never a 5xx.

Random bytes, random JSON, JSON shaped like the real bodies with values of every type,
random tokens in the query and random credential headers. Derandomized, so a run is
repeatable; a failure prints the shrunk input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import (
    DEV,
    ENTER,
    JOIN,
    LEAVE,
    STATUS,
    dev_env,
    threaded_gateway,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=80)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(["event_id", "user_id", "waiting_token", "token", "extra"])
shaped_bodies = st.dictionaries(field_names, json_values | st.text(max_size=600), max_size=4)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
content_types = st.sampled_from(
    ["application/json", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", ""]
)
body_routes = st.sampled_from([JOIN, ENTER, LEAVE])
# Well-formed JSON around arbitrary bytes: invalid UTF-8 inside a string, control characters.
templated_bodies = st.builds(
    lambda field, junk: b'{"' + field.encode() + b'": "' + junk + b'"}',
    field_names,
    st.binary(max_size=80),
)
query_pairs = st.lists(
    st.tuples(st.sampled_from(["token", "t", "x", ""]), st.text(max_size=40)), max_size=40
)


@pytest.fixture(scope="module", params=["memory", "redis"])
def http(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    env = dev_env(SERVER_MAX_BODY_BYTES="512")
    if request.param == "redis":
        env["REDIS_ADDRESS"] = request.getfixturevalue("redis_address")
    with threaded_gateway(env) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client


def assert_handled(response: httpx.Response) -> None:
    """A client mistake: any 2xx/4xx, and every error in the envelope with a trace id."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"]
        assert len(error["trace_id"]) == 32


@FUZZ
@given(path=body_routes, body=st.binary(max_size=700), content_type=content_types)
def test_random_bytes_never_cause_a_server_error(
    http: httpx.Client, path: str, body: bytes, content_type: str
) -> None:
    headers = {**DEV, "content-type": content_type} if content_type else DEV
    assert_handled(http.post(path, content=body, headers=headers))


@FUZZ
@given(path=body_routes, body=templated_bodies)
def test_json_with_arbitrary_bytes_inside_never_causes_a_server_error(
    http: httpx.Client, path: str, body: bytes
) -> None:
    assert_handled(http.post(path, content=body, headers=DEV))


@FUZZ
@given(path=body_routes, value=json_values)
def test_random_json_never_causes_a_server_error(http: httpx.Client, path: str, value: Any) -> None:
    assert_handled(http.post(path, content=json.dumps(value).encode(), headers=DEV))


@FUZZ
@given(path=body_routes, body=shaped_bodies)
def test_bodies_shaped_like_the_real_ones_never_cause_a_server_error(
    http: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    assert_handled(http.post(path, json=body, headers=DEV))


@FUZZ
@given(
    token=st.text(max_size=600) | st.binary(max_size=300).map(lambda b: b.hex()),
    method=st.sampled_from(["GET", "DELETE", "POST"]),
)
def test_random_query_tokens_never_cause_a_server_error(
    http: httpx.Client, token: str, method: str
) -> None:
    path = STATUS if method == "GET" else LEAVE
    assert_handled(http.request(method, path, params={"token": token}))


@FUZZ
@given(pairs=query_pairs, method=st.sampled_from(["GET", "DELETE", "POST"]))
def test_random_query_strings_never_cause_a_server_error(
    http: httpx.Client, pairs: list[tuple[str, str]], method: str
) -> None:
    path = STATUS if method == "GET" else LEAVE
    assert_handled(http.request(method, path, params=tuple(pairs)))


@FUZZ
@given(
    authorization=header_text,
    idempotency_key=header_text,
    request_id=header_text,
    traceparent=header_text,
    path=body_routes,
)
def test_random_headers_never_cause_a_server_error(
    http: httpx.Client,
    authorization: str,
    idempotency_key: str,
    request_id: str,
    traceparent: str,
    path: str,
) -> None:
    headers = {
        "Authorization": authorization.strip(),
        "Idempotency-Key": idempotency_key.strip(),
        "X-Request-ID": request_id.strip(),
        "traceparent": traceparent.strip(),
    }
    response = http.post(path, json={"event_id": "evt_fuzz", "waiting_token": "x"}, headers=headers)
    assert_handled(response)
