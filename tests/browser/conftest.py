"""Real Chromium (Debian's `chromium` + `chromium-driver`, installed by scripts/test.sh) driven
by Selenium against a gateway on a real socket, on a real Redis this module owns (so a test
may stop it to make a 503 period), plus a second origin playing the ticket site.

One browser serves the whole module; each test gets a fresh tab (so a fresh sessionStorage).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.envs import app_env
from tests.integration.conftest import SECRET, threaded_gateway
from tests.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SITE = HERE / "site"
SCREENSHOTS = HERE / "screenshots"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
DEV = {"Authorization": "Bearer dev-super-key-local-testing"}  # has the admin role
CHROMIUM = ("chromium", "chromium-browser")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None
        )
        if found:
            return found
    return ""


def missing(reason: str) -> None:
    """In CI a missing browser is a failure (scripts/test.sh installs it); elsewhere a skip."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium, driver_path = _which(CHROMIUM), _which(DRIVER)
    if not chromium or not driver_path:
        missing("chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--window-size=1100,900",
        "--lang=en-US",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def tab(browser: Any) -> Any:
    """A fresh tab: its own sessionStorage, so no place carries over between tests."""
    old = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.switch_to.window(old)
    browser.close()
    browser.switch_to.window(browser.window_handles[-1])
    return browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The ticket site: static pages on another origin (another port)."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed (scripts/test.sh installs it)")
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(site: str, redis_server: RedisServer) -> Iterator[str]:
    env = app_env(
        SERVER_ENVIRONMENT="development",
        QUEUE_TOKEN_SECRET=SECRET,
        REDIS_ADDRESS=redis_server.address,
        REDIS_COMMAND_TIMEOUT_MS="300",
        CORS_ALLOWED_ORIGINS=site,
        FRONTDOOR_RETURN_ORIGINS=site,
        AUTH_ARGON2_TIME_COST="1",
        AUTH_ARGON2_MEMORY_KIB="1024",
        AUTH_ARGON2_PARALLELISM="1",
        LOG_LEVEL="warning",
    )
    with threaded_gateway(env) as url:
        yield url


@pytest.fixture
def api(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        yield client


@pytest.fixture
def event_id() -> str:
    return f"evt_{uuid.uuid4().hex[:10]}"


def user(api: httpx.Client, role_admin: bool = False) -> tuple[str, str]:
    """A fresh account of the gateway's own (username, password)."""
    name = f"fan_{uuid.uuid4().hex[:8]}"
    password = "correct horse 42"
    created = api.post("/api/v1/auth/register", json={"username": name, "password": password})
    assert created.status_code == 201, created.text
    return name, password


def screenshot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    with contextlib.suppress(Exception):
        return str(driver.find_element(By.ID, element_id).text)
    return ""


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the current page."""
    if not AXE.exists():
        missing("axe-core is not installed (scripts/test.sh runs npm ci in tests/browser)")
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations),"
        " (e) => done([{id: 'axe-error', impact: 'critical', description: String(e)}]));"
    )
    return [v for v in result if v.get("impact") in {"serious", "critical"}]
