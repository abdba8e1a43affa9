"""The API documentation in a browser that can reach nothing but the app: /docs, /redoc, the OAuth2 redirect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.conftest import Account, Keel, Watch

pytestmark = pytest.mark.slow  # a real server and a real browser

# ReDoc renders the whole API at once: seconds on a busy machine.
RENDERING = 20_000
REDOC_LOGO = "'https://cdn.redoc.ly/redoc/logo-mini.svg' violates the following Content Security Policy"


class Offline:
    """A browser context that answers every request to another origin with a network error, and lists them."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.attempted: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(f"{self.origin}/"):
            route.continue_()
        else:
            self.attempted.append(url)
            route.abort("internetdisconnected")


@pytest.fixture
def offline(browser: Browser, keel: Keel) -> Iterator[tuple[Page, Watch, Offline]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocker = Offline(context, keel.url)
    watch = Watch(context, keel.url)
    try:
        yield watch.attach(context.new_page()), watch, blocker
    finally:
        context.close()


def test_swagger_ui_signs_in_and_tries_an_operation_offline(offline: tuple[Page, Watch, Offline], keel: Keel) -> None:
    page, watch, blocker = offline
    member: Account = keel.register("docs_reader")

    page.goto(f"{keel.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Keel")
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill(member.email)
    dialog.locator("#oauth_password").fill(member.password)
    dialog.get_by_role("button", name="Apply given OAuth2 credentials").click()
    expect(dialog.get_by_role("button", name="Remove authorization").first).to_be_visible()
    dialog.get_by_role("button", name="Close").first.click()

    operation = page.locator(".opblock-get", has=page.locator('.opblock-summary-path[data-path="/api/v1/users/me"]'))
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()

    live = operation.locator(".live-responses-table .response")
    expect(live.locator(".response-col_status")).to_have_text("200")
    expect(live.locator(".response-col_description .microlight").first).to_contain_text(member.email)
    assert blocker.attempted == []
    assert watch.problems == []
    assert watch.http_errors == []


def test_redoc_renders_and_searches_offline(offline: tuple[Page, Watch, Offline], keel: Keel) -> None:
    page, watch, blocker = offline

    page.goto(f"{keel.url}/redoc")

    expect(page.get_by_role("heading", name="Keel (0.1.0)", level=1)).to_be_visible(timeout=RENDERING)
    # The search index lives in a worker: the page's policy must let ReDoc start it.
    page.get_by_role("textbox", name="Search").fill("Read Me")
    expect(page.locator("[data-role='search:results']").get_by_text("Read Me")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert blocker.attempted == []
    # ReDoc's sidebar credit always asks its CDN for a logo; the policy blocks that before any
    # request is made, and ReDoc hides the broken image. Nothing else may be refused.
    assert [problem for problem in watch.problems if REDOC_LOGO not in problem] == []
    assert watch.http_errors == []


def test_the_oauth2_redirect_page_hands_its_result_to_the_opener(
    offline: tuple[Page, Watch, Offline], keel: Keel
) -> None:
    # What Swagger UI's implicit and authorization-code flows rely on (the password flow does not
    # use it): the page runs its script under its policy and reports to the window that opened it.
    page, watch, blocker = offline
    page.goto(f"{keel.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Keel")
    page.evaluate(
        """() => {
            window.redirected = new Promise((resolve) => {
                window.swaggerUIRedirectOauth2 = {
                    state: "s1",
                    redirectUrl: location.origin + "/docs/oauth2-redirect",
                    auth: {schema: {get: () => "implicit"}},
                    callback: resolve,
                    errCb: (error) => resolve({error}),
                };
            });
        }"""
    )

    with page.expect_popup() as popup:
        page.evaluate("() => { window.open('/docs/oauth2-redirect#access_token=t0k&state=s1'); }")
    popup.value.wait_for_event("close")

    result = page.evaluate("() => window.redirected.then((r) => ({valid: r.isValid, token: r.token}))")
    assert result == {"valid": True, "token": {"access_token": "t0k", "state": "s1"}}
    assert blocker.attempted == []
    assert watch.problems == []
