"""Signed out without asking: each way it happens is told in its own words."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Keel, Visit, expect_signed_out_elsewhere
from tests.browser.test_admin import create_admin

pytestmark = pytest.mark.slow  # a real server and a real browser


def test_signing_out_in_one_tab_tells_the_other_where_it_happened(visit: Visit, keel: Keel) -> None:
    account = keel.register("two_tabs")
    visit.sign_in(account)
    visit.goto("/todos")
    other = visit.new_tab()
    other.goto(f"{keel.url}/account")
    expect(other.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

    visit.page.get_by_role("button", name="Sign out", exact=True).click()

    expect(other).to_have_url(re.compile(r"/signin"))
    expect(other.get_by_text("You signed out in another tab.")).to_be_visible()
    expect(visit.page.get_by_text("You are signed out.")).to_be_visible()


def test_a_session_ended_elsewhere_says_the_session_ended(visit: Visit, keel: Keel) -> None:
    account = keel.register("ended_elsewhere")
    visit.sign_in(account)
    token = keel.token(account)
    with keel.api() as http:
        ended = http.post("/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {token}"})
        assert ended.status_code == 204, ended.text

    expect_signed_out_elsewhere(visit.page)
    expect(visit.page).to_have_url(re.compile(r"/signin\?next=%2Ftodos"))


def test_a_deactivated_account_is_told_so(visit: Visit, keel: Keel) -> None:
    account = keel.register("soon_gone")
    admin = create_admin(keel, "deck_admin")
    visit.sign_in(account)
    token = keel.token(admin)
    with keel.api() as http:
        headers = {"Authorization": f"Bearer {token}"}
        found = http.get("/api/v1/admin/users", params={"q": account.username}, headers=headers)
        user_id = next(u["id"] for u in found.json()["items"] if u["username"] == account.username)
        changed = http.patch(
            f"/api/v1/admin/users/{user_id}",
            json={"is_active": False},
            headers={**headers, "Content-Type": "application/merge-patch+json"},
        )
        assert changed.status_code == 200, changed.text

    expect_signed_out_elsewhere(visit.page, "Your account was deactivated.")
