"""Access tokens on the account page: make one, copy it from the dialog, use it from a script,
revoke it, and the script is refused at once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Keel, Visit

pytestmark = pytest.mark.slow  # a real server and a real browser


def test_a_member_makes_uses_and_revokes_an_access_token(visit: Visit, keel: Keel) -> None:
    member = keel.register("scripter")
    visit.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=keel.url)
    visit.sign_in(member)
    page = visit.page
    page.get_by_role("link", name="scripter").click()
    tokens = page.locator("section", has=page.get_by_role("heading", name="Access tokens", exact=True))
    expect(tokens.get_by_text("No access tokens yet.")).to_be_visible()

    # Without a scope the form says so beside the scopes.
    tokens.get_by_label("Name", exact=True).fill("backup script")
    tokens.get_by_role("button", name="Create token").click()
    expect(tokens.locator('[data-field="scopes"] .field-error')).to_be_visible()

    tokens.get_by_role("checkbox", name="todos:read").check()
    expect(tokens.get_by_label("Expires after")).to_have_value("90")
    tokens.get_by_label("Expires after").select_option("30")
    tokens.get_by_role("button", name="Create token").click()

    # The secret is shown once, in a dialog that has the focus, with a Copy button.
    dialog = page.get_by_role("dialog", name="Your new token “backup script”")
    expect(dialog).to_be_visible()
    secret = dialog.get_by_role("textbox", name="Token")
    expect(secret).to_be_focused()
    token = secret.input_value()
    assert token.startswith("keel_pat_")
    visit.screenshot("account-new-token")
    dialog.get_by_role("button", name="Copy the token").click()
    expect(page.get_by_role("status").filter(has_text="Token copied.")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == token
    dialog.get_by_role("button", name="Done").click()
    expect(dialog).to_have_count(0)
    expect(tokens.locator(".token-list li")).to_have_count(1)
    expect(tokens.locator(".token-list li")).to_contain_text("backup script")
    expect(tokens.locator(".token-list li")).to_contain_text("never used")
    assert token not in page.content()  # listed without its secret

    with keel.api() as http:
        listed = http.get("/api/v1/todos", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["total"] == 0
    page.reload()
    item = tokens.locator(".token-list li")
    expect(item).to_contain_text("last used")
    expect(item).to_contain_text("todos:read")
    visit.screenshot("account-tokens")

    item.get_by_role("button", name="Revoke the token backup script").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_role("status").filter(has_text="Token revoked.")).to_be_visible()
    expect(tokens.locator(".token-list li")).to_have_count(0)

    with keel.api() as http:
        refused = http.get("/api/v1/todos", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401
    visit.watch.assert_clean(expected_http={422})
