"""The admin journey: find accounts, change a role, deactivate, reactivate and delete."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

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


def test_an_admin_manages_users(visit: Visit, keel: Keel) -> None:
    admin = create_admin(keel, "harbour_admin")
    sailors = [keel.register(f"sailor_{n}") for n in range(3)]
    member = keel.register("deckhand")
    member_token = keel.token(member)
    page = visit.page

    visit.sign_in(admin)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    rows = page.locator("table.users tbody tr")
    expect(rows).to_have_count(5)
    visit.screenshot("admin-users")

    # Search, and filter by role.
    page.get_by_role("searchbox", name="Search").fill("sailor")
    page.get_by_role("button", name="Search").click()
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
