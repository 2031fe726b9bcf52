"""Every route of the real app is in the OpenAPI document, and every response code the
document promises can be produced over real HTTP.

RECIPES maps (method, path template, status) to a coroutine that provokes that status
against gateways built by `create_app` (Redis store on a throwaway redis-server; booking
backends on real gRPC servers with injectable faults). Adding a route means adding one
recipe per documented status: register it with `@recipe(METHOD, PATH, STATUS, ...)`, or extend
a family (GENERIC_*) when the status comes from a shared mechanism (auth, rate limit, an outage).
A documented status that cannot be produced is a documentation bug: fix the Route's
`responses`, not this table.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from tests.backends.booking_gateway import WEBHOOK_SECRET, signed
from tests.backends.fake_servers import FakeBackends, Fault, fake_backends
from tests.http_server import serve
from tests.integration.conftest import DEV, as_user, dev_env
from tests.redis_server import free_port
from ticketgate.app import create_app
from ticketgate.config import load_settings
from ticketgate.http.openapi import build_openapi
from ticketgate.proto.common.v1 import common_pb2


@dataclass
class Env:
    """The gateways a recipe may use; all share the queue secret, so tokens travel."""

    main: httpx.AsyncClient  # Redis and backends up, no rate limit
    limited: httpx.AsyncClient  # one request per second per client
    down: httpx.AsyncClient  # Redis and both backends unreachable
    fake: FakeBackends  # the backends of `main` and `limited`
    strict: httpx.AsyncClient  # QUEUE_AUTO_CREATE_EVENTS=false: only registered events


Recipe = Callable[[Env], Awaitable[httpx.Response]]
Key = tuple[str, str, int]
RECIPES: dict[Key, Recipe] = {}
_users = itertools.count(1)


def recipe(method: str, path: str, *statuses: int) -> Callable[[Recipe], Recipe]:
    def register(provoke: Recipe) -> Recipe:
        for status in statuses:
            key = (method, path, status)
            assert key not in RECIPES, f"two recipes for {key}"
            RECIPES[key] = provoke
        return provoke

    return register


def fresh_user() -> dict[str, str]:
    return as_user(f"oas-{next(_users)}")


def event() -> str:
    return f"evt_{uuid.uuid4().hex[:10]}"


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def error(name: str) -> Fault:
    return Fault(error=common_pb2.Error(code=common_pb2.ErrorCode.Value(name), message="no"))


# ------------------------------------------------------------------------ queue helpers

JOIN, STATUS, ENTER, LEAVE = (f"/api/v1/queue/{v}" for v in ("join", "status", "enter", "leave"))
RES = "/api/v1/reservations"
INTENT = "/api/v1/payment/intent"
WEBHOOK = "/api/v1/payment/webhook"
ADMIN = "/api/v1/admin/events"


async def joined(http: httpx.AsyncClient, who: dict[str, str], event_id: str = "") -> str:
    response = await http.post(JOIN, json={"event_id": event_id or event()}, headers=who)
    assert response.status_code == 202, response.text
    token: str = response.json()["waiting_token"]
    return token


async def admitted(env: Env, who: dict[str, str], event_id: str) -> str:
    token = await joined(env.main, who, event_id)
    entered = await env.main.post(ENTER, json={"waiting_token": token}, headers=who)
    assert entered.status_code == 200, entered.text
    reservation_token: str = entered.json()["reservation_token"]
    return reservation_token


async def create(env: Env, who: dict[str, str], token: str = "", **body: Any) -> httpx.Response:
    event_id = body.pop("event_id", None) or event()
    token = token or await admitted(env, who, event_id)
    payload = {"event_id": event_id, "reservation_token": token, "quantity": 1, **body}
    return await env.main.post(RES, json=payload, headers={**who, **key()})


async def held(env: Env) -> tuple[dict[str, str], dict[str, Any]]:
    who = fresh_user()
    response = await create(env, who)
    assert response.status_code == 201, response.text
    return who, response.json()


def webhook_body(status: str = "COMPLETED") -> bytes:
    return json.dumps(
        {
            "payment_intent_id": "pi_1",
            "reservation_id": "rsv_1",
            "user_id": "u",
            "status": status,
            "amount": 1,
            "currency": "KRW",
            "occurred_at": "2026-01-01T00:00:00Z",
        }
    ).encode()


async def post_webhook(http: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await http.post(WEBHOOK, content=body, headers=signed(body))


# ---------------------------------------------------------- one well-formed call per route
# The request a family recipe sends (to the limited gateway for 429, to the one whose
# dependencies are down for 503, with a backend fault for 502/504).


Who = dict[str, str]


async def _status(env: Env, http: httpx.AsyncClient, who: Who) -> httpx.Response:
    return await http.get(STATUS, params={"token": await joined(env.main, who)}, headers=who)


async def _enter(env: Env, http: httpx.AsyncClient, who: Who) -> httpx.Response:
    token = await joined(env.main, who)
    return await http.post(ENTER, json={"waiting_token": token}, headers=who)


async def _leave(method: str, env: Env, http: httpx.AsyncClient, who: Who) -> httpx.Response:
    token = await joined(env.main, who)
    return await http.request(method, LEAVE, params={"token": token}, headers=who)


async def _create(env: Env, http: httpx.AsyncClient, who: Who) -> httpx.Response:
    event_id = event()
    token = await admitted(env, who, event_id)
    payload = {"event_id": event_id, "reservation_token": token, "quantity": 1}
    return await http.post(RES, json=payload, headers={**who, **key()})


async def _intent(env: Env, http: httpx.AsyncClient, who: Who) -> httpx.Response:
    body = {"reservation_id": "rsv_1", "amount": 1, "currency": "KRW"}
    return await http.post(INTENT, json=body, headers={**who, **key()})


def _credentials() -> dict[str, str]:
    return {"username": f"oas{uuid.uuid4().hex[:12]}", "password": "correct horse battery"}


Call = Callable[[Env, httpx.AsyncClient, Who], Awaitable[httpx.Response]]
ADMIN_EVENT = f"{ADMIN}/evt_oas"
CALLS: dict[tuple[str, str], Call] = {
    ("POST", JOIN): lambda env, http, who: http.post(JOIN, json={"event_id": event()}, headers=who),
    ("GET", STATUS): _status,
    ("POST", ENTER): _enter,
    ("DELETE", LEAVE): lambda env, http, who: _leave("DELETE", env, http, who),
    ("POST", LEAVE): lambda env, http, who: _leave("POST", env, http, who),
    ("POST", "/api/v1/auth/register"): lambda env, http, who: http.post(
        "/api/v1/auth/register", json=_credentials()
    ),
    ("POST", "/api/v1/auth/login"): lambda env, http, who: http.post(
        "/api/v1/auth/login", json=_credentials()
    ),
    ("GET", "/.well-known/jwks.json"): lambda env, http, who: http.get("/.well-known/jwks.json"),
    ("POST", RES): _create,
    ("GET", f"{RES}/{{id}}"): lambda env, http, who: http.get(f"{RES}/rsv_1", headers=who),
    ("POST", f"{RES}/{{id}}/confirm"): lambda env, http, who: http.post(
        f"{RES}/rsv_1/confirm", headers={**who, **key()}
    ),
    ("POST", f"{RES}/{{id}}/cancel"): lambda env, http, who: http.post(
        f"{RES}/rsv_1/cancel", headers={**who, **key()}
    ),
    ("POST", INTENT): _intent,
    ("POST", WEBHOOK): lambda env, http, who: post_webhook(http, webhook_body()),
    ("GET", "/readyz"): lambda env, http, who: http.get("/readyz"),
    # The operator API (role admin: DEV is the development admin).
    ("GET", ADMIN): lambda env, http, who: http.get(ADMIN, headers=DEV),
    ("POST", ADMIN): lambda env, http, who: http.post(
        ADMIN, json={"event_id": event()}, headers=DEV
    ),
    ("GET", f"{ADMIN}/{{event_id}}"): lambda env, http, who: http.get(ADMIN_EVENT, headers=DEV),
    ("PATCH", f"{ADMIN}/{{event_id}}"): lambda env, http, who: http.patch(
        ADMIN_EVENT, json={"paused": False}, headers=DEV
    ),
    ("POST", f"{ADMIN}/{{event_id}}/sweep"): lambda env, http, who: http.post(
        f"{ADMIN_EVENT}/sweep", headers=DEV
    ),
}
ADMIN_ROUTES = [route for route in CALLS if route[1].startswith(ADMIN)]
# The backend method each booking route calls first (502/504 are injected there).
BACKEND_METHOD = {
    ("POST", RES): "CreateReservation",
    ("GET", f"{RES}/{{id}}"): "GetReservation",
    ("POST", f"{RES}/{{id}}/confirm"): "ConfirmReservation",
    ("POST", f"{RES}/{{id}}/cancel"): "CancelReservation",
    ("POST", INTENT): "GetReservation",
    ("POST", WEBHOOK): "GetPaymentStatus",
}
REQUIRES_AUTH = [
    ("POST", ENTER),
    ("POST", RES),
    ("GET", f"{RES}/{{id}}"),
    ("POST", f"{RES}/{{id}}/confirm"),
    ("POST", f"{RES}/{{id}}/cancel"),
    ("POST", INTENT),
]
RATE_LIMITED = [route for route in CALLS if route not in {("POST", WEBHOOK), ("GET", "/readyz")}]
DEPENDS_ON_AN_OUTAGE = [
    ("POST", JOIN),
    ("GET", STATUS),
    ("POST", ENTER),
    ("DELETE", LEAVE),
    ("POST", LEAVE),
    *BACKEND_METHOD,
    ("GET", "/readyz"),
    *ADMIN_ROUTES,
]


def _limited(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        who = fresh_user()  # the limit is per caller: the same one every time
        for _ in range(5):  # a burst of one: the second call within the second is refused
            response = await CALLS[route](env, env.limited, who)
            if response.status_code == 429:
                break
        return response

    return provoke


def _outage(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        return await CALLS[route](env, env.down, fresh_user())

    return provoke


def _fault(route: tuple[str, str], fault: Fault) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        env.fake.fail(BACKEND_METHOD[route], fault)
        return await CALLS[route](env, env.main, fresh_user())

    return provoke


def _unauthenticated(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        path = route[1].replace("{id}", "rsv_1").replace("{event_id}", "evt_oas")
        return await env.main.request(route[0], path)

    return provoke


def _as_admin(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        return await CALLS[route](env, env.main, DEV)

    return provoke


def _not_admin(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        path = route[1].replace("{event_id}", "evt_oas")
        return await env.main.request(route[0], path, headers=fresh_user())

    return provoke


def _not_json(route: tuple[str, str]) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        path = route[1].replace("{id}", "rsv_1").replace("{event_id}", "evt_oas")
        form = {"content-type": "application/x-www-form-urlencoded"}
        return await env.main.request(route[0], path, content=b"a=1", headers={**DEV, **form})

    return provoke


# Routes whose body must be JSON (415 otherwise); leave's POST takes sendBeacon's text/plain.
JSON_BODY = [
    ("POST", JOIN),
    ("POST", ENTER),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", RES),
    ("POST", f"{RES}/{{id}}/confirm"),
    ("POST", f"{RES}/{{id}}/cancel"),
    ("POST", INTENT),
    ("POST", WEBHOOK),
    ("POST", ADMIN),
    ("PATCH", f"{ADMIN}/{{event_id}}"),
]
for route in JSON_BODY:
    recipe(*route, 415)(_not_json(route))


def _slow_body(route: tuple[str, str]) -> Recipe:
    """Half a body, then silence: the main gateway's SERVER_BODY_TIMEOUT_SEC is short."""

    async def provoke(env: Env) -> httpx.Response:
        path = route[1].replace("{id}", "rsv_1").replace("{event_id}", "evt_oas")
        url = httpx.URL(str(env.main.base_url))
        assert url.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", url.port)
        writer.write(
            f"{route[0]} {path} HTTP/1.1\r\nHost: oas\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer dev-super-key-local-testing\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        return httpx.Response(int(answer.split(b" ")[1]), content=answer)

    return provoke


# Every route that reads a body (POST, PATCH, DELETE) answers 408 to one that stalls.
for route in {key[:2] for key in CALLS if key[0] in {"POST", "PATCH", "DELETE"}}:
    recipe(*route, 408)(_slow_body(route))
for route in RATE_LIMITED:
    recipe(*route, 429)(_limited(route))
for route in DEPENDS_ON_AN_OUTAGE:
    recipe(*route, 503)(_outage(route))
for route in BACKEND_METHOD:
    recipe(*route, 502)(_fault(route, Fault(status=grpc.StatusCode.INTERNAL)))
    recipe(*route, 504)(_fault(route, Fault(delay_sec=1.0)))  # the deadline is 300 ms
for route in [*REQUIRES_AUTH, *ADMIN_ROUTES]:
    recipe(*route, 401)(_unauthenticated(route))
for route in ADMIN_ROUTES:
    recipe(*route, 403)(_not_admin(route))
    recipe(*route, 201 if route == ("POST", ADMIN) else 200)(_as_admin(route))


# ------------------------------------------------------------------------ queue


@recipe("POST", JOIN, 202)
async def join_ok(env: Env) -> httpx.Response:
    return await env.main.post(JOIN, json={"event_id": event()})


@recipe("POST", JOIN, 400)
async def join_without_event(env: Env) -> httpx.Response:
    return await env.main.post(JOIN, json={})


@recipe("POST", JOIN, 401)
async def join_with_a_bad_token(env: Env) -> httpx.Response:
    return await env.main.post(
        JOIN, json={"event_id": event()}, headers={"Authorization": "Bearer not.a.jwt"}
    )


@recipe("POST", JOIN, 403)
async def join_as_someone_else(env: Env) -> httpx.Response:
    return await env.main.post(JOIN, json={"event_id": event(), "user_id": "other"}, headers=DEV)


@recipe("POST", JOIN, 404)
async def join_an_unregistered_event(env: Env) -> httpx.Response:
    return await env.strict.post(JOIN, json={"event_id": event()})


@recipe("POST", JOIN, 409)
async def join_twice(env: Env) -> httpx.Response:
    who, event_id = fresh_user(), event()
    await joined(env.main, who, event_id)
    return await env.main.post(JOIN, json={"event_id": event_id}, headers=who)


@recipe("GET", STATUS, 200)
async def status_ok(env: Env) -> httpx.Response:
    return await _status(env, env.main, fresh_user())


@recipe("GET", STATUS, 400)
async def status_without_token(env: Env) -> httpx.Response:
    return await env.main.get(STATUS)


@recipe("GET", STATUS, 404)
async def status_of_a_forged_token(env: Env) -> httpx.Response:
    return await env.main.get(STATUS, params={"token": "forged"})


@recipe("POST", ENTER, 200)
async def enter_ok(env: Env) -> httpx.Response:
    return await _enter(env, env.main, fresh_user())


@recipe("POST", ENTER, 400)
async def enter_without_body(env: Env) -> httpx.Response:
    return await env.main.post(ENTER, headers=fresh_user())


@recipe("POST", ENTER, 403)
async def enter_with_someone_elses_token(env: Env) -> httpx.Response:
    token = await joined(env.main, fresh_user())
    return await env.main.post(ENTER, json={"waiting_token": token}, headers=fresh_user())


@recipe("POST", ENTER, 404)
async def enter_with_a_forged_token(env: Env) -> httpx.Response:
    return await env.main.post(ENTER, json={"waiting_token": "forged"}, headers=fresh_user())


@recipe("POST", ENTER, 409)
async def enter_twice(env: Env) -> httpx.Response:
    who = fresh_user()
    token = await joined(env.main, who)
    await env.main.post(ENTER, json={"waiting_token": token}, headers=who)
    return await env.main.post(ENTER, json={"waiting_token": token}, headers=who)


@recipe("POST", ENTER, 410)
async def enter_after_leaving(env: Env) -> httpx.Response:
    who = fresh_user()
    token = await joined(env.main, who)
    await env.main.delete(LEAVE, params={"token": token})
    return await env.main.post(ENTER, json={"waiting_token": token}, headers=who)


for method in ("DELETE", "POST"):

    @recipe(method, LEAVE, 200)
    async def leave_ok(env: Env, method: str = method) -> httpx.Response:
        return await _leave(method, env, env.main, fresh_user())

    @recipe(method, LEAVE, 400)
    async def leave_without_token(env: Env, method: str = method) -> httpx.Response:
        return await env.main.request(method, LEAVE)

    @recipe(method, LEAVE, 404)
    async def leave_with_a_forged_token(env: Env, method: str = method) -> httpx.Response:
        return await env.main.request(method, LEAVE, params={"token": "forged"})


# ------------------------------------------------------------------------ accounts


@recipe("POST", "/api/v1/auth/register", 201)
async def register_ok(env: Env) -> httpx.Response:
    return await env.main.post("/api/v1/auth/register", json=_credentials())


@recipe("POST", "/api/v1/auth/register", 400)
async def register_without_password(env: Env) -> httpx.Response:
    return await env.main.post("/api/v1/auth/register", json={"username": "x"})


@recipe("POST", "/api/v1/auth/register", 409)
async def register_twice(env: Env) -> httpx.Response:
    credentials = _credentials()
    await env.main.post("/api/v1/auth/register", json=credentials)
    return await env.main.post("/api/v1/auth/register", json=credentials)


@recipe("POST", "/api/v1/auth/login", 200)
async def login_ok(env: Env) -> httpx.Response:
    credentials = _credentials()
    await env.main.post("/api/v1/auth/register", json=credentials)
    return await env.main.post("/api/v1/auth/login", json=credentials)


@recipe("POST", "/api/v1/auth/login", 400)
async def login_without_body(env: Env) -> httpx.Response:
    return await env.main.post(
        "/api/v1/auth/login", content=b"[]", headers={"content-type": "application/json"}
    )


@recipe("POST", "/api/v1/auth/login", 401)
async def login_unknown(env: Env) -> httpx.Response:
    return await env.main.post("/api/v1/auth/login", json=_credentials())


@recipe("GET", "/.well-known/jwks.json", 200)
async def jwks_ok(env: Env) -> httpx.Response:
    return await env.main.get("/.well-known/jwks.json")


# ------------------------------------------------------------------------ booking


@recipe("POST", RES, 201)
async def create_ok(env: Env) -> httpx.Response:
    return await create(env, fresh_user())


@recipe("POST", RES, 400)
async def create_without_event(env: Env) -> httpx.Response:
    return await env.main.post(RES, json={"quantity": 1}, headers={**fresh_user(), **key()})


@recipe("POST", RES, 403)
async def create_with_a_forged_token(env: Env) -> httpx.Response:
    return await create(env, fresh_user(), token="forged")


@recipe("POST", RES, 409)
async def create_a_taken_seat(env: Env) -> httpx.Response:
    env.fake.fail("CreateReservation", error("ERROR_CODE_INVENTORY_CONFLICT"))
    return await create(env, fresh_user())


@recipe("POST", RES, 410)
async def create_with_a_used_token(env: Env) -> httpx.Response:
    who, event_id = fresh_user(), event()
    token = await admitted(env, who, event_id)
    await create(env, who, token, event_id=event_id)
    return await create(env, who, token, event_id=event_id)


@recipe("GET", f"{RES}/{{id}}", 200)
async def get_ok(env: Env) -> httpx.Response:
    who, reservation = await held(env)
    return await env.main.get(f"{RES}/{reservation['reservation_id']}", headers=who)


@recipe("GET", f"{RES}/{{id}}", 404)
async def get_unknown(env: Env) -> httpx.Response:
    return await env.main.get(f"{RES}/rsv_nope", headers=fresh_user())


def _on_held(action: str, fault: str | None = None, body: Any = None) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        who, reservation = await held(env)
        if fault is not None:
            name = "ConfirmReservation" if action == "confirm" else "CancelReservation"
            env.fake.fail(name, error(fault))
        return await env.main.post(
            f"{RES}/{reservation['reservation_id']}/{action}",
            headers={**who, **key()},
            json=body,
        )

    return provoke


for action in ("confirm", "cancel"):
    path = f"{RES}/{{id}}/{action}"
    recipe("POST", path, 200)(_on_held(action))
    recipe("POST", path, 400)(_on_held(action, body={"unknown": 1}))
    recipe("POST", path, 403)(_on_held(action, "ERROR_CODE_FORBIDDEN"))
    recipe("POST", path, 404)(_on_held(action, "ERROR_CODE_NOT_FOUND"))
    recipe("POST", path, 409)(_on_held(action, "ERROR_CODE_FAILED_PRECONDITION"))
    recipe("POST", path, 410)(_on_held(action, "ERROR_CODE_RESERVATION_EXPIRED"))
recipe("POST", f"{RES}/{{id}}/confirm", 412)(_on_held("confirm", "ERROR_CODE_PAYMENT_NOT_APPROVED"))


def _intent_on_held(fault: str | None = None, amount_delta: int = 0) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        who, reservation = await held(env)
        if fault is not None:
            env.fake.fail("GetReservation", error(fault))
        body = {
            "reservation_id": reservation["reservation_id"],
            "amount": reservation["total_amount"] + amount_delta,
            "currency": reservation["currency"],
        }
        return await env.main.post(INTENT, json=body, headers={**who, **key()})

    return provoke


recipe("POST", INTENT, 200)(_intent_on_held())
recipe("POST", INTENT, 400)(_intent_on_held(amount_delta=1))
recipe("POST", INTENT, 404)(_intent_on_held("ERROR_CODE_NOT_FOUND"))
recipe("POST", INTENT, 409)(_intent_on_held("ERROR_CODE_FAILED_PRECONDITION"))
recipe("POST", INTENT, 410)(_intent_on_held("ERROR_CODE_RESERVATION_EXPIRED"))


@recipe("POST", WEBHOOK, 200)
async def webhook_ignored(env: Env) -> httpx.Response:
    return await post_webhook(env.main, webhook_body("FAILED"))


@recipe("POST", WEBHOOK, 400)
async def webhook_malformed(env: Env) -> httpx.Response:
    return await post_webhook(env.main, b'{"status": 1}')


@recipe("POST", WEBHOOK, 401)
async def webhook_unsigned(env: Env) -> httpx.Response:
    return await env.main.post(
        WEBHOOK, content=webhook_body(), headers={"content-type": "application/json"}
    )


def _webhook_fault(fault: str) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        env.fake.fail("GetPaymentStatus", error(fault))
        return await post_webhook(env.main, webhook_body())

    return provoke


recipe("POST", WEBHOOK, 404)(_webhook_fault("ERROR_CODE_NOT_FOUND"))
recipe("POST", WEBHOOK, 409)(_webhook_fault("ERROR_CODE_FAILED_PRECONDITION"))
recipe("POST", WEBHOOK, 410)(_webhook_fault("ERROR_CODE_RESERVATION_EXPIRED"))
recipe("POST", WEBHOOK, 412)(_webhook_fault("ERROR_CODE_PAYMENT_NOT_APPROVED"))


# ------------------------------------------------------------------------ admin

recipe("POST", ADMIN, 400)(lambda env: env.main.post(ADMIN, json={}, headers=DEV))


@recipe("POST", ADMIN, 409)
async def register_an_event_twice(env: Env) -> httpx.Response:
    body = {"event_id": event()}
    await env.main.post(ADMIN, json=body, headers=DEV)
    return await env.main.post(ADMIN, json=body, headers=DEV)


def _unregistered(method: str, path: str) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        body = {"paused": True} if method == "PATCH" else None
        return await env.strict.request(
            method, path.replace("{event_id}", event()), json=body, headers=DEV
        )

    return provoke


for method, path in (
    ("GET", f"{ADMIN}/{{event_id}}"),
    ("PATCH", f"{ADMIN}/{{event_id}}"),
    ("POST", f"{ADMIN}/{{event_id}}/sweep"),
):
    recipe(method, path, 404)(_unregistered(method, path))
recipe("GET", ADMIN, 400)(lambda env: env.main.get(ADMIN, params={"limit": "ten"}, headers=DEV))
recipe("GET", f"{ADMIN}/{{event_id}}", 400)(
    lambda env: env.main.get(f"{ADMIN}/bad%20id", headers=DEV)
)
recipe("PATCH", f"{ADMIN}/{{event_id}}", 400)(
    lambda env: env.main.patch(ADMIN_EVENT, json={"paused": "maybe"}, headers=DEV)
)
recipe("POST", f"{ADMIN}/{{event_id}}/sweep", 400)(
    lambda env: env.main.post(f"{ADMIN}/bad%20id/sweep", headers=DEV)
)


# ------------------------------------------------------------------------ system and docs


def _get(path: str, headers: dict[str, str] | None = None) -> Recipe:
    async def provoke(env: Env) -> httpx.Response:
        return await env.main.get(path, headers=headers)

    return provoke


for path in ("/healthz", "/readyz", "/version", "/openapi.json", "/metrics"):
    recipe("GET", path, 200)(_get(path))
recipe("GET", "/swagger/index.html", 200)(_get("/swagger/index.html"))
recipe("GET", "/swagger/index.html", 304)(_get("/swagger/index.html", {"If-None-Match": "*"}))
recipe("GET", "/swagger/{asset}", 200)(_get("/swagger/swagger-ui.css"))
recipe("GET", "/swagger/{asset}", 304)(_get("/swagger/swagger-ui.css", {"If-None-Match": "*"}))
recipe("GET", "/swagger/{asset}", 404)(_get("/swagger/LICENSE"))
recipe("GET", "/swagger", 307)(_get("/swagger"))
recipe("GET", "/swagger/", 307)(_get("/swagger/"))


# ------------------------------------------------------------------------ the tests


def _environment(redis: str, backends: str, **overrides: str) -> dict[str, str]:
    return dev_env(
        REDIS_ADDRESS=redis,
        BACKEND_RESERVATION_API_GRPC_ADDRESS=backends,
        BACKEND_PAYMENT_API_GRPC_ADDRESS=backends,
        BACKEND_RESERVATION_API_TIMEOUT="300ms",
        BACKEND_PAYMENT_API_TIMEOUT="300ms",
        BACKEND_BREAKER_FAILURES="10000",  # injected faults must not open the circuit
        PAYMENT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        **overrides,
    )


def documented(redis_address: str) -> set[Key]:
    app = create_app(load_settings(_environment(redis_address, "127.0.0.1:1")))
    spec = json.loads(build_openapi(app.routes))
    served = {(route.method, route.path) for route in app.routes}
    in_spec = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == in_spec, f"routes missing from the spec: {sorted(served - in_spec)}"
    return {
        (method.upper(), path, int(status))
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }


def test_every_documented_status_has_a_recipe_and_every_recipe_is_documented(
    redis_address: str,
) -> None:
    promised = documented(redis_address)
    missing = sorted(promised - set(RECIPES))
    assert not missing, "documented but no recipe in RECIPES (method, path, status): " + ", ".join(
        map(str, missing)
    )
    stale = sorted(set(RECIPES) - promised)
    assert not stale, "recipes for statuses the spec does not document: " + ", ".join(
        map(str, stale)
    )


@contextlib.asynccontextmanager
async def environments(redis_address: str) -> AsyncIterator[Env]:
    nobody = f"127.0.0.1:{free_port()}"
    async with (
        fake_backends() as fake,
        serve(
            create_app(
                load_settings(
                    _environment(redis_address, fake.address, SERVER_BODY_TIMEOUT_SEC="0.3")
                )
            )
        ) as main,
        serve(
            create_app(
                load_settings(
                    _environment(
                        redis_address,
                        fake.address,
                        RATE_LIMIT_ENABLED="true",
                        RATE_LIMIT_RPS="1",
                        RATE_LIMIT_BURST="1",
                        RATE_LIMIT_AUTH_RPS="1",
                        RATE_LIMIT_AUTH_BURST="1",
                    )
                )
            )
        ) as limited,
        serve(create_app(load_settings(_environment(nobody, nobody)))) as down,
        serve(
            create_app(
                load_settings(
                    _environment(redis_address, fake.address, QUEUE_AUTO_CREATE_EVENTS="false")
                )
            )
        ) as strict,
    ):
        yield Env(main, limited, down, fake, strict)


async def test_every_documented_status_is_reachable_over_http(redis_address: str) -> None:
    promised = documented(redis_address)
    failures: list[str] = []
    async with environments(redis_address) as env:
        for key_ in sorted(promised & set(RECIPES)):
            env.fake.heal()
            try:
                response = await RECIPES[key_](env)
            except Exception as exc:  # a recipe's own setup failing is a failure too
                failures.append(f"{key_}: recipe raised {exc!r}")
                continue
            finally:
                env.fake.heal()
            if response.status_code != key_[2]:
                failures.append(f"{key_}: got {response.status_code} {response.text[:160]}")
    assert not failures, "documented statuses not produced:\n" + "\n".join(failures)


# ------------------------------------------------------------------------ front door


def _hashed_asset(headers: dict[str, str] | None = None) -> Recipe:
    """GET the stylesheet under the hashed name the landing page names."""

    async def provoke(env: Env) -> httpx.Response:
        page = (await env.main.get("/")).text
        start = page.index("assets/style.")
        name = page[start : page.index('"', start)]
        return await env.main.get(f"/{name}", headers=headers)

    return provoke


for path in ("/", "/console", "/wait/evt_oas", "/ticketgate.js"):
    template = "/wait/{event_id}" if path.startswith("/wait/") else path
    recipe("GET", template, 200)(_get(path))
    recipe("GET", template, 304)(_get(path, {"If-None-Match": "*"}))
recipe("GET", "/wait/{event_id}", 400)(_get("/wait/evt_1?return_url=https%3A%2F%2Fevil.example"))
recipe("GET", "/", 503)(lambda env: env.down.get("/"))
recipe("GET", "/assets/{asset}", 200)(_hashed_asset())
recipe("GET", "/assets/{asset}", 304)(_hashed_asset({"If-None-Match": "*"}))
recipe("GET", "/assets/{asset}", 404)(_get("/assets/style.css"))
