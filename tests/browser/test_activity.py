"""Recent security activity on the account page, the new-device mail, and "This wasn't me"."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Keel, Visit

pytestmark = pytest.mark.slow  # a real server and a real browser

NEW_DEVICE_SUBJECT = "A new device signed in to your account"


def test_a_member_sees_a_new_device_and_says_it_was_not_them(visit: Visit, keel: Keel) -> None:
    member = keel.register("watchful")
    keel.token(member)  # the account's first device: a script, which is no news
    visit.sign_in(member)  # this browser is new to the account
    page = visit.page

    deadline = time.monotonic() + 10
    while not (notices := [m for m in keel.mails(member.email) if m["Subject"] == NEW_DEVICE_SUBJECT]):
        assert time.monotonic() < deadline, "no new-device mail"
        time.sleep(0.1)
    [notice] = notices
    body = notice.get_body(("plain",))
    assert body is not None
    assert f"{keel.url}/account#activity" in body.get_content()
    assert "on Linux" in body.get_content()

    page.get_by_role("link", name="watchful").click()
    activity = page.locator("section", has=page.get_by_role("heading", name="Recent security activity"))
    expect(activity.get_by_text("Signed in from a new device")).to_be_visible()
    expect(activity.get_by_text("Signed in with password")).to_have_count(2)
    expect(activity.locator("time").first).to_have_text("just now")
    expect(activity.get_by_text("on Linux").first).to_be_visible()
    expect(activity.get_by_role("button", name="Show older")).to_have_count(0)  # all three are shown

    activity.scroll_into_view_if_needed()
    visit.screenshot("account-activity")
    activity.get_by_role("button", name="This wasn't me").first.click()
    expect(page.get_by_role("alert").filter(has_text="Secure your account now.")).to_be_visible()
    page.get_by_role("button", name="Change my password").click()
    password = page.locator("section", has=page.get_by_role("heading", name="Password"))
    expect(password.get_by_label("Current password")).to_be_focused()
    expect(page.get_by_role("alert").get_by_role("button", name="Sign out everywhere")).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean()
