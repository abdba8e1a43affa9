"""The installable app: its manifest, the service worker, the offline shell and the outbox, and the
todo page's changes made offline: shown at once as waiting, replayed in order once online, never twice."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Route, expect

from keel.http.web_assets import Assets
from keel.main import WEB_DIR
from tests.browser.axe import violations
from tests.browser.conftest import Account, Keel, Visit, Watch, tick

pytestmark = [pytest.mark.slow, pytest.mark.service_worker]  # a real server, a real browser, its worker

OFFLINE = "You are offline — showing what was last loaded."


def add_todo(keel: Keel, token: str, title: str) -> None:
    with keel.api() as http:
        created = http.post("/api/v1/todos", json={"title": title}, headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 201, created.text


def outbox_url() -> str:
    return Assets(WEB_DIR / "static", WEB_DIR / "index.html").url("js/outbox.js")


def wait_until_sent(visit: Visit, timeout: float = 30) -> None:
    """Wait until the outbox holds nothing more. Polled here: wait_for_function does not await an
    async predicate (the Promise it returns is truthy at once)."""
    deadline = time.monotonic() + timeout
    while visit.page.evaluate("async (url) => (await (await import(url)).pending()).length", outbox_url()):
        assert time.monotonic() < deadline, "changes still wait in the outbox"
        visit.page.wait_for_timeout(200)


def wait_for_worker(visit: Visit) -> None:
    visit.page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=15_000)


def test_the_manifest_is_linked_and_installable(visit: Visit) -> None:
    visit.goto("/")
    href = visit.page.locator('link[rel="manifest"]').get_attribute("href")
    assert href is not None

    manifest = visit.page.evaluate("async (href) => (await fetch(href)).json()", href)

    assert manifest["name"] == manifest["short_name"] == "Keel"
    assert manifest["display"] == "standalone"
    assert manifest["start_url"].startswith("/")
    sizes = {(icon["sizes"], icon.get("purpose", "any")) for icon in manifest["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for icon in manifest["icons"]:
        status = visit.page.evaluate("async (src) => (await fetch(src)).status", icon["src"])
        assert status == 200, icon["src"]
    assert visit.page.locator('meta[name="theme-color"]').count() == 2


def test_offline_the_shell_shows_the_last_data_and_says_so(visit: Visit, keel: Keel) -> None:
    account = keel.register("offline_sailor")
    add_todo(keel, keel.token(account), "Check the bilge pump")
    page = visit.page
    visit.sign_in(account)
    visit.goto("/todos")
    # Loaded means signed in again: a reload while the page's refresh is in flight can drop the
    # rotated cookie, and the next refresh, with the old one, ends the session as a reuse.
    expect(page.get_by_text("Check the bilge pump")).to_be_visible()
    wait_for_worker(visit)
    page.reload()  # now through the worker, which keeps what it fetches
    expect(page.get_by_text("Check the bilge pump")).to_be_visible()
    expect(page.get_by_text(OFFLINE)).to_be_hidden()

    visit.context.set_offline(True)
    page.reload()

    expect(page.get_by_text("Check the bilge pump")).to_be_visible()
    expect(page.get_by_text(OFFLINE)).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in ((360, 740), (1280, 800)):
            page.set_viewport_size({"width": width, "height": height})
            page.screenshot(path=visit.shots / f"offline-{scheme}-{width}.png")

    visit.context.set_offline(False)
    expect(page.get_by_text(OFFLINE)).to_be_hidden()


def test_signing_out_forgets_the_offline_data(visit: Visit, keel: Keel) -> None:
    account = keel.register("tidy_sailor")
    add_todo(keel, keel.token(account), "Private plans")
    visit.sign_in(account)
    visit.goto("/todos")
    wait_for_worker(visit)
    visit.page.reload()
    expect(visit.page.get_by_text("Private plans")).to_be_visible()
    assert visit.page.evaluate("caches.has('keel-data')")

    visit.page.get_by_role("button", name="Sign out", exact=True).click()
    expect(visit.page.get_by_role("heading", name="Sign in")).to_be_visible()

    # Polled: wait_for_function would take the Promise an async predicate returns as truthy at once.
    deadline = time.monotonic() + 5
    while visit.page.evaluate("caches.has('keel-data')"):
        assert time.monotonic() < deadline, "the offline data is still kept"
        visit.page.wait_for_timeout(100)


def test_the_outbox_replays_in_order_once_online_and_never_duplicates(visit: Visit, keel: Keel) -> None:
    account = keel.register("queued_sailor")
    visit.sign_in(account)
    outbox = outbox_url()
    visit.context.set_offline(True)

    visit.page.evaluate(
        """async (url) => {
          const outbox = await import(url);
          const reef = { method: "POST", path: "/todos", body: { title: "Reef the main" }, idempotencyKey: "k-1" };
          await outbox.enqueue(reef);
          await outbox.enqueue(reef); // queued twice, as a replay whose answer was lost would be
          await outbox.enqueue({ method: "POST", path: "/todos", body: { title: "Drop anchor" } });
        }""",
        outbox,
    )
    assert visit.page.evaluate("async (url) => (await (await import(url)).pending()).length", outbox) == 3

    visit.context.set_offline(False)  # the `online` event starts the replay
    wait_until_sent(visit)

    with keel.api() as http:
        listed = http.get("/api/v1/todos", headers={"Authorization": f"Bearer {keel.token(account)}"})
    titles = [item["title"] for item in listed.json()["items"]]
    assert sorted(titles) == ["Drop anchor", "Reef the main"]
    assert re.search(r"\.[0-9a-f]{12}\.js$", outbox)


WAITING = "Waiting for the network"


@contextmanager
def visit_without_worker(browser: Browser, keel: Keel, shots: Path) -> Iterator[Visit]:
    """A fresh browser whose requests page.route sees: no service worker between them."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, service_workers="block")
    watch = Watch(context, keel.url)
    try:
        yield Visit(keel=keel, context=context, page=watch.attach(context.new_page()), watch=watch, shots=shots)
    finally:
        context.close()


def todos_on_server(keel: Keel, account: Account) -> list[dict[str, Any]]:
    with keel.api() as http:
        listed = http.get(
            "/api/v1/todos", params={"limit": 100}, headers={"Authorization": f"Bearer {keel.token(account)}"}
        )
        assert listed.status_code == 200, listed.text
        return list(listed.json()["items"])


def test_todo_changes_made_offline_wait_on_screen_and_reach_keel_once(
    browser: Browser, keel: Keel, screenshots: Path
) -> None:
    sailor = keel.register("offline_deckhand")
    token = keel.token(sailor)
    add_todo(keel, token, "Old chart")
    add_todo(keel, token, "Scrub the deck")
    with visit_without_worker(browser, keel, screenshots) as visit:
        page = visit.page
        visit.sign_in(sailor)
        expect(page.locator(".todo-title")).to_have_text(["Scrub the deck", "Old chart"])
        visit.context.set_offline(True)
        expect(page.get_by_text(OFFLINE)).to_be_visible()

        # Add two, tick a todo Keel has and one it has not seen yet, edit, delete one of each.
        for title in ("Buy rope", "Coil the rope"):
            page.get_by_label("New todo").fill(title)
            page.get_by_role("button", name="Add todo").click()
            expect(page.locator(".todo", has_text=title).get_by_text(WAITING)).to_be_visible()
        expect(page.locator("#toast")).to_have_text("Added on this device. It will be sent when the network returns.")
        expect(page.get_by_label("New todo")).to_be_focused()
        tick(page, "Scrub the deck")
        tick(page, "Buy rope")
        completed = page.locator(".completed-todos")
        expect(completed.locator("> summary")).to_have_text("Completed (2)")
        completed.locator("> summary").click()
        expect(completed.locator(".todo", has_text="Scrub the deck").get_by_text(WAITING)).to_be_visible()
        page.get_by_role("button", name="Edit “Scrub the deck”").click()
        page.get_by_label("Title").fill("Scrub the whole deck")
        page.get_by_role("button", name="Save").click()
        expect(completed.locator(".todo", has_text="Scrub the whole deck").get_by_text(WAITING)).to_be_visible()
        page.get_by_role("button", name="Delete “Old chart”").click()
        page.get_by_role("button", name="Delete “Coil the rope”").click()
        banner = page.locator("#offline")
        expect(banner).to_contain_text("7 changes wait to be sent.", timeout=10_000)
        expect(page.locator(".todo-title")).to_have_text(["Buy rope", "Scrub the whole deck"])
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            visit.screenshot(f"todos-offline-waiting-desktop-{scheme}")
            assert violations(page) == [], scheme
        page.emulate_media(color_scheme="light")
        assert todos_on_server(keel, sailor) == todos_on_server(keel, sailor)  # nothing sent while offline
        assert [todo["title"] for todo in todos_on_server(keel, sailor)] == ["Scrub the deck", "Old chart"]

        # Back online, the answers to the first create and to the edit are lost on their way back
        # after Keel acted on them: both are sent again, and neither lands twice.
        lost: list[str] = []

        def lose_first_answers(route: Route) -> None:
            request = route.request
            kind = "create" if request.method == "POST" else "edit" if '"title"' in (request.post_data or "") else ""
            if request.method in {"POST", "PATCH"} and kind and kind not in lost:
                lost.append(kind)
                route.fetch()  # Keel acts on it...
                route.abort("internetdisconnected")  # ...and the answer never arrives
                return
            route.continue_()

        page.route(re.compile(r"/api/v1/todos(/[^/?]+)?$"), lose_first_answers)
        visit.context.set_offline(False)
        wait_until_sent(visit)
        assert sorted(lost) == ["create", "edit"]
        expect(page.get_by_text(WAITING)).to_have_count(0)
        on_server = todos_on_server(keel, sailor)
        assert sorted((todo["title"], todo["completed"]) for todo in on_server) == [
            ("Buy rope", True),
            ("Scrub the whole deck", True),
        ]
        # The page shows Keel's state: the same todos, by their real ids.
        expect(page.locator(".todo-title")).to_have_text(["Buy rope", "Scrub the whole deck"])
        ids = page.locator(".todo").evaluate_all("(rows) => rows.map((row) => Number(row.dataset.id))")
        assert sorted(ids) == sorted(todo["id"] for todo in on_server)
        # 0: what could not be sent offline, and the lost answers; 412: the edit sent again, whose
        # If-Match its own first landing made stale (the page then reads the todo, finds the edit
        # there, and counts it done).
        visit.watch.assert_clean(expected_http={0, 412})


def test_an_offline_edit_that_meets_a_newer_version_is_refused_and_said(
    browser: Browser, keel: Keel, screenshots: Path
) -> None:
    sailor = keel.register("offline_editor")
    token = keel.token(sailor)
    add_todo(keel, token, "Reef the main")
    with visit_without_worker(browser, keel, screenshots) as visit:
        page = visit.page
        visit.sign_in(sailor)
        expect(page.locator(".todo-title")).to_have_text(["Reef the main"])
        visit.context.set_offline(True)
        page.get_by_role("button", name="Edit “Reef the main”").click()
        page.get_by_label("Title").fill("Reef the main twice")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".todo", has_text="Reef the main twice").get_by_text(WAITING)).to_be_visible()
        # Meanwhile, from another device:
        todo_id = todos_on_server(keel, sailor)[0]["id"]
        with keel.api() as http:
            changed = http.patch(
                f"/api/v1/todos/{todo_id}",
                json={"title": "Reef the main now"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert changed.status_code == 200, changed.text

        visit.context.set_offline(False)
        wait_until_sent(visit)
        failures = page.locator(".sync-failures")
        expect(failures).to_contain_text(
            "Editing “Reef the main” was not saved: it was changed elsewhere meanwhile, so yours was not applied."
        )
        row = page.locator(".todo", has_text="Reef the main now")
        expect(row.get_by_role("alert")).to_contain_text("This changed elsewhere")
        expect(row.get_by_role("button", name="Reload")).to_be_visible()
        assert [todo["title"] for todo in todos_on_server(keel, sailor)] == ["Reef the main now"]
        visit.screenshot("todos-offline-refused-desktop")
        failures.get_by_role("button", name="Dismiss").click()
        expect(failures).to_be_hidden()
        expect(page.get_by_label("New todo")).to_be_focused()
        visit.watch.assert_clean(expected_http={0})


def test_an_offline_reload_keeps_the_waiting_todo_and_sends_it_once_online(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("reloading_sailor")
    add_todo(keel, keel.token(sailor), "Check the bilge pump")
    page = visit.page
    visit.sign_in(sailor)
    visit.goto("/todos")
    expect(page.get_by_text("Check the bilge pump")).to_be_visible()
    wait_for_worker(visit)
    page.reload()
    expect(page.get_by_text("Check the bilge pump")).to_be_visible()

    visit.context.set_offline(True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.get_by_label("New todo").fill("Pack the charts")
    page.get_by_role("button", name="Add todo").click()
    expect(page.locator(".todo", has_text="Pack the charts").get_by_text(WAITING)).to_be_visible()
    page.reload()  # the shell and the last list from the worker, the waiting todo from the outbox

    expect(page.locator(".todo", has_text="Pack the charts").get_by_text(WAITING)).to_be_visible()
    expect(page.get_by_text("Check the bilge pump")).to_be_visible()
    expect(page.locator("#offline")).to_contain_text(OFFLINE + " 1 change waits to be sent.")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        visit.screenshot(f"todos-offline-reloaded-phone-{scheme}")
        assert violations(page) == [], scheme

    visit.context.set_offline(False)  # signs in again from the refresh cookie, then sends it
    wait_until_sent(visit)
    expect(page.get_by_text(WAITING)).to_have_count(0)
    expect(page.locator(".todo-title")).to_have_text(["Pack the charts", "Check the bilge pump"])
    titles = sorted(todo["title"] for todo in todos_on_server(keel, sailor))
    assert titles == ["Check the bilge pump", "Pack the charts"]
