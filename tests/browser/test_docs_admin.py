"""KEEL_DOCS=admin in a browser: the pages are public, the schema appears once an administrator signs in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Account, Keel, Watch
from tests.browser.test_admin import create_admin
from tests.browser.test_docs import REDOC_LOGO, RENDERING, Offline

pytestmark = pytest.mark.slow  # a real server and a real browser

SERVE_ENV = {"KEEL_DOCS": "admin"}


@pytest.fixture
def offline_page(browser: Browser, keel: Keel) -> Iterator[tuple[Page, Watch, Offline]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocker = Offline(context, keel.url)
    watch = Watch(context, keel.url)
    try:
        yield watch.attach(context.new_page()), watch, blocker
    finally:
        context.close()


@pytest.fixture(scope="module")
def admin(keel: Keel) -> Account:
    return create_admin(keel, "docs_admin")


def authorize(page: Page, account: Account) -> None:
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(account.email)
    dialog.locator("#oauth_password").fill(account.password)
    dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()


def test_swagger_ui_shows_the_api_once_an_administrator_authorizes(
    offline_page: tuple[Page, Watch, Offline], keel: Keel, admin: Account
) -> None:
    page, watch, blocker = offline_page
    page.goto(f"{keel.url}/docs")
    expect(page.locator(".swagger-ui .info")).to_contain_text("administrators only")
    expect(page.locator(".opblock")).to_have_count(0)

    authorize(page, admin)
    dialog = page.locator(".modal-ux")
    expect(dialog.get_by_role("button", name="Remove authorization").first).to_be_visible()
    dialog.get_by_role("button", name="Close").first.click()

    operation = page.locator(".opblock-get", has=page.locator('.opblock-summary-path[data-path="/api/v1/users/me"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    expect(live.locator(".response-col_description .microlight").first).to_contain_text(admin.email)
    assert blocker.attempted == []
    assert watch.problems == []
    # The page's first look at the schema, before anyone signed in.
    assert watch.http_errors == [401]


def test_swagger_ui_keeps_the_api_from_another_account(offline_page: tuple[Page, Watch, Offline], keel: Keel) -> None:
    page, watch, _ = offline_page
    member = keel.register("docs_member")
    page.goto(f"{keel.url}/docs")

    authorize(page, member)

    expect(page.locator(".swagger-ui .errors-wrapper")).to_contain_text("Forbidden")
    expect(page.locator(".opblock")).to_have_count(0)
    assert sorted(watch.http_errors) == [401, 403]


def test_redoc_asks_for_an_administrator_and_signs_its_session_out(
    offline_page: tuple[Page, Watch, Offline], keel: Keel
) -> None:
    page, watch, blocker = offline_page
    admin = create_admin(keel, "redoc_admin")  # with no session from another test
    member = keel.register("redoc_member")
    page.goto(f"{keel.url}/redoc")
    form = page.locator("form#sign-in")
    expect(form).to_contain_text("Sign in as an administrator")

    form.get_by_label("Email").fill(member.email)
    form.get_by_label("Password").fill(member.password)
    form.get_by_role("button", name="Sign in").click()
    expect(form).to_contain_text("This account is not an administrator")

    form.get_by_label("Email").fill(admin.email)
    form.get_by_label("Password").fill(admin.password)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Keel (0.1.0)", level=1)).to_be_visible(timeout=RENDERING)
    expect(form).to_be_hidden()
    page.wait_for_load_state("networkidle")

    with keel.api() as http:
        sessions = http.get("/api/v1/auth/sessions", headers={"Authorization": f"Bearer {keel.token(admin)}"})
    assert sessions.status_code == 200, sessions.text
    assert [s for s in sessions.json() if "Chrome" in (s["user_agent"] or "")] == []
    assert blocker.attempted == []
    assert [problem for problem in watch.problems if REDOC_LOGO not in problem] == []
    assert sorted(watch.http_errors) == [401, 403]
