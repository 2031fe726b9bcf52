"""The front door in real Chromium: the waiting page, the embeddable client across origins,
and the operator console, against a gateway on Redis.

The test plays the crowd and the operator through the HTTP API (fans ahead join and are let
in, the event is paused, closed or sold out) while the browser plays one fan or the operator.
"""

from __future__ import annotations

import functools
import time
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from tests.browser.conftest import (
    DEV,
    axe_violations,
    screenshot,
    text_of,
    user,
    wait_for,
)
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVENTS = "/api/v1/admin/events"


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def fans_ahead(api: httpx.Client, event_id: str, count: int) -> list[tuple[str, dict[str, str]]]:
    """`count` fans who join before the browser's fan: (waiting token, their auth headers)."""
    fans = []
    for n in range(count):
        headers = {"Authorization": f"Bearer load-test-bypass-token-{event_id}-{n}"}
        joined = api.post("/api/v1/queue/join", json={"event_id": event_id}, headers=headers)
        assert joined.status_code == 202, joined.text
        fans.append((joined.json()["waiting_token"], headers))
    return fans


def admit(api: httpx.Client, fan: tuple[str, dict[str, str]]) -> None:
    token, headers = fan
    entered = api.post("/api/v1/queue/enter", json={"waiting_token": token}, headers=headers)
    assert entered.status_code == 200, entered.text


def patch_event(api: httpx.Client, event_id: str, **fields: Any) -> dict[str, Any]:
    answer = api.patch(f"{EVENTS}/{event_id}", json=fields, headers=DEV)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def waiting(api: httpx.Client, event_id: str) -> int:
    answer = api.get(f"{EVENTS}/{event_id}", headers=DEV)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["waiting"])


def open_and_sign_in(
    driver: Any, gateway: str, api: httpx.Client, event_id: str, query: str = ""
) -> None:
    """The fan opens the waiting page, signs in with a fresh account and is placed in line."""
    sign_in(driver, gateway, api, event_id, query)
    wait_for(driver, lambda d: text_of(d, "position") not in {"", "–"})


def sign_in(
    driver: Any,
    gateway: str,
    api: httpx.Client,
    event_id: str,
    query: str = "",
    account: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """Open the waiting page and sign in (a fresh account unless one is given)."""
    name, password = account or user(api)
    driver.get(f"{gateway}/wait/{event_id}{query}")
    wait_for(driver, lambda d: by_id(d, "signin").is_displayed())
    by_id(driver, "username").send_keys(name)
    by_id(driver, "password").send_keys(password)
    by_id(driver, "signin-button").click()
    return name, password


def open_and_sign_in_expecting_end(
    driver: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    """As open_and_sign_in, for a fan the door turns away (the page ends, no place given)."""
    sign_in(driver, gateway, api, event_id)
    wait_for(driver, lambda d: by_id(d, "ended").is_displayed())


def position(driver: Any) -> str:
    return text_of(driver, "position")


def shows_position(driver: Any, expected: str) -> bool:
    return position(driver) == expected


def test_a_fan_joins_and_sees_position_eta_and_progress(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans = fans_ahead(api, event_id, 3)
    open_and_sign_in(tab, gateway, api, event_id)
    assert position(tab) == "4"
    assert text_of(tab, "ahead") == "3 people ahead of you"
    assert text_of(tab, "eta") not in {"", "–"}
    assert "Last update" in text_of(tab, "updated")
    assert text_of(tab, "state") == "Admissions are open."
    assert by_id(tab, "progress").get_attribute("value") == "0"

    # Fans ahead are let in one by one: the page follows, and the bar fills.
    for remaining in ("3", "2"):
        admit(api, fans.pop(0))
        wait_for(tab, functools.partial(shows_position, expected=remaining))
    assert text_of(tab, "ahead") == "1 person ahead of you"
    assert by_id(tab, "progress").get_attribute("value") == "67"  # 2 of 3 ahead gone
    assert "Your place in line: 2." in text_of(tab, "live")
    screenshot(tab, "waiting-en")  # docs/waiting-room.png is a copy of it


def test_admission_redirects_to_return_url_with_the_token_in_the_fragment(
    tab: Any, gateway: str, site: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans = fans_ahead(api, event_id, 1)
    back = f"{site}/return.html?show=42"
    open_and_sign_in(tab, gateway, api, event_id, f"?return_url={quote(back, safe='')}")
    assert position(tab) == "2"
    admit(api, fans[0])
    wait_for(tab, lambda d: d.current_url.startswith(site))
    url = urlsplit(tab.current_url)
    assert f"{url.scheme}://{url.netloc}{url.path}?{url.query}" == back  # query untouched
    fragment = parse_qs(url.fragment)
    assert fragment["reservation_token"][0].startswith("rt1.")
    assert fragment["event_id"] == [event_id]
    assert "reservation_token" not in url.query


def test_the_admitted_state_without_a_return_url(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    sign_in(tab, gateway, api, event_id)  # first in line: straight through the door
    wait_for(tab, lambda d: by_id(d, "admitted").is_displayed())
    assert text_of(tab, "heading") == "You are in!"
    assert text_of(tab, "reservation-token").startswith("rt1.")
    screenshot(tab, "admitted-en")
    # Coming back for a second admission (still signed in): one admission per person.
    tab.refresh()
    wait_for(tab, lambda d: by_id(d, "ended").is_displayed())
    assert text_of(tab, "ended-body").startswith("You have already been let in")


def test_a_return_url_off_the_allowed_origins_is_refused(gateway: str, api: httpx.Client) -> None:
    for bad in ("https://evil.example/x", "javascript:alert(1)", "//evil.example/"):
        answer = api.get(f"/wait/evt_1?return_url={quote(bad, safe='')}")
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["code"] == "INVALID_REQUEST"


def test_reload_keeps_the_place(tab: Any, gateway: str, api: httpx.Client, event_id: str) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 2)
    open_and_sign_in(tab, gateway, api, event_id)
    assert position(tab) == "3"
    assert waiting(api, event_id) == 3
    tab.refresh()
    wait_for(tab, lambda d: position(d) == "3")
    assert waiting(api, event_id) == 3  # the same place, not a second one


def test_one_person_holds_one_place_across_tabs(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    account = sign_in(tab, gateway, api, event_id)
    wait_for(tab, lambda d: position(d) == "2")
    first = tab.current_window_handle
    tab.switch_to.new_window("tab")  # a new tab: its own sessionStorage, no place kept
    try:
        sign_in(tab, gateway, api, event_id, account=account)
        wait_for(tab, lambda d: position(d) == "2")  # the same place, handed back
        assert waiting(api, event_id) == 2
    finally:
        tab.close()
        tab.switch_to.window(first)


def test_leave_frees_the_place(tab: Any, gateway: str, api: httpx.Client, event_id: str) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    open_and_sign_in(tab, gateway, api, event_id)
    assert waiting(api, event_id) == 2
    by_id(tab, "leave").click()
    wait_for(tab, lambda d: by_id(d, "ended").is_displayed())
    assert "You left the queue" in text_of(tab, "ended-body")
    deadline = time.monotonic() + 5
    while waiting(api, event_id) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting(api, event_id) == 1
    # Joining again is a new join (not a replay of the first one's Idempotency-Key).
    by_id(tab, "rejoin").click()
    wait_for(tab, lambda d: position(d) == "2")
    assert waiting(api, event_id) == 2


def test_a_503_period_shows_reconnecting_and_recovers(
    tab: Any, gateway: str, api: httpx.Client, event_id: str, redis_server: RedisServer
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    open_and_sign_in(tab, gateway, api, event_id)
    redis_server.pause()  # Redis hangs: status answers a fast 503
    try:
        wait_for(tab, lambda d: "Reconnecting" in text_of(d, "notice"), timeout=10)
        assert position(tab) == "2"  # the place is still shown
    finally:
        redis_server.resume()
    wait_for(tab, lambda d: text_of(d, "notice") == "", timeout=20)
    assert position(tab) == "2"


def test_the_korean_page_renders_korean_text(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 2)
    open_and_sign_in(tab, gateway, api, event_id)
    by_id(tab, "main")  # the English page first, then the switch (the place is kept)
    from selenium.webdriver.common.by import By

    tab.find_element(By.CSS_SELECTOR, 'a[hreflang="ko"]').click()
    wait_for(tab, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ko")
    wait_for(tab, lambda d: position(d) == "3")
    assert text_of(tab, "heading") == "대기열에 있습니다"
    assert text_of(tab, "ahead") == "내 앞에 2명"
    assert "마지막 업데이트" in text_of(tab, "updated")
    screenshot(tab, "waiting-ko")


def test_accept_language_picks_the_catalogue(gateway: str, api: httpx.Client) -> None:
    korean = api.get("/wait/evt_1", headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.8"})
    assert '<html lang="ko">' in korean.text
    assert "대기실" in korean.text
    english = api.get("/wait/evt_1", headers={"Accept-Language": "fr;q=1, en;q=0.5, ko;q=0.4"})
    assert '<html lang="en">' in english.text
    switched = api.get("/wait/evt_1?lang=en", headers={"Accept-Language": "ko"})
    assert '<html lang="en">' in switched.text


def test_paused_and_closed_are_said_in_words(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    open_and_sign_in(tab, gateway, api, event_id)
    patch_event(api, event_id, paused=True)
    wait_for(tab, lambda d: "paused" in text_of(d, "state"))
    assert text_of(tab, "state") == "Admissions are paused for a moment. You keep your place."
    assert text_of(tab, "eta") == "On hold while paused"
    patch_event(api, event_id, paused=False, closed=True)
    wait_for(tab, lambda d: "closed to newcomers" in text_of(d, "state"))
    assert position(tab) == "2"
    assert text_of(tab, "eta") != "On hold while paused"


def test_a_closed_queue_says_so_to_a_newcomer(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, closed=True)
    open_and_sign_in_expecting_end(tab, gateway, api, event_id)
    assert text_of(tab, "ended-body") == "This queue is closed. No new places are given out."
    assert not by_id(tab, "rejoin").is_displayed()
    assert waiting(api, event_id) == 0


def test_reduced_motion_is_respected(tab: Any, gateway: str) -> None:
    script = "return getComputedStyle(document.getElementById('position')).transitionDuration"
    tab.get(f"{gateway}/wait/evt_motion")
    assert tab.execute_script(script) == "0.6s"
    features = [{"name": "prefers-reduced-motion", "value": "reduce"}]
    tab.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
    try:
        assert tab.execute_script(script) == "0s"
    finally:
        tab.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_sold_out_is_said_and_polling_stops(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    open_and_sign_in(tab, gateway, api, event_id)
    patch_event(api, event_id, sold_out=True)
    wait_for(tab, lambda d: by_id(d, "ended").is_displayed())
    assert text_of(tab, "ended-body") == "Sold out. Every ticket has been sold."
    assert not by_id(tab, "rejoin").is_displayed()
    # Polling stopped: the page asks nothing more, so the waiter is no longer seen.
    calls = tab.execute_script("return performance.getEntriesByType('resource').length")
    time.sleep(2.5)
    assert tab.execute_script("return performance.getEntriesByType('resource').length") == calls
    # And a newcomer is told at the door.
    tab.execute_script("sessionStorage.clear()")
    open_and_sign_in_expecting_end(tab, gateway, api, event_id)
    assert text_of(tab, "ended-body") == "Sold out. Every ticket has been sold."


def test_the_waiting_page_has_no_serious_accessibility_violations(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    tab.get(f"{gateway}/wait/{event_id}")
    wait_for(tab, lambda d: by_id(d, "signin").is_displayed())
    assert axe_violations(tab) == []
    screenshot(tab, "signin-en")
    open_and_sign_in(tab, gateway, api, event_id)
    assert axe_violations(tab) == []
    tab.get(f"{gateway}/?lang=ko")
    assert axe_violations(tab) == []
    screenshot(tab, "landing-ko")


def test_keyboard_only_sign_in_and_leave(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    from selenium.webdriver.common.keys import Keys

    patch_event(api, event_id, admission_window=1)
    fans_ahead(api, event_id, 1)
    name, password = user(api)
    tab.get(f"{gateway}/wait/{event_id}")
    wait_for(tab, lambda d: by_id(d, "signin").is_displayed())
    # The page puts the focus in the username field; Tab and Enter do the rest.
    focused = tab.switch_to.active_element
    assert focused.get_attribute("id") == "username"
    focused.send_keys(name, Keys.TAB)
    tab.switch_to.active_element.send_keys(password, Keys.ENTER)
    wait_for(tab, lambda d: position(d) == "2")
    by_id(tab, "leave").send_keys(Keys.ENTER)
    wait_for(tab, lambda d: by_id(d, "ended").is_displayed())
    assert tab.switch_to.active_element.get_attribute("id") == "rejoin"


def test_cors_preflight_and_a_cross_origin_join(
    tab: Any, gateway: str, site: str, api: httpx.Client, event_id: str
) -> None:
    preflight = api.options(
        "/api/v1/queue/join",
        headers={
            "Origin": site,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == site
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for name in ("authorization", "content-type", "idempotency-key"):
        assert name in allowed
    assert "access-control-allow-credentials" not in preflight.headers
    refused = api.options(
        "/api/v1/queue/join",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    # The ticket site's own page joins through the embeddable client, across origins.
    tab.get(f"{site}/index.html?gateway={quote(gateway, safe='')}&event={event_id}")
    wait_for(tab, lambda d: text_of(d, "result") != "pending")
    result = text_of(tab, "result")
    assert result.startswith('{"token":"wt1.'), result
    assert '"position":1' in result
    assert waiting(api, event_id) == 1


def test_enter_waits_out_a_503_and_gets_in(
    tab: Any, gateway: str, site: str, api: httpx.Client, event_id: str
) -> None:
    """The client at the door of a paused event: 503 ADMISSIONS_PAUSED with Retry-After, it
    waits that long by itself and tries again, and is let in once admissions resume."""
    patch_event(api, event_id, paused=True)
    bearer = f"load-test-bypass-token-{event_id}-door"
    query = f"gateway={quote(gateway, safe='')}&event={event_id}&bearer={bearer}&enter=1"
    tab.get(f"{site}/index.html?{query}")
    wait_for(tab, lambda d: "ADMISSIONS_PAUSED" in text_of(d, "retries"))
    assert text_of(tab, "retries").startswith("503 ADMISSIONS_PAUSED 10s")  # Retry-After: 10
    assert text_of(tab, "result") == "pending"
    patch_event(api, event_id, paused=False)
    wait_for(tab, lambda d: text_of(d, "result") != "pending", timeout=15)
    assert text_of(tab, "result").startswith("granted rt1."), text_of(tab, "result")
    assert text_of(tab, "retries").count(";") == 1  # one wait, then through


def test_the_console_pause_button_pauses_admissions(
    tab: Any, gateway: str, api: httpx.Client, event_id: str
) -> None:
    fans = fans_ahead(api, event_id, 2)
    admin, password = _admin(api)
    tab.get(f"{gateway}/console")
    wait_for(tab, lambda d: by_id(d, "signin").is_displayed())
    assert axe_violations(tab) == []
    by_id(tab, "username").send_keys(admin)
    by_id(tab, "password").send_keys(password)
    by_id(tab, "password").submit()
    from selenium.webdriver.common.by import By

    row = f'tr[data-event="{event_id}"]'
    wait_for(tab, lambda d: d.find_elements(By.CSS_SELECTOR, row))
    wait_for(tab, lambda d: d.find_element(By.CSS_SELECTOR, f"{row} td:nth-of-type(2)").text == "2")
    # A few seconds of traffic, so the chart has lines: one fan let in, three more join.
    admit(api, fans.pop(0))
    time.sleep(2.5)
    fans += fans_ahead(api, event_id + "x", 3)
    patch_event(api, event_id + "x", sold_out=True)
    time.sleep(4.5)
    assert axe_violations(tab) == []
    tab.find_element(By.CSS_SELECTOR, f'{row} button[data-action="pause"]').click()
    wait_for(tab, lambda d: by_id(d, "confirm").is_displayed())
    assert text_of(tab, "confirm-text") == f"Pause {event_id}?"
    assert axe_violations(tab) == []  # with the dialog open
    by_id(tab, "confirm-ok").click()
    wait_for(tab, lambda d: d.find_elements(By.CSS_SELECTOR, f'{row} button[data-action="resume"]'))
    assert tab.find_element(By.CSS_SELECTOR, f"{row} td").text == "paused"
    sold = f'tr[data-event="{event_id}x"] td'
    assert tab.find_element(By.CSS_SELECTOR, sold).text == "sold out"
    screenshot(tab, "console-en")
    # Sold out can be undone from the console too (Cancel first: nothing changes).
    back = f'tr[data-event="{event_id}x"] button[data-action="on_sale"]'
    tab.find_element(By.CSS_SELECTOR, back).click()
    wait_for(tab, lambda d: by_id(d, "confirm").is_displayed())
    by_id(tab, "confirm-cancel").click()
    time.sleep(0.3)
    assert api.get(f"{EVENTS}/{event_id}x", headers=DEV).json()["state"] == "sold_out"
    tab.find_element(By.CSS_SELECTOR, back).click()
    wait_for(tab, lambda d: by_id(d, "confirm").is_displayed())
    by_id(tab, "confirm-ok").click()
    wait_for(tab, lambda d: d.find_element(By.CSS_SELECTOR, sold).text == "open")
    paused = api.post("/api/v1/queue/enter", json={"waiting_token": fans[0][0]}, headers=fans[0][1])
    assert paused.status_code == 503
    assert paused.json()["error"]["code"] == "ADMISSIONS_PAUSED"


def test_the_console_takes_a_bearer_token(tab: Any, gateway: str, api: httpx.Client) -> None:
    """With an external identity provider there is no password to give: an admin's JWT is."""
    from selenium.webdriver.common.by import By

    tab.get(f"{gateway}/console")
    wait_for(tab, lambda d: by_id(d, "signin").is_displayed())
    tab.find_element(By.CSS_SELECTOR, "#token-details summary").click()
    by_id(tab, "bearer").send_keys("not-a-token")
    by_id(tab, "token-button").click()
    wait_for(tab, lambda d: "not accepted" in text_of(d, "signin-error"))
    by_id(tab, "bearer").send_keys("Bearer dev-super-key-local-testing")  # admin in development
    by_id(tab, "token-button").click()
    wait_for(tab, lambda d: by_id(d, "live-view").is_displayed())
    assert by_id(tab, "signin").is_displayed() is False


def _admin(api: httpx.Client) -> tuple[str, str]:
    """An account with the admin role, made the documented way (the CLI's create-user)."""
    import uuid

    from typer.testing import CliRunner

    from tests.envs import app_env
    from ticketgate.cli import cli

    name, password = f"ops_{uuid.uuid4().hex[:8]}", "correct horse battery"
    created = CliRunner().invoke(
        cli,
        ["admin", "create-user", "--username", name, "--role", "admin", "--password-stdin"],
        env=app_env(
            SERVER_ENVIRONMENT="development",
            AUTH_ARGON2_TIME_COST="1",
            AUTH_ARGON2_MEMORY_KIB="1024",
            AUTH_ARGON2_PARALLELISM="1",
        ),
        input=password + "\n",
    )
    assert created.exit_code == 0, created.output
    return name, password
