"""How the UI looks and works for everyone: small screens, dark mode, keyboard, labels, CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Account, Keel, Visit, Watch

pytestmark = pytest.mark.slow  # a real server and a real browser

PAGES = ["/", "/signin", "/signup", "/forgot-password", "/todos", "/my-posts", "/posts/new", "/account"]

UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea")]
  .filter((el) => el.type !== "hidden" && !el.hidden && el.labels.length === 0 && !el.getAttribute("aria-label"))
  .map((el) => el.name || el.outerHTML)"""


@pytest.fixture(scope="module")
def member(keel: Keel) -> Account:
    account = keel.register("layout_member")
    token = keel.token(account)
    with keel.api() as http:
        headers = {"Authorization": f"Bearer {token}"}
        for title, priority in [("Caulk the hull", "high"), ("Check the rigging", "normal"), ("Paint the name", "low")]:
            assert http.post("/api/v1/todos", json={"title": title, "priority": priority}, headers=headers).is_success
        post = {"title": "A calm crossing", "content": "Flat water all the way.\n\nGulls.", "published": True}
        assert http.post("/api/v1/posts", json=post, headers=headers).is_success
    return account


def open_visit(browser: Browser, keel: Keel, **options: object) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(**options)  # type: ignore[arg-type]
    watch = Watch(context, keel.url)
    try:
        yield watch.attach(context.new_page()), watch
    finally:
        context.close()


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("desktop", {"viewport": {"width": 1280, "height": 800}}),
        ("phone", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}),
        ("dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
    ],
)
def test_every_page_fits_is_labelled_and_is_captured(
    browser: Browser, keel: Keel, member: Account, screenshots: Path, label: str, options: dict[str, object]
) -> None:
    for page, watch in open_visit(browser, keel, **options):
        visit = Visit(keel=keel, context=page.context, page=page, watch=watch, shots=screenshots)
        visit.goto("/")
        visit.screenshot(f"{label}-feed-signed-out")
        visit.sign_in(member)
        for path in PAGES:
            visit.goto(path)
            page.locator("main h1").first.wait_for()
            # Nothing wider than the screen: no sideways scrolling at 360 px.
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= page.viewport_size["width"], (path, width)  # type: ignore[index]
            assert page.evaluate(UNLABELLED) == [], path
            name = path.strip("/").replace("/", "-") or "feed"
            visit.screenshot(f"{label}-{name}")
        if label == "dark":
            background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(15, 18, 23)"
        watch.assert_clean()


def test_a_todo_can_be_added_and_ticked_with_the_keyboard_alone(visit: Visit, member: Account) -> None:
    page = visit.page
    visit.sign_in(member)
    page.reload()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    # Tab through the add form: title first.
    page.keyboard.press("Tab")
    title = page.get_by_label("New todo")
    expect(title).to_be_focused()
    outline = title.evaluate("(el) => getComputedStyle(el).outlineStyle")
    assert outline != "none", "focus must be visible"
    page.keyboard.type("Coil the ropes")
    page.keyboard.press("Enter")
    expect(page.locator(".todo-title", has_text="Coil the ropes")).to_be_visible()
    expect(title).to_be_focused()

    checkbox = page.get_by_role("checkbox", name="Coil the ropes")
    checkbox.focus()
    page.keyboard.press("Space")
    expect(page.get_by_role("checkbox", name="Coil the ropes")).to_be_checked()
    visit.watch.assert_clean()


def test_the_watch_sees_a_csp_violation(visit: Visit) -> None:
    """The other tests' "no CSP violation" means something only if one would be seen."""
    visit.goto("/signin")
    visit.page.get_by_role("heading", name="Sign in").wait_for()

    visit.page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }"
    )
    visit.page.wait_for_timeout(200)

    assert any("Content Security Policy" in problem for problem in visit.watch.problems), visit.watch.problems


@pytest.mark.parametrize("path", ["/nope", "/settings"])
def test_an_unknown_address_shows_the_apps_page_not_found(visit: Visit, path: str) -> None:
    page = visit.page

    response = page.goto(visit.keel.url + path)

    assert response is not None
    assert response.status == 404  # still a missing page for crawlers and link checkers
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page).to_have_title("Not found · Keel")
    page.get_by_role("link", name="Back to the feed").click()
    expect(page).to_have_url(visit.keel.url + "/")
    assert visit.watch.problems == []
    assert set(visit.watch.http_errors) <= {404}
