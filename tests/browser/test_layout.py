"""How the UI looks and works for everyone: small screens, dark mode, keyboard, labels, CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.axe import violations
from tests.browser.conftest import Account, Keel, Visit, Watch

pytestmark = pytest.mark.slow  # a real server and a real browser

PAGES = ["/", "/signin", "/signup", "/forgot-password", "/todos", "/my-posts", "/posts/new", "/account"]
SIGNED_OUT_PAGES = ["/", "/signin", "/signup", "/forgot-password", "/tags/sailing"]

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
        post = {
            "title": "A calm crossing",
            "content": "Flat water all the way.\n\n**Gulls**, and a [chart](https://example.com/chart).",
            "published": True,
            "tags": ["sailing"],
        }
        created = http.post("/api/v1/posts", json=post, headers=headers)
        assert created.is_success, created.text
        comment = {"content": "Lucky you: we had _fog_."}
        assert http.post(f"/api/v1/posts/{created.json()['id']}/comments", json=comment, headers=headers).is_success
        # Ticked, so the page shows its "Completed (1)" too.
        done = http.post("/api/v1/todos", json={"title": "Scrape the keel"}, headers=headers).json()
        assert http.patch(f"/api/v1/todos/{done['id']}", json={"completed": True}, headers=headers).is_success
    return account


def post_path(keel: Keel, title: str) -> str:
    with keel.api() as http:
        found = http.get("/api/v1/posts", params={"q": title}).json()["items"]
    return f"/posts/{found[0]['id']}"


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
        (
            "phone-dark",
            {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "color_scheme": "dark"},
        ),
    ],
)
def test_every_page_fits_is_labelled_accessible_and_captured(
    browser: Browser, keel: Keel, member: Account, screenshots: Path, label: str, options: dict[str, object]
) -> None:
    post = post_path(keel, "A calm crossing")

    def check(visit: Visit, path: str, name: str) -> None:
        visit.goto(path)
        page = visit.page
        page.locator("main h1").first.wait_for()
        page.wait_for_load_state("networkidle")  # the page's data drawn: axe reads what a person sees
        # Nothing wider than the screen: no sideways scrolling at 360 px.
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], (path, width)  # type: ignore[index]
        assert page.evaluate(UNLABELLED) == [], path
        # axe-core: WCAG 2.1 A and AA and best practices, in this theme and at this size.
        assert violations(page) == [], path
        visit.screenshot(f"{label}-{name}")

    for page, watch in open_visit(browser, keel, **options):
        visit = Visit(keel=keel, context=page.context, page=page, watch=watch, shots=screenshots)
        for path in [*SIGNED_OUT_PAGES, post]:
            check(visit, path, (path.strip("/").replace("/", "-") or "feed") + "-signed-out")
        visit.sign_in(member)
        for path in [*PAGES, post]:
            check(visit, path, path.strip("/").replace("/", "-") or "feed")
        if label.endswith("dark"):
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

    page.get_by_role("checkbox", name="Coil the ropes").focus()
    page.keyboard.press("Space")
    # Done, it moves under the closed "Completed (n)" (where no role query finds it), and focus
    # to the next open todo's box, so the keyboard keeps its place in the list.
    expect(page.locator(".todo", has_text="Coil the ropes").locator("input[type=checkbox]")).to_be_checked()
    expect(page.locator(".completed-todos .todo", has_text="Coil the ropes")).to_have_count(1)
    expect(page.get_by_role("list", name="Todos").locator("input[type=checkbox]:focus")).to_have_count(1)
    visit.watch.assert_clean()


def test_the_footer_starts_below_the_fold_so_arriving_content_never_shifts_it(visit: Visit) -> None:
    """Lighthouse counted the footer, pushed out of view when a page's list arrived, as layout shift."""
    visit.page.set_viewport_size({"width": 412, "height": 823})
    visit.goto("/signin")  # a short page: the footer would sit at the bottom of the screen
    visit.page.get_by_role("heading", name="Sign in").wait_for()

    top = visit.page.evaluate("() => document.querySelector('body > footer').getBoundingClientRect().top")

    assert top >= 823


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


def wait_for(page: Page, held: list[Route], timeout_s: float = 10.0) -> Route:
    """The next request `held` by a route handler (waiting on the page lets the handler run)."""
    for _ in range(int(timeout_s * 20)):
        if held:
            return held.pop()
        page.wait_for_timeout(50)
    raise AssertionError("the request never came")


def test_a_slow_page_shows_its_shape_then_a_busy_bar_never_a_blank_screen(visit: Visit, member: Account) -> None:
    page = visit.page
    visit.sign_in(member)
    # Signing in lands on /todos; leave it for a page that asks for no todos, and only then hold
    # them, so a request from the landing page can never be the one held and then let go.
    visit.goto("/my-posts")
    expect(page.get_by_role("heading", name="My posts")).to_be_visible()
    held: list[Route] = []
    page.route("**/api/v1/todos?*", lambda route: held.append(route))

    # The first load: the shell's skeleton is drawn before any of the page's data has arrived.
    page.goto(f"{visit.keel.url}/todos", wait_until="commit")
    expect(page.locator("#view .skeleton")).to_be_visible()
    expect(page.locator("#view .skeleton")).to_have_attribute("aria-hidden", "true")
    wait_for(page, held).continue_()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    expect(page.locator("#view .skeleton")).to_have_count(0)

    # Moving within the app: the page stays and says it is busy (a bar at the top) until the next is ready.
    page.get_by_role("link", name="My posts").click()
    expect(page.get_by_role("heading", name="My posts")).to_be_visible()
    page.get_by_role("link", name="Todos", exact=True).click()
    expect(page.locator("#view")).to_have_attribute("aria-busy", "true")
    bar = page.evaluate("() => getComputedStyle(document.getElementById('view'), '::before').content")
    assert bar != "none"
    wait_for(page, held).continue_()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    expect(page.locator("#view")).not_to_have_attribute("aria-busy", "true")
    visit.watch.assert_clean()


def _wait_until(page: Page, seen: list[str], timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s * 20)):
        if seen:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the request never came")


def test_a_reload_asks_for_its_data_beside_users_me_not_after_it(visit: Visit, member: Account) -> None:
    page = visit.page
    visit.sign_in(member)
    expect(page.get_by_text("Caulk the hull")).to_be_visible()
    held: list[Route] = []
    page.route("**/api/v1/users/me", lambda route: held.append(route))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/v1/todos?" in request.url else None)

    # Reloaded, the session resumes (a refresh) and then the page's todos go out while /users/me,
    # held here, has not answered: the two are one round trip, not two.
    page.reload(wait_until="commit")
    me = wait_for(page, held)
    _wait_until(page, asked)
    assert len(asked) == 1  # while /users/me is still held
    me.continue_()
    expect(page.get_by_text("Caulk the hull")).to_be_visible()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    # The page took the answer already on its way: it did not ask for its todos a second time.
    page.wait_for_timeout(500)
    assert len(asked) == 1, asked
    visit.watch.assert_clean()
