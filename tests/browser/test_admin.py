"""The admin journey: find accounts, change a role, deactivate, reactivate and delete."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import FloatRect, Locator, expect

from tests.browser.conftest import PASSWORD, Account, Keel, Visit

pytestmark = pytest.mark.slow  # a real server and a real browser


def create_admin(keel: Keel, name: str) -> Account:
    account = Account(email=f"{name}@example.com", username=name)
    result = subprocess.run(
        [sys.executable, "-m", "keel", "create-admin", account.email, "--username", name],
        env={**keel.env, "KEEL_ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return account


def assert_apart(one: FloatRect | None, other: FloatRect | None) -> None:
    """Two boxes on the screen do not overlap."""
    assert one is not None
    assert other is not None
    apart_across = one["x"] + one["width"] <= other["x"] or other["x"] + other["width"] <= one["x"]
    apart_down = one["y"] + one["height"] <= other["y"] or other["y"] + other["height"] <= one["y"]
    assert apart_across or apart_down, (one, other)


def test_an_admin_manages_users(visit: Visit, keel: Keel) -> None:
    admin = create_admin(keel, "harbour_admin")
    sailors = [keel.register(f"sailor_{n}") for n in range(2)]
    sailors.append(keel.register("sailor_2", verified=False))
    member = keel.register("deckhand")
    member_token = keel.token(member)
    page = visit.page

    visit.sign_in(admin)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(5)
    visit.screenshot("admin-users")

    # Whether each email is verified, and when each account last used Keel: the deckhand signed in
    # a moment ago, sailor_2 never has.
    def cell(username: str, column: str) -> Locator:
        return rows.filter(has_text=f"{username}@example.com").locator(f"td[data-label='{column}']")

    expect(cell("deckhand", "Last seen")).to_have_text(re.compile(r"now|seconds? ago|minutes? ago"))
    expect(cell("deckhand", "Last seen").locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    expect(cell("sailor_2", "Last seen")).to_have_text("Not on record")
    expect(page.get_by_label("deckhand's email is verified")).to_be_checked()
    unverified = page.get_by_label("sailor_2's email is verified")
    expect(unverified).not_to_be_checked()
    # An address confirmed another way can be marked verified by hand, after a confirmation.
    unverified.click()
    page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
    expect(page.get_by_role("status").filter(has_text="sailor_2's email is verified")).to_be_visible()
    expect(page.get_by_label("sailor_2's email is verified")).to_be_checked()
    expect(page.get_by_label("sailor_2's email is verified")).to_be_focused()
    visit.screenshot("admin-users-columns")

    # On a phone the toast never covers the row just changed: at the bottom when the row is high
    # on the screen, at the top when it is low.
    page.set_viewport_size({"width": 360, "height": 740})
    toast = page.locator("#toast")
    box = page.get_by_label("sailor_2's email is verified")
    for block, said in (("end", "sailor_2's email is no longer verified."), ("start", "sailor_2's email is verified.")):
        box.evaluate(f"(el) => el.scrollIntoView({{block: '{block}'}})")
        box.click()
        page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
        expect(toast).to_have_text(said)
        expect(box).to_be_enabled()
        assert_apart(toast.bounding_box(), rows.filter(has_text="sailor_2@example.com").bounding_box())
    visit.screenshot("admin-users-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Search as you type (no button press), and filter by role.
    page.get_by_role("searchbox", name="Search").press_sequentially("sailor", delay=30)
    expect(rows).to_have_count(3)
    expect(page.get_by_text("3 users")).to_be_visible()
    page.get_by_role("searchbox", name="Search").fill("")
    page.get_by_label("Role", exact=True).select_option("admin")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("harbour_admin")
    # The admin cannot demote, deactivate or delete themself from here.
    expect(page.get_by_label("Role of harbour_admin")).to_be_disabled()
    expect(page.get_by_role("button", name="Delete harbour_admin")).to_be_disabled()
    page.get_by_label("Role", exact=True).select_option("")
    expect(rows).to_have_count(5)

    # Browsing the options with the keyboard changes nothing until it is confirmed.
    role = page.get_by_label("Role of sailor_1")
    role.focus()
    page.keyboard.press("ArrowDown")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Make sailor_1 an admin?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(role).to_have_value("user")
    expect(role).to_be_focused()

    # Promote a sailor; the role sticks after a reload.
    page.get_by_label("Role of sailor_0").select_option("admin")
    page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
    expect(page.get_by_role("status").filter(has_text="sailor_0 is now an admin")).to_be_visible()
    expect(page.get_by_label("Role of sailor_0")).to_be_focused()
    page.reload()
    expect(page.get_by_label("Role of sailor_0")).to_have_value("admin")

    # Deactivate the deckhand: their session ends at once; reactivate.
    with keel.api() as http:
        assert http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {member_token}"}).status_code == 200
        page.get_by_label("deckhand is active").uncheck()
        page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
        expect(page.get_by_role("status").filter(has_text="deckhand is deactivated")).to_be_visible()
        assert http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {member_token}"}).status_code == 401
        refused = http.post("/api/v1/auth/login", data={"username": member.email, "password": member.password})
        assert refused.status_code == 403
        page.get_by_label("Status").select_option("false")
        expect(rows).to_have_count(1)
        page.get_by_label("deckhand is active").check()
        page.get_by_role("dialog").get_by_role("button", name="Yes, change it").click()
        expect(page.get_by_role("status").filter(has_text="deckhand is active again")).to_be_visible()
        page.get_by_label("Status").select_option("")
        allowed = http.post("/api/v1/auth/login", data={"username": member.email, "password": member.password})
        assert allowed.status_code == 200

    # The deckhand's security history, as the admin reads it; nothing there for the admin to disown.
    page.get_by_role("button", name="Security activity of deckhand").click()
    history = page.get_by_role("dialog", name="Activity of deckhand")
    expect(history.get_by_text("Signed in with password").first).to_be_visible()
    expect(history.get_by_role("button", name="This wasn't me")).to_have_count(0)
    visit.screenshot("admin-user-activity")
    page.keyboard.press("Escape")
    expect(history).to_have_count(0)
    expect(page.get_by_role("button", name="Security activity of deckhand")).to_be_focused()

    with keel.api() as http:
        role_check = http.post("/api/v1/auth/login", data={"username": sailors[1].email, "password": PASSWORD})
        token = role_check.json()["access_token"]
        me = http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["role"] == "user", "the cancelled change was never sent"

    # Delete a sailor, through the confirmation.
    page.get_by_role("button", name="Delete sailor_2").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("sailor_2@example.com")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_label("Role of sailor_2")).to_have_count(0)
    expect(rows).to_have_count(4)
    with keel.api() as http:
        refused = http.post("/api/v1/auth/login", data={"username": sailors[2].email, "password": PASSWORD})
        assert refused.status_code == 401

    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean()


def test_a_member_cannot_open_the_users_page(visit: Visit, keel: Keel) -> None:
    member = keel.register("curious")
    visit.sign_in(member)

    expect(visit.page.get_by_role("link", name="Users")).to_have_count(0)
    visit.goto("/admin/users")
    expect(visit.page.get_by_role("heading", name="Admins only")).to_be_visible()
    expect(visit.page.locator("table")).to_have_count(0)
    visit.watch.assert_clean()


def test_signed_out_visitors_are_sent_to_sign_in_and_back(visit: Visit, keel: Keel) -> None:
    member = keel.register("returning")
    visit.goto("/todos?filter=open")

    expect(visit.page).to_have_url(re.compile(r"/signin\?next=%2Ftodos%3Ffilter%3Dopen$"))
    visit.page.get_by_label("Email").fill(member.email)
    visit.page.get_by_label("Password").fill(member.password)
    visit.page.get_by_role("button", name="Sign in", exact=True).click()
    expect(visit.page).to_have_url(f"{keel.url}/todos?filter=open")
    expect(visit.page.get_by_role("radio", name="Open")).to_be_checked()
    visit.watch.assert_clean()
