"""Browser tests: Debian's Chromium, driven by pytest-playwright, against a real `keel serve`.

The server runs on PostgreSQL and Redis (as in production) when the run has them
(KEEL_TEST_DATABASE_URL and KEEL_TEST_REDIS_URL, or KEEL_TEST_REQUIRE_SERVICES=1, as in CI): a
cluster and a redis-server of the browser tests' own, started once per test process; else on
SQLite alone. One server a module, on the most production-like backend there is. Email is
delivered in-process to the file transport, so each test reads its emailed links from the .eml
files. Every test opens its own browser context: a fresh browser with no cookies and no storage.
"""

from __future__ import annotations

import asyncio
import email
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from keel.migrations import upgrade
from tests.conftest import REQUIRE_SERVICES, base_settings, reset_postgres, reset_redis, unavailable
from tests.processes import PrivatePostgres, PrivateRedis, free_port, keel_env, serve_command, serving

CHROMIUM = Path(os.environ.get("KEEL_TEST_CHROMIUM", "/usr/bin/chromium"))
# PostgreSQL + Redis when the run is configured for them (and where they are required); else SQLite.
WITH_SERVICES = REQUIRE_SERVICES or bool(
    os.environ.get("KEEL_TEST_DATABASE_URL") and os.environ.get("KEEL_TEST_REDIS_URL")
)
PASSWORD = "a sturdy keel holds 42 knots"
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
# Every endpoint that answers a token pair: the web client must never get a refresh token in one.
TOKEN_ENDPOINTS = tuple(
    f"/api/v1/auth/{path}" for path in ("login", "refresh", "mfa/verify", "passkeys/authenticate", "email-code/verify")
)
# The live updates' ticket: a 404 there means a server without live updates, which pages expect.
NO_LIVE_UPDATES = "/api/v1/events/ticket"
# Chromium logs every failed fetch; a status, or 0 for a request that never got an answer.
FAILED_LOAD = re.compile(r"^Failed to load resource: (?:the server responded with a status of (\d{3})|net::ERR_)")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        unavailable(f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
    }


# pytest-playwright's own fixtures, narrowed from the session to this package's modules. Sync
# Playwright keeps an event loop running while it is started, and the async tests that run
# after these would find it; so it starts here, after the server (whose setup uses asyncio),
# and stops when the module is done.
@pytest.fixture(scope="module")
def playwright(keel: Keel, _pw_api_request_contexts: Any) -> Iterator[Playwright]:
    with sync_playwright() as started:
        yield started


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    assert browser_name == "chromium", "the browser tests run on Debian's Chromium"
    return playwright.chromium


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**overrides: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **overrides})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the main pages' screenshots go: <pytest basetemp>/screenshots."""
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@dataclass
class Keel:
    """A running `keel serve` and what the tests need to reach it."""

    url: str
    env: dict[str, str]
    mail_dir: Path
    log_path: Path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def mails(self, to: str) -> list[EmailMessage]:
        found = []
        for path in sorted(self.mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            if message["To"] == to:
                found.append(message)
        return found

    def link(self, to: str, page: str, *, after: int = 0, timeout: float = 10) -> str:
        """The `page` link (verify-email or reset-password) in the newest matching email to `to`."""
        pattern = re.compile(re.escape(f"{self.url}/{page}?token=") + r"[^\s\"'<>]+")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in reversed(self.mails(to)[after:]):
                body = message.get_body(("plain",))
                assert body is not None
                found = pattern.search(body.get_content())
                if found:
                    return found.group(0)
            time.sleep(0.1)
        raise AssertionError(f"no {page} email reached {to}")

    def register(self, name: str, *, verified: bool = True) -> Account:
        """An account made through the API, verified through its emailed link."""
        account = Account(email=f"{name}@example.com", username=name)
        with self.api() as http:
            response = http.post(
                "/api/v1/auth/register",
                json={"email": account.email, "username": account.username, "password": account.password},
            )
            assert response.status_code == 202, response.text
            if verified:
                token = self.link(account.email, "verify-email").split("token=", 1)[1]
                confirmed = http.post("/api/v1/auth/verify-email/confirm", json={"token": token})
                assert confirmed.status_code == 200, confirmed.text
        return account

    def token(self, account: Account) -> str:
        """An access token from a separate API session (body mode, no cookie)."""
        with self.api() as http:
            response = http.post("/api/v1/auth/login", data={"username": account.email, "password": account.password})
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])


@dataclass
class Account:
    email: str
    username: str
    password: str = PASSWORD


@dataclass
class Services:
    postgres_url: str
    redis_url: str


@pytest.fixture(scope="session")
def browser_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services | None]:
    """A PostgreSQL cluster and a redis-server of the browser tests' own, when the run has the services.

    Their own, not the run's `keel_test` and Redis db 15: the browser tests then need not wait for
    the tests on those (tests/parallel.py runs them one at a time on one process), and the servers
    are the same PostgreSQL and Redis, from the same packages. One pair per test process.
    """
    if not WITH_SERVICES:
        yield None
        return
    if shutil.which("redis-server") is None:
        unavailable("the browser tests' own Redis needs redis-server")
    folder = tmp_path_factory.mktemp("browser-services")
    postgres = PrivatePostgres.create()
    redis_server = PrivateRedis(port=free_port(), tmp_path=folder)
    try:
        postgres.start()
        redis_server.start()
        # Migrated here (as `keel serve` would) so that emptying it between modules finds the tables.
        upgrade(base_settings(folder, database_url=postgres.url))
        yield Services(postgres_url=postgres.url, redis_url=redis_server.url)
    finally:
        redis_server.stop()
        postgres.destroy()


@pytest.fixture(scope="module")
def keel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, browser_services: Services | None
) -> Iterator[Keel]:
    services: dict[str, str] = {}
    if browser_services is not None:
        asyncio.run(reset_postgres(browser_services.postgres_url))
        asyncio.run(reset_redis(browser_services.redis_url))
        services = {"KEEL_DATABASE_URL": browser_services.postgres_url, "KEEL_REDIS_URL": browser_services.redis_url}
    folder = tmp_path_factory.mktemp("keel-serve")
    port = free_port()
    # A module may need a host name rather than an address: browsers refuse passkeys for an IP
    # address (the relying party id must be a domain), and allow them on http only for localhost.
    url = f"http://{getattr(request.module, 'SERVE_HOST', '127.0.0.1')}:{port}"
    env = keel_env(
        folder / "data",
        **services,  # none: SQLite in the data folder, which `keel serve` migrates
        KEEL_PUBLIC_URL=url,
        KEEL_EMAIL_DELIVERY="in-process",
        KEEL_LOG_FORMAT="json",
        # Every test in a module signs up and in from 127.0.0.1 against one server: limits stay on,
        # but loose enough for that (tests/routes/test_rate_limits.py covers the real ones).
        **{
            f"KEEL_RATE_LIMIT_{rule.upper()}": "1000/minute"
            for rule in (
                *("login", "login_ip", "register", "verify_email", "password_reset", "refresh", "writes"),
                "sign_in_start",  # every sign-in page asks for passkey options (autofill)
                "password_check",  # every new password typed is rated as it is typed
            )
        },
        # A module that needs the server configured otherwise says so (e.g. KEEL_DOCS=admin).
        **getattr(request.module, "SERVE_ENV", {}),
    )
    log_path = folder / "serve.log"
    with serving(serve_command(port), env=env, log_path=log_path, ready_url=f"{url}/ready"):
        yield Keel(url=url, env=env, mail_dir=folder / "data" / "mail", log_path=log_path)


@dataclass
class Watch:
    """What a page did that a person would never want: console errors, CSP violations,
    uncaught exceptions, HTTP errors nobody expected, tokens where they must not be."""

    context: BrowserContext
    base_url: str
    problems: list[str] = field(default_factory=list)
    http_errors: list[int] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)
    token_bodies: list[dict[str, Any]] = field(default_factory=list)
    unread_token_bodies: int = 0
    # Token responses whose body is still being read: the handler waits on Playwright for it,
    # and the test can meanwhile go on (a sign-in that moves to /todos at once).
    reading_token_bodies: int = 0

    def attach(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("request", self._request)
        page.on("response", self._response)
        return page

    def _response(self, response: Response) -> None:
        if response.ok and response.url.endswith(TOKEN_ENDPOINTS):
            self.reading_token_bodies += 1
            try:
                body = response.json()
            except PlaywrightError:
                # The page navigated away first and Chromium dropped the body (a sign-in that leaves
                # for another page at once). It cannot be checked here; the page's next refresh is.
                self.unread_token_bodies += 1
                return
            finally:
                self.reading_token_bodies -= 1
            self.token_bodies.append(body)
            self.access_tokens.append(body["access_token"])

    def _console(self, message: ConsoleMessage) -> None:
        failed = FAILED_LOAD.match(message.text)
        if failed and failed.group(1) == "404" and message.location.get("url", "").endswith(NO_LIVE_UPDATES):
            return  # a server without the events endpoint: the page goes on without live updates
        if failed:
            self.http_errors.append(int(failed.group(1) or 0))
        elif message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def _request(self, request: Request) -> None:
        self.urls.append(request.url)

    def assert_clean(self, *, expected_http: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self._finish_reading()
        assert self.problems == []
        assert [status for status in self.http_errors if status not in expected_http] == []
        secrets = [*self.access_tokens, *(cookie["value"] for cookie in self.context.cookies())]
        for url in self.urls:
            # The emailed links carry their own (itsdangerous) token by design; nothing else may.
            if not url.startswith((f"{self.base_url}/verify-email?", f"{self.base_url}/reset-password?")):
                assert not JWT.search(url), url
            for secret in secrets:
                assert secret not in url, url
        # The web client never receives a refresh token in a body: it lives in the cookie.
        assert self.token_bodies, "no sign-in or refresh was seen"
        assert all(body["refresh_token"] is None for body in self.token_bodies)

    def _finish_reading(self, timeout: float = 10.0) -> None:
        """Let the handlers still reading a token body finish (waiting on a page runs them)."""
        deadline = time.monotonic() + timeout
        pages = [page for page in self.context.pages if not page.is_closed()]
        while self.reading_token_bodies and pages and time.monotonic() < deadline:
            pages[0].wait_for_timeout(50)

    def assert_no_token_in_storage(self, page: Page) -> None:
        storage = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
        assert not JWT.search(storage), storage
        for token in self.access_tokens:
            assert token not in storage
        refresh = [c["value"] for c in self.context.cookies() if c["name"] == "keel_refresh"]
        for value in refresh:
            assert value not in storage
        # HttpOnly: the page's scripts cannot read the refresh cookie at all.
        assert "keel_refresh" not in page.evaluate("() => document.cookie")


@dataclass
class Visit:
    """A fresh browser (context) on the Keel app, with its watcher."""

    keel: Keel
    context: BrowserContext
    page: Page
    watch: Watch
    shots: Path

    def goto(self, path: str) -> None:
        self.page.goto(self.keel.url + path)

    def sign_in(self, account: Account, *, password: str | None = None) -> None:
        self.goto("/signin")
        self.page.get_by_label("Email").fill(account.email)
        self.page.get_by_label("Password").fill(password or account.password)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        self.page.get_by_role("button", name="Sign out", exact=True).wait_for()

    def screenshot(self, name: str) -> None:
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=self.shots / f"{name}.png", full_page=True)

    def new_tab(self) -> Page:
        return self.watch.attach(self.context.new_page())


def _service_workers(request: pytest.FixtureRequest) -> Any:
    # Playwright's page.route cannot see what a service worker fetches, so the tests that route
    # requests would miss them; only the tests of the worker itself (marked) let it run.
    return "allow" if request.node.get_closest_marker("service_worker") else "block"


@pytest.fixture
def visit(browser: Browser, keel: Keel, screenshots: Path, request: pytest.FixtureRequest) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers=_service_workers(request))
    watch = Watch(context, keel.url)
    page = watch.attach(context.new_page())
    try:
        yield Visit(keel=keel, context=context, page=page, watch=watch, shots=screenshots)
    finally:
        context.close()


@pytest.fixture
def second_visit(browser: Browser, keel: Keel, screenshots: Path, request: pytest.FixtureRequest) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers=_service_workers(request))
    watch = Watch(context, keel.url)
    page = watch.attach(context.new_page())
    try:
        yield Visit(keel=keel, context=context, page=page, watch=watch, shots=screenshots)
    finally:
        context.close()


def tick(page: Page, title: str) -> None:
    """Tick (or untick) todo `title` by clicking its box, as a person does.

    Not `Locator.check()`: after its click, check() looks the box up again to read it, and once
    the API has answered the todo may have moved under the closed "Completed (n)" or out of the
    view, where no role query finds it. Whether it has depends on timing, so the test would be
    flaky; the caller asserts where the todo went instead.
    """
    page.get_by_role("checkbox", name=title).click()


def expect_signed_out_elsewhere(page: Page, message: str = "Your session ended. Please sign in again.") -> None:
    """A page whose session was ended from another browser ends up at sign-in, saying why.

    A page that still holds its live stream (the todo page, or one left less than 5 s ago) hears
    of the revocation and signs out at once; any other finds out at its next step. Waiting longer
    than the stream outlives the todo page makes the two cases distinct, so the step is only taken
    when no stream can still be signing it out.
    """
    try:
        page.wait_for_url(re.compile(r"/signin"), timeout=7_000)
    except PlaywrightTimeoutError:
        page.get_by_role("link", name="Todos").click()
        expect(page).to_have_url(re.compile(r"/signin"))
    expect(page.get_by_text(message, exact=False)).to_be_visible()
