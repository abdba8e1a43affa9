"""The public feed: paging and search, and deleting a post (by its author, or by an admin)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Account, Keel, Visit
from tests.browser.test_admin import create_admin

pytestmark = pytest.mark.slow  # a real server and a real browser


def publish(keel: Keel, author: Account, title: str, content: str = "Plain sailing.") -> int:
    token = keel.token(author)
    with keel.api() as http:
        headers = {"Authorization": f"Bearer {token}"}
        created = http.post(
            "/api/v1/posts", json={"title": title, "content": content, "published": True}, headers=headers
        )
        assert created.status_code == 201, created.text
        assert http.post("/api/v1/auth/logout", headers=headers).status_code == 204
        return int(created.json()["id"])


def test_the_feed_pages_and_searches_without_signing_in(visit: Visit, keel: Keel) -> None:
    author = keel.register("log_keeper")
    token = keel.token(author)
    with keel.api() as http:
        for day in range(1, 26):
            post = {"title": f"Log, day {day:02d}", "content": f"Wind force {day % 7}.", "published": True}
            created = http.post("/api/v1/posts", json=post, headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201, created.text
    page = visit.page

    visit.goto("/")
    cards = page.locator(".post-card")
    expect(cards).to_have_count(20)
    expect(cards.first).to_contain_text("Log, day 25")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(cards).to_have_count(5)
    expect(cards.last).to_contain_text("Log, day 01")
    page.go_back()
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()

    page.get_by_role("searchbox", name="Search posts").fill("day 07")
    page.get_by_role("button", name="Search").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Log, day 07")
    page.get_by_role("searchbox", name="Search posts").fill("no such log")
    page.get_by_role("searchbox", name="Search posts").press("Enter")
    expect(page.get_by_text("No posts match “no such log”.")).to_be_visible()
    # The empty result offers the way back to every post.
    page.get_by_role("link", name="Clear the search").click()
    expect(page.get_by_role("searchbox", name="Search posts")).to_have_value("")
    expect(cards).to_have_count(20)
    # Anonymous visitors never refresh or sign in: nothing to watch for but errors.
    assert visit.watch.problems == []
    assert visit.watch.http_errors == []


def test_an_author_deletes_their_post_and_an_admin_deletes_anyone_s(visit: Visit, keel: Keel) -> None:
    author = keel.register("short_lived")
    first = publish(keel, author, "Gone by noon")
    second = publish(keel, author, "Against the rules")
    page = visit.page

    visit.sign_in(author)
    visit.goto(f"/posts/{first}")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{keel.url}/my-posts")
    expect(page.get_by_role("link", name="Gone by noon")).to_have_count(0)
    page.go_back()
    expect(page).not_to_have_url(f"{keel.url}/posts/{first}")
    page.get_by_role("button", name="Sign out", exact=True).click()

    admin = create_admin(keel, "moderator")
    visit.sign_in(admin)
    visit.goto(f"/posts/{second}")
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)  # only the author edits
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page).to_have_url(f"{keel.url}/")
    expect(page.get_by_text("Against the rules")).to_have_count(0)
    visit.goto(f"/posts/{second}")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    visit.watch.assert_clean(expected_http={404})


def test_an_empty_page_says_what_to_do_next(visit: Visit, keel: Keel) -> None:
    newcomer = keel.register("blank_page")
    page = visit.page
    visit.sign_in(newcomer)

    visit.goto("/my-posts")
    page.get_by_role("link", name="Drafts").click()
    expect(page.get_by_text("No drafts. A post you save without publishing waits here.")).to_be_visible()
    page.get_by_role("link", name="All", exact=True).click()
    expect(page.get_by_text("You have not written anything yet.")).to_be_visible()
    page.get_by_role("link", name="Write your first post").click()
    expect(page).to_have_url(f"{keel.url}/posts/new")
    expect(page.get_by_role("heading", name="Write a post")).to_be_visible()
    visit.watch.assert_clean()
