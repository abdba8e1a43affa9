"""The account page: profile, verification, password change, sessions, deleting the account."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Keel, Visit, expect_signed_out_elsewhere

pytestmark = pytest.mark.slow  # a real server and a real browser

NEW_PASSWORD = "fresh wind over 3 hills"


def test_a_member_edits_the_profile_and_changes_the_password(visit: Visit, keel: Keel) -> None:
    member = keel.register("profile_owner")
    keel.register("taken_name")
    api_token = keel.token(member)
    visit.sign_in(member)
    page = visit.page
    page.get_by_role("link", name="profile_owner").click()
    expect(page.get_by_text("Your email address is confirmed.")).to_be_visible()

    # A username in use is refused next to the field; a free one is saved.
    profile = page.locator("section", has=page.get_by_role("heading", name="Profile"))
    profile.get_by_label("Username").fill("taken_name")
    profile.get_by_role("button", name="Save profile").click()
    expect(profile.locator('[data-field="username"] .field-error')).to_be_visible()
    profile.get_by_label("Username").fill("skipper")
    profile.get_by_label("Full name").fill("Grace O'Malley")
    profile.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("link", name="skipper")).to_be_visible()

    # The wrong current password is refused next to that field.
    password = page.locator("section", has=page.get_by_role("heading", name="Password"))
    password.get_by_label("Current password").fill("not my password")
    password.get_by_label("New password").fill(NEW_PASSWORD)
    password.get_by_role("button", name="Change password").click()
    expect(password.locator('[data-field="current_password"] .field-error')).to_be_visible()
    expect(password.get_by_label("Current password")).to_have_attribute("aria-invalid", "true")
    password.get_by_label("Current password").fill(member.password)
    password.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").filter(has_text="Password changed")).to_be_visible()

    # This browser stays signed in; the other session (the API client) ended.
    expect(page.locator(".session-list li")).to_have_count(1)
    with keel.api() as http:
        assert http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {api_token}"}).status_code == 401
        me = http.post("/api/v1/auth/login", data={"username": member.email, "password": NEW_PASSWORD})
        assert me.status_code == 200
    page.reload()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean(expected_http={400, 409})


def test_an_unverified_member_asks_for_a_new_link_and_cannot_publish_yet(visit: Visit, keel: Keel) -> None:
    member = keel.register("unverified", verified=False)
    visit.sign_in(member)
    page = visit.page

    page.get_by_role("link", name="My posts").click()
    page.get_by_role("link", name="Write a post").click()
    page.get_by_label("Title").fill("First light")
    page.get_by_label("Text").fill("Morning on the water.")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Verify your email address before publishing. "
        "Your account page can send you a new link; until then, save it as a draft."
    )

    mails = len(keel.mails(member.email))
    page.get_by_role("link", name="unverified").click()
    # The post was not saved: leaving its editor asks first.
    page.get_by_role("dialog").get_by_role("button", name="Leave").click()
    page.get_by_role("button", name="Send a new verification link").click()
    expect(page.get_by_role("status").filter(has_text="verification link")).to_be_visible()
    link = keel.link(member.email, "verify-email", after=mails)
    visit.goto(link.removeprefix(keel.url))
    expect(page.get_by_text("your email address is verified")).to_be_visible()
    page.get_by_role("link", name="unverified").click()
    expect(page.get_by_text("Your email address is confirmed.")).to_be_visible()
    visit.watch.assert_clean(expected_http={403})


def test_a_member_signs_out_everywhere(visit: Visit, second_visit: Visit, keel: Keel) -> None:
    member = keel.register("everywhere")
    visit.sign_in(member)
    second_visit.sign_in(member)
    page = visit.page
    page.get_by_role("link", name="everywhere").click()
    expect(page.locator(".session-list li")).to_have_count(2)

    page.get_by_role("button", name="Sign out everywhere").click()
    page.get_by_role("dialog").get_by_role("button", name="Sign out everywhere").click()

    expect(page.get_by_text("Every session is signed out.")).to_be_visible()
    expect_signed_out_elsewhere(second_visit.page)
    visit.watch.assert_clean()
    second_visit.watch.assert_clean(expected_http={401})


def test_a_member_deletes_the_account(visit: Visit, keel: Keel) -> None:
    member = keel.register("leaving")
    visit.sign_in(member)
    page = visit.page
    page.get_by_role("link", name="leaving").click()
    remove = page.locator("section", has=page.get_by_role("heading", name="Delete account"))

    remove.get_by_label("Your password").fill("wrong password")
    remove.get_by_role("button", name="Delete my account").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete account").click()
    expect(remove.locator('[data-field="password"] .field-error')).to_be_visible()
    remove.get_by_label("Your password").fill(member.password)
    remove.get_by_role("button", name="Delete my account").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete account").click()

    expect(page).to_have_url(f"{keel.url}/")
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    with keel.api() as http:
        gone = http.post("/api/v1/auth/login", data={"username": member.email, "password": member.password})
        assert gone.status_code == 401
    visit.watch.assert_clean(expected_http={400})
