"""What a person does with Keel, end to end in Chromium against a real `keel serve`."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import WITH_SERVICES, Account, Keel, Visit, expect_signed_out_elsewhere, tick
from tests.browser.live_fake import without_live_updates

pytestmark = pytest.mark.slow  # a real server and a real browser

NEW_PASSWORD = "another calm sea 7 bells"


def test_the_server_runs_on_postgresql_and_redis_when_the_run_has_them_else_on_sqlite(keel: Keel) -> None:
    lines = [json.loads(line) for line in keel.log_path.read_text().splitlines() if line.startswith("{")]
    startup = next(line for line in lines if line.get("event") == "startup")

    assert startup["database"] == ("postgresql" if WITH_SERVICES else "sqlite")
    assert startup["redis"] is WITH_SERVICES


def todo_titles(page: Page) -> list[str]:
    return page.locator(".todo .todo-title").all_inner_texts()


def wait_for_todos(page: Page, titles: list[str]) -> None:
    expect(page.locator(".todo .todo-title")).to_have_text(titles)


def sign_up(visit: Visit, account: Account) -> None:
    page = visit.page
    visit.goto("/")
    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Username").fill(account.username)
    # A common password is refused, and the reason shows next to the password field.
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Create account").click()
    password_error = page.locator('[data-field="password"] .field-error')
    expect(password_error).to_be_visible()
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.get_by_text(account.email)).to_be_visible()


def test_a_member_signs_up_keeps_todos_writes_posts_and_recovers_the_account(
    visit: Visit, second_visit: Visit, keel: Keel
) -> None:
    page = visit.page
    # This journey's revoked session is found on the next step; test_live.py has the live stream
    # ending it at once.
    without_live_updates(page)
    account = Account(email="ada@example.com", username="ada")

    # Sign up, then verify through the emailed link.
    sign_up(visit, account)
    visit.screenshot("signup-check-inbox")
    visit.goto(keel.link(account.email, "verify-email").removeprefix(keel.url))
    expect(page.get_by_text("your email address is verified")).to_be_visible()
    assert page.url == f"{keel.url}/verify-email", "the token stays in the address bar"

    # Sign in: the todo list opens.
    visit.sign_in(account)
    expect(page).to_have_url(f"{keel.url}/todos")
    visit.watch.assert_no_token_in_storage(page)

    # Add todos; an empty title is refused next to the title field.
    add = page.get_by_role("form", name="Add a todo")
    add.get_by_role("button", name="Add todo").click()
    expect(add.locator('[data-field="title"] .field-error')).to_be_visible()
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    add.get_by_label("New todo").fill("Buy milk")
    add.get_by_label("Priority").select_option("high")
    add.get_by_label("Due date").fill(yesterday)
    add.get_by_role("button", name="Add todo").click()
    wait_for_todos(page, ["Buy milk"])
    add.get_by_label("New todo").fill("Write the report")
    add.get_by_label("Description (optional)").fill("Quarterly numbers\nand one chart")
    add.get_by_role("button", name="Add todo").click()
    wait_for_todos(page, ["Write the report", "Buy milk"])
    add.get_by_label("New todo").fill("Call the harbour master")
    add.get_by_label("Priority").select_option("low")
    add.get_by_role("button", name="Add todo").click()
    wait_for_todos(page, ["Call the harbour master", "Write the report", "Buy milk"])
    expect(page.locator(".todo", has_text="Buy milk").locator(".overdue")).to_be_visible()

    # Tick one done, then filter.
    tick(page, "Write the report")
    expect(page.locator(".todo.done .todo-title")).to_have_text(["Write the report"])
    page.get_by_text("Open", exact=True).click()
    wait_for_todos(page, ["Call the harbour master", "Buy milk"])
    page.get_by_text("Done", exact=True).click()
    wait_for_todos(page, ["Write the report"])
    page.get_by_text("All", exact=True).click()
    # Done todos wait under the open ones, in a closed "Completed (1)".
    wait_for_todos(page, ["Call the harbour master", "Buy milk", "Write the report"])
    expect(page.get_by_role("checkbox", name="Write the report")).to_be_hidden()
    page.get_by_text("Completed (1)").click()
    expect(page.get_by_role("checkbox", name="Write the report")).to_be_visible()

    # Search and sort.
    page.get_by_role("searchbox", name="Search").fill("MILK")
    wait_for_todos(page, ["Buy milk"])
    page.get_by_role("searchbox", name="Search").fill("")
    wait_for_todos(page, ["Call the harbour master", "Buy milk", "Write the report"])
    page.get_by_label("Sort by").select_option("-priority")
    wait_for_todos(page, ["Buy milk", "Call the harbour master", "Write the report"])
    expect(page).to_have_url(re.compile(r"/todos\?sort=-priority$"))

    # Edit in place; Escape cancels, Save saves.
    row = page.locator(".todo", has_text="Call the harbour master")
    row.get_by_role("button", name="Edit “Call the harbour master”").click()
    page.locator(".todo-edit").get_by_label("Title").fill("Never saved")
    page.locator(".todo-edit").get_by_label("Title").press("Escape")
    wait_for_todos(page, ["Buy milk", "Call the harbour master", "Write the report"])
    row.get_by_role("button", name="Edit “Call the harbour master”").click()
    editor = page.locator(".todo-edit")
    editor.get_by_label("Title").fill("Call the harbourmaster about the mooring")
    editor.get_by_label("Priority").select_option("high")
    editor.get_by_role("button", name="Save").click()
    expect(page.locator(".todo-edit")).to_have_count(0)
    expect(page.get_by_text("Call the harbourmaster about the mooring")).to_be_visible()

    # Delete goes at once, with an Undo that brings the todo back; left alone, the delete is sent.
    delete = page.get_by_role("button", name="Delete “Buy milk”")
    delete.click()
    expect(page.locator(".todo", has_text="Buy milk")).to_have_count(0)
    page.locator(".undo-toast").get_by_role("button", name="Undo").click()
    wait_for_todos(page, ["Buy milk", "Call the harbourmaster about the mooring", "Write the report"])
    delete.click()
    expect(page.locator(".todo", has_text="Buy milk")).to_have_count(0)
    expect(page.locator(".undo-toast")).to_be_empty(timeout=10_000)
    expect(page.get_by_text("Buy milk")).to_have_count(0)
    visit.screenshot("todos")

    # A long list pages; the page survives a reload.
    token = keel.token(account)
    with keel.api() as http:
        for number in range(1, 24):
            created = http.post(
                "/api/v1/todos", json={"title": f"Chore {number:02d}"}, headers={"Authorization": f"Bearer {token}"}
            )
            assert created.status_code == 201, created.text
        assert http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    page.get_by_label("Sort by").select_option("created_at")
    expect(page.get_by_text("Page 1 of 2")).to_be_visible()
    expect(page.locator(".todo")).to_have_count(20)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    wait_for_todos(page, ["Chore 19", "Chore 20", "Chore 21", "Chore 22", "Chore 23"])
    page.reload()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)

    # Write a draft, then publish it.
    page.get_by_role("link", name="My posts").click()
    page.get_by_role("link", name="Write a post").click()
    page.get_by_label("Title").fill("Knots every sailor should know")
    page.get_by_label("Text").fill("The bowline first.\n\nThen the clove hitch, and the reef knot.")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("heading", name="Knots every sailor should know")).to_be_visible()
    expect(page.locator(".badge.draft")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Vote"))).to_have_count(0)
    page.get_by_role("link", name="My posts").click()
    page.get_by_role("link", name="Drafts").click()
    expect(page.get_by_role("link", name="Knots every sailor should know", exact=True)).to_be_visible()
    page.get_by_role("link", name="Edit “Knots every sailor should know”").click()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".badge.draft")).to_have_count(0)
    # An author does not vote for their own post (the API refuses it): the count, and no button.
    expect(page.locator(".post .votes")).to_have_text("▲ 0 votes")
    expect(page.get_by_role("button", name=re.compile("Vote"))).to_have_count(0)
    visit.screenshot("post")

    # Signed out, the feed still shows it with its vote.
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.get_by_role("link", name="Feed").click()
    card = page.locator(".post-card", has_text="Knots every sailor should know")
    expect(card).to_contain_text("0 votes")
    expect(card).to_contain_text("@ada")
    visit.screenshot("feed-signed-out")
    card.get_by_role("link", name="Knots every sailor should know", exact=True).click()
    expect(page.get_by_role("link", name="Sign in to vote")).to_be_visible()

    # Signed in twice, the second browser revokes the first one's session ...
    visit.sign_in(account)
    second_visit.sign_in(account)
    other = second_visit.page
    other.get_by_role("link", name="ada").click()
    sessions = other.locator(".session-list li")
    expect(sessions).to_have_count(2)
    visit.screenshot("todos-before-revocation")
    second_visit.screenshot("account")
    other.get_by_role("button", name=re.compile("^Revoke the session")).click()
    expect(sessions).to_have_count(1)
    # ... and the first is sent to sign-in on its next step.
    page.get_by_role("link", name="Todos").click()
    expect(page).to_have_url(re.compile(r"/signin"))
    expect(page.get_by_text("Your session ended. Please sign in again.")).to_be_visible()

    # Forgot the password: reset it from the emailed link.
    mails_before = len(keel.mails(account.email))
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(account.email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status").filter(has_text="a reset link is on its way")).to_be_visible()
    link = keel.link(account.email, "reset-password", after=mails_before)
    visit.goto(link.removeprefix(keel.url))
    assert page.url == f"{keel.url}/reset-password"
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + "!")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator('[data-field="confirm_password"] .field-error')).to_be_visible()
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    # The old password no longer works; the new one does.
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect email or password")
    visit.sign_in(account, password=NEW_PASSWORD)
    # The reset ended the second browser's session too.
    expect_signed_out_elsewhere(other)

    visit.watch.assert_no_token_in_storage(page)
    second_visit.watch.assert_no_token_in_storage(other)
    # Expected failures, each one shown to the person: the common password and the empty
    # title (422), the revoked session (401), the mismatched passwords (400) and the old
    # password (401).
    visit.watch.assert_clean(expected_http={400, 401, 422})
    second_visit.watch.assert_clean(expected_http={401})
