"""The paged lists (todos, feed, my posts, users): the pager keeps a list's filters and page in
the address, a slow answer to an older load never overwrites a newer one, and an action that
fails says why beside the thing it was about."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Account, Keel, Visit
from tests.browser.live_fake import without_live_updates
from tests.browser.test_admin import create_admin

pytestmark = pytest.mark.slow  # a real server and a real browser


def seed(keel: Keel, account: Account, path: str, bodies: list[dict[str, Any]]) -> list[int]:
    token = keel.token(account)
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    with keel.api() as http:
        for body in bodies:
            created = http.post(f"/api/v1/{path}", json=body, headers=headers)
            assert created.status_code == 201, created.text
            ids.append(int(created.json()["id"]))
        assert http.post("/api/v1/auth/logout", headers=headers).status_code == 204
    return ids


class Held:
    """API requests whose URL matches, kept unanswered until `release()`."""

    def __init__(self, page: Page, pattern: str) -> None:
        self.page = page
        self.pattern = re.compile(pattern)
        self.routes: list[Route] = []

    def __call__(self, route: Route) -> None:
        if self.pattern.search(route.request.url) and not self.routes:
            self.routes.append(route)  # answered later, by release()
        else:
            route.fallback()

    def wait(self) -> None:
        for _ in range(100):
            if self.routes:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"no request matched {self.pattern.pattern}")

    def release(self) -> None:
        """Answer the held request, and give the page time to (wrongly) draw it."""
        with self.page.expect_response(lambda response: bool(self.pattern.search(response.url))) as answered:
            self.routes[0].continue_()
        answered.value.finished()
        self.page.wait_for_timeout(500)


def test_the_todo_pager_keeps_filter_sort_and_search_in_the_address(visit: Visit, keel: Keel) -> None:
    member = keel.register("pager_member")
    seed(keel, member, "todos", [{"title": f"Chore {n:02d}"} for n in range(1, 24)])
    for todo_id in seed(keel, member, "todos", [{"title": "Finished 1"}, {"title": "Finished 2"}]):
        with keel.api() as http:
            token = keel.token(member)
            ticked = http.patch(
                f"/api/v1/todos/{todo_id}", json={"completed": True}, headers={"Authorization": f"Bearer {token}"}
            )
            assert ticked.status_code == 200, ticked.text
    page = visit.page
    titles = page.locator(".todo .todo-title")
    visit.sign_in(member)

    visit.goto("/todos?filter=open&sort=created_at")
    expect(page.get_by_role("radio", name="Open")).to_be_checked()
    expect(page.get_by_label("Sort by")).to_have_value("created_at")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(f"{keel.url}/todos?filter=open&sort=created_at&page=2")
    expect(titles).to_have_text(["Chore 21", "Chore 22", "Chore 23"])
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_role("button", name="Previous").click()
    expect(page).to_have_url(f"{keel.url}/todos?filter=open&sort=created_at")
    expect(titles.first).to_have_text("Chore 01")

    # A new sort, filter or search starts again at the first page.
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    page.get_by_label("Sort by").select_option("-created_at")
    expect(page).to_have_url(f"{keel.url}/todos?filter=open")
    expect(titles.first).to_have_text("Chore 23")
    page.locator(".segmented label", has_text="Done").click()
    expect(page).to_have_url(f"{keel.url}/todos?filter=done")
    expect(titles).to_have_text(["Finished 2", "Finished 1"])
    expect(page.locator(".pager")).to_be_hidden()
    page.get_by_role("searchbox", name="Search").fill("Finished 1")
    expect(page).to_have_url(f"{keel.url}/todos?filter=done&q=Finished+1")
    expect(titles).to_have_text(["Finished 1"])
    expect(page.get_by_text("1 todo matching “Finished 1”")).to_be_visible()

    # An address past the last page shows the last page, and the address says so.
    visit.goto("/todos?page=9")
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/todos?page=2")
    expect(titles).to_have_text(["Chore 05", "Chore 04", "Chore 03", "Chore 02", "Chore 01"])
    visit.watch.assert_clean()


def test_a_slow_older_todo_load_never_overwrites_a_newer_one(visit: Visit, keel: Keel) -> None:
    member = keel.register("slow_member")
    [done] = seed(keel, member, "todos", [{"title": "Finished chore"}])
    seed(keel, member, "todos", [{"title": "Open chore"}])
    with keel.api() as http:
        token = keel.token(member)
        ticked = http.patch(
            f"/api/v1/todos/{done}", json={"completed": True}, headers={"Authorization": f"Bearer {token}"}
        )
        assert ticked.status_code == 200, ticked.text
    page = visit.page
    titles = page.locator(".todo .todo-title")
    visit.sign_in(member)
    expect(titles).to_have_text(["Open chore", "Finished chore"])

    held = Held(page, r"/api/v1/todos\?.*completed=true")
    page.route("**/api/v1/todos?*", held)
    page.locator(".segmented label", has_text="Done").click()
    held.wait()
    page.locator(".segmented label", has_text="Open").click()
    expect(titles).to_have_text(["Open chore"])
    expect(page).to_have_url(f"{keel.url}/todos?filter=open")

    held.release()
    expect(titles).to_have_text(["Open chore"])
    expect(page).to_have_url(f"{keel.url}/todos?filter=open")
    visit.watch.assert_clean()


def test_a_slow_older_user_search_never_overwrites_a_newer_one(visit: Visit, keel: Keel) -> None:
    admin = create_admin(keel, "lists_admin")
    keel.register("slow_sailor", verified=False)
    page = visit.page
    rows = page.locator("table.users tbody tr")
    visit.sign_in(admin)
    visit.goto("/admin/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()

    held = Held(page, r"/api/v1/admin/users\?.*q=slow_sailor")
    page.route("**/api/v1/admin/users?*", held)
    search = page.get_by_role("searchbox", name="Search")
    search.fill("slow_sailor")
    search.press("Enter")
    held.wait()
    search.fill("lists_admin")
    search.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("lists_admin")

    held.release()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("lists_admin")
    expect(page.get_by_text("1 user", exact=True)).to_be_visible()
    visit.watch.assert_clean()


def test_the_user_pager_keeps_the_search_across_pages(visit: Visit, keel: Keel) -> None:
    admin = create_admin(keel, "pager_admin")
    for n in range(1, 23):
        keel.register(f"deck_{n:02d}", verified=False)
    page = visit.page
    rows = page.locator("table.users tbody tr")
    visit.sign_in(admin)
    visit.goto("/admin/users")
    search = page.get_by_role("searchbox", name="Search")
    search.fill("deck_")
    search.press("Enter")
    expect(page.get_by_text("22 users")).to_be_visible()
    expect(rows).to_have_count(20)
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()

    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    # A new filter starts again at the first page, with the search still applied.
    page.get_by_label("Status", exact=True).select_option("false")
    expect(page.get_by_text("0 users")).to_be_visible()
    expect(page.locator(".pager")).to_be_hidden()
    page.get_by_label("Status", exact=True).select_option("")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(rows).to_have_count(20)
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Previous").click()
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(rows.first).to_contain_text("deck_")
    visit.watch.assert_clean()


def test_the_post_pagers_keep_the_search_and_tab_in_the_address(visit: Visit, keel: Keel) -> None:
    author = keel.register("pager_author")
    posts = [{"title": f"Harbour log {n:02d}", "content": "Tide in.", "published": True} for n in range(1, 22)]
    drafts = [{"title": f"Harbour draft {n}", "content": "Not yet.", "published": False} for n in range(1, 3)]
    seed(keel, author, "posts", [*posts, *drafts])
    page = visit.page
    cards = page.locator(".post-card")

    visit.goto("/?q=Harbour")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Newer")).to_be_disabled()
    page.get_by_role("button", name="Older").click()
    expect(page).to_have_url(f"{keel.url}/?q=Harbour&offset=20")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Harbour log 01")
    expect(page.get_by_role("searchbox", name="Search posts")).to_have_value("Harbour")
    page.get_by_role("button", name="Newer").click()
    expect(page).to_have_url(f"{keel.url}/?q=Harbour")
    expect(cards).to_have_count(20)

    visit.sign_in(author)
    visit.goto("/my-posts?show=published")
    items = page.locator(".mine-list li")
    expect(items).to_have_count(20)
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(f"{keel.url}/my-posts?show=published&offset=20")
    expect(items).to_have_count(1)
    expect(page.get_by_role("link", name="Published")).to_have_attribute("aria-current", "page")
    page.get_by_role("button", name="Previous").click()
    expect(page).to_have_url(f"{keel.url}/my-posts?show=published")
    page.get_by_role("link", name="Drafts").click()
    expect(items).to_have_count(2)
    expect(page.locator(".pager")).to_be_hidden()
    visit.watch.assert_clean()


def test_an_action_that_fails_says_why_beside_it(visit: Visit, second_visit: Visit, keel: Keel) -> None:
    member = keel.register("unlucky_member", verified=False)
    author = keel.register("lucky_author")
    [todo] = seed(keel, member, "todos", [{"title": "Gone elsewhere"}])
    [post] = seed(keel, author, "posts", [{"title": "Worth a vote", "content": "Yes.", "published": True}])
    page = visit.page
    without_live_updates(page)  # else the row would go as soon as the other tab deletes it
    visit.sign_in(member)
    row = page.locator(".todo", has_text="Gone elsewhere")
    expect(row).to_be_visible()

    # The todo is deleted in another tab; ticking it here says so in its row.
    with keel.api() as http:
        token = keel.token(member)
        assert http.delete(f"/api/v1/todos/{todo}", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    # A click, not check(): the box goes back at once when the tick fails, which is the point.
    row.get_by_role("checkbox").click()
    expect(row.get_by_role("alert")).to_be_visible()
    expect(row.get_by_role("alert")).not_to_be_empty()
    expect(row.get_by_role("checkbox")).not_to_be_checked()

    # An unverified member's vote is refused, with the way to verify beside it.
    visit.goto(f"/posts/{post}")
    page.get_by_role("button", name=re.compile("Vote")).click()
    alert = page.locator(".post").get_by_role("alert")
    expect(alert).to_contain_text("Verify your email address before voting.")
    expect(alert.get_by_role("link", name="Verify your email on your account page.")).to_have_attribute(
        "href", "/account"
    )

    # An account deleted by another admin cannot have its role changed: its row says why.
    admin = create_admin(keel, "busy_admin")
    other = create_admin(keel, "other_admin")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    visit.sign_in(admin)
    visit.goto("/admin/users")
    page.get_by_role("searchbox", name="Search").fill("unlucky")
    page.get_by_role("searchbox", name="Search").press("Enter")
    second_visit.sign_in(other)
    second_visit.goto("/admin/users")
    second_visit.page.get_by_role("searchbox", name="Search").fill("unlucky")
    second_visit.page.get_by_role("searchbox", name="Search").press("Enter")
    second_visit.page.get_by_role("button", name="Delete unlucky_member").click()
    second_visit.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(second_visit.page.get_by_text("unlucky_member is deleted.")).to_be_visible()
    user_row = page.locator("table.users tbody tr", has_text="unlucky_member")
    user_row.get_by_label("Role of unlucky_member").select_option("admin")
    page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
    expect(user_row.get_by_role("alert")).to_be_visible()
    expect(user_row.get_by_role("alert")).not_to_be_empty()
    expect(user_row.get_by_label("Role of unlucky_member")).to_have_value("user")
    visit.watch.assert_clean(expected_http={403, 404})
