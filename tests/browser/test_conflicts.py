"""A change made elsewhere while the page was open: saving or deleting here meets 412, which the page
shows where the action was, in plain words, with a Reload; nothing is overwritten, and what was
typed is kept. The other client here is the API itself, with a session of its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, ViewportSize, expect

from tests.browser.conftest import Account, Keel, Visit
from tests.browser.test_posts import publish

pytestmark = pytest.mark.slow  # a real server and a real browser

CHANGED = "This changed elsewhere since you opened it. Reload to see the latest, then make your change again."
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


@contextmanager
def elsewhere(keel: Keel, account: Account) -> Iterator[httpx.Client]:
    """The API, signed in as `account` in a session of its own."""
    with keel.api() as http:
        http.headers["Authorization"] = f"Bearer {keel.token(account)}"
        yield http


def change(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    answer = http.patch(path, json=body)  # no If-Match: the other client does not care
    assert answer.status_code == 200, answer.text


def capture(visit: Visit, name: str) -> None:
    """The page as it is now, at desktop and phone width; nothing may stick out sideways on the phone."""
    visit.screenshot(f"{name}-desktop")
    visit.page.set_viewport_size(PHONE)
    assert visit.page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    visit.screenshot(f"{name}-phone")
    visit.page.set_viewport_size(DESKTOP)


def expect_changed_elsewhere(where: Locator, *, timeout: float = 5000) -> None:
    alert = where.get_by_role("alert")
    expect(alert).to_contain_text(CHANGED, timeout=timeout)
    expect(alert.get_by_role("button", name="Reload")).to_be_visible()


def test_a_todo_changed_elsewhere_is_neither_overwritten_nor_lost(visit: Visit, keel: Keel) -> None:
    member = keel.register("tiller_keeper")
    page = visit.page
    with elsewhere(keel, member) as http:
        created = http.post("/api/v1/todos", json={"title": "Varnish the tiller"})
        path = f"/api/v1/todos/{created.json()['id']}"
        visit.sign_in(member)
        row = page.locator(".todo", has_text="Varnish the tiller")
        row.get_by_role("button", name="Edit “Varnish the tiller”").click()
        editor = page.locator(".todo-edit")
        expect(editor.get_by_label("Title")).to_have_value("Varnish the tiller")
        editor.get_by_label("Title").fill("Varnish the tiller twice")

        change(http, path, {"title": "Sand the tiller", "description": "Fine grit first."})
        editor.get_by_role("button", name="Save").click()

        expect_changed_elsewhere(editor)
        expect(editor.get_by_label("Title")).to_have_value("Varnish the tiller twice")  # still as typed
        assert http.get(path).json()["title"] == "Sand the tiller"  # not overwritten
        capture(visit, "conflict-todo")

        # Reload shows the other change; the clashing title is kept beside its field, to put back.
        editor.get_by_role("button", name="Reload").click()
        expect(editor.get_by_label("Title")).to_have_value("Sand the tiller")
        expect(editor.get_by_label("Description")).to_have_value("Fine grit first.")
        expect(editor.locator(".typed")).to_contain_text("Varnish the tiller twice")
        capture(visit, "conflict-todo-reloaded")
        editor.get_by_role("button", name="Use mine").click()
        editor.get_by_role("button", name="Save").click()
        row = page.locator(".todo", has_text="Varnish the tiller twice")
        expect(row).to_contain_text("Fine grit first.")
        # The row shows an edit at once; it is saved when the row is no longer busy.
        expect(page.locator(".todo[data-busy]")).to_have_count(0)
        assert http.get(path).json()["title"] == "Varnish the tiller twice"

        # The row now has the saved version's ETag: a second edit needs no reading first.
        row.get_by_role("button", name="Edit “Varnish the tiller twice”").click()
        editor.get_by_label("Description").fill("Fine grit, then a coat.")
        editor.get_by_role("button", name="Save").click()
        expect(row).to_contain_text("Fine grit, then a coat.")
        expect(page.locator(".todo[data-busy]")).to_have_count(0)

        # A delete waits behind its Undo; what changed meanwhile is not deleted (the DELETE's
        # If-Match meets a newer version): the row comes back and says so.
        row.get_by_role("button", name="Delete “Varnish the tiller twice”").click()
        expect(page.locator(".todo")).to_have_count(0)
        change(http, path, {"title": "Oil the tiller"})
        expect_changed_elsewhere(row, timeout=10_000)
        assert http.get(path).status_code == 200
        capture(visit, "conflict-todo-delete")
        row.get_by_role("button", name="Reload").click()
        row = page.locator(".todo", has_text="Oil the tiller")
        with page.expect_response(lambda answer: answer.request.method == "DELETE", timeout=10_000) as deleted:
            row.get_by_role("button", name="Delete “Oil the tiller”").click()
            expect(page.locator(".todo")).to_have_count(0)
        assert deleted.value.status == 204
        assert http.get(path).status_code == 404
    visit.watch.assert_clean(expected_http={412})


def test_a_post_changed_elsewhere_keeps_the_authors_edit_and_the_other_change(visit: Visit, keel: Keel) -> None:
    author = keel.register("chart_maker")
    post_id = publish(keel, author, "Reading the chart", "Depths are in metres.")
    path = f"/api/v1/posts/{post_id}"
    page = visit.page
    with elsewhere(keel, author) as http:
        visit.sign_in(author)
        visit.goto(f"/posts/{post_id}/edit")
        form = page.locator("form")
        expect(form.get_by_label("Text")).to_have_value("Depths are in metres.")
        form.get_by_label("Text").fill("Depths are in metres.\n\nHeights are above high water.")

        change(http, path, {"title": "Reading the chart, part one"})
        form.get_by_role("button", name="Save").click()

        expect_changed_elsewhere(form)
        assert http.get(path).json()["content"] == "Depths are in metres."
        capture(visit, "conflict-post")

        # Only the title changed elsewhere, only the text here: Reload keeps both.
        form.get_by_role("button", name="Reload").click()
        expect(form.get_by_label("Title")).to_have_value("Reading the chart, part one")
        expect(form.get_by_label("Text")).to_have_value("Depths are in metres.\n\nHeights are above high water.")
        expect(form.get_by_role("alert")).to_contain_text("with your changes kept")
        form.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Reading the chart, part one")).to_be_visible()
        expect(page.get_by_text("Heights are above high water.")).to_be_visible()
        saved = http.get(path).json()
        assert (saved["title"], saved["content"]) == (
            "Reading the chart, part one",
            "Depths are in metres.\n\nHeights are above high water.",
        )

        # Deleting a post changed since the page was read deletes nothing; after Reload it does.
        change(http, path, {"title": "Reading the chart, revised"})
        page.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect_changed_elsewhere(page.locator(".post"))
        assert http.get(path).status_code == 200
        capture(visit, "conflict-post-delete")
        page.get_by_role("button", name="Reload").click()
        expect(page.get_by_role("heading", name="Reading the chart, revised")).to_be_visible()
        # Authors do not vote for their own posts: the page shows the count, no button.
        expect(page.get_by_role("button", name=re.compile("Vote"))).to_have_count(0)
        page.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        expect(page).to_have_url(f"{keel.url}/my-posts")
        assert http.get(path).status_code == 404
    visit.watch.assert_clean(expected_http={412})


def test_an_account_changed_elsewhere_is_neither_overwritten_nor_deleted_unseen(visit: Visit, keel: Keel) -> None:
    member = keel.register("two_devices")
    page = visit.page
    with elsewhere(keel, member) as http:
        visit.sign_in(member)
        page.get_by_role("link", name="two_devices").click()
        profile = page.locator("section", has=page.get_by_role("heading", name="Profile"))
        expect(profile.get_by_label("Username")).to_have_value("two_devices")
        profile.get_by_label("Full name").fill("Ann Bonny")

        change(http, "/api/v1/users/me", {"full_name": "Mary Read"})
        profile.get_by_role("button", name="Save profile").click()

        expect_changed_elsewhere(profile)
        assert http.get("/api/v1/users/me").json()["full_name"] == "Mary Read"
        capture(visit, "conflict-account")
        profile.get_by_role("button", name="Reload").click()
        expect(profile.get_by_label("Full name")).to_have_value("Mary Read")
        expect(profile.locator(".typed")).to_contain_text("Ann Bonny")
        profile.get_by_role("button", name="Use mine").click()
        profile.get_by_role("button", name="Save profile").click()
        expect(page.get_by_role("status").filter(has_text="Profile saved.")).to_be_visible()
        assert http.get("/api/v1/users/me").json()["full_name"] == "Ann Bonny"

        # Deleting the account after it changed elsewhere waits until the page shows the change.
        change(http, "/api/v1/users/me", {"username": "one_device"})
        remove = page.locator("section", has=page.get_by_role("heading", name="Delete account"))
        remove.get_by_label("Your password").fill(member.password)
        remove.get_by_role("button", name="Delete my account").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete account").click()
        expect_changed_elsewhere(remove)
        assert http.get("/api/v1/users/me").status_code == 200
        remove.get_by_role("button", name="Reload").click()
        expect(profile.get_by_label("Username")).to_have_value("one_device")
        remove.get_by_label("Your password").fill(member.password)
        remove.get_by_role("button", name="Delete my account").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete account").click()
        expect(page.get_by_role("link", name="Sign in")).to_be_visible()
        assert http.get("/api/v1/users/me").status_code == 401
    visit.watch.assert_clean(expected_http={412})
