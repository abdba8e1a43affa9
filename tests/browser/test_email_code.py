"""Signing in with an emailed code in the browser: asked for on the sign-in page and typed in, or
brought by the email's link (/signin/code), which signs in on one click and leaves no code in the
address bar."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Route, ViewportSize, expect

from tests.browser.conftest import Account, Keel, Visit
from tests.browser.test_mfa import api_totp, code_after

pytestmark = pytest.mark.slow  # a real server and a real browser

SIZES: dict[str, ViewportSize] = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
SENT = "If an account uses this address, a code is on its way. It works for 10 minutes."
WRONG = "That code is not right, or it has expired"
# Where the screenshots are kept for a person to look at, when that folder exists.
NOTES = Path("/work/notes/shots")


def mailed(keel: Keel, to: str, *, after: int, timeout: float = 10) -> tuple[str, str]:
    """The code and the sign-in link of the newest sign-in code email to `to` after the first `after`."""
    pattern = re.compile(re.escape(f"{keel.url}/signin/code#") + r"[^\s\"'<>]+")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(keel.mails(to)[after:]):
            body = message.get_body(("plain",))
            assert body is not None
            found = pattern.search(body.get_content())
            if found:
                query = parse_qs(urlsplit(found.group(0)).fragment)
                assert query["email"] == [to]
                return query["code"][0], found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no sign-in code email reached {to}")


def request_code(keel: Keel, account: Account) -> tuple[str, str]:
    after = len(keel.mails(account.email))
    with keel.api() as http:
        response = http.post("/api/v1/auth/email-code/request", json={"email": account.email})
        assert response.status_code == 202, response.text
    return mailed(keel, account.email, after=after)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


def shot(visit: Visit, name: str) -> None:
    visit.screenshot(name)
    if NOTES.is_dir():
        shutil.copy(visit.shots / f"{name}.png", NOTES / f"{name}.png")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_code_asked_for_on_the_sign_in_page_signs_in(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    member = keel.register(f"coded_{size}")
    visit.goto("/signin")
    page.get_by_label("Email").fill(member.email)
    shot(visit, f"email-code-signin-{size}")
    page.get_by_role("button", name="Email me a code").click()

    expect(page.get_by_role("heading", name="Sign in with a code")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value(member.email)  # kept from the password form
    shot(visit, f"email-code-ask-{size}")
    before = len(keel.mails(member.email))
    page.get_by_role("button", name="Email me a code").click()

    expect(page.locator("#view").get_by_role("status")).to_have_text(SENT)
    first, _ = mailed(keel, member.email, after=before)
    code = page.get_by_label("Code from the email")
    expect(code).to_be_focused()
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    expect(code).to_have_attribute("inputmode", "numeric")
    shot(visit, f"email-code-enter-{size}")
    code.fill(other_code(first))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text(WRONG)).to_be_visible()
    expect(code).to_have_attribute("aria-invalid", "true")
    shot(visit, f"email-code-wrong-{size}")

    before = len(keel.mails(member.email))
    page.get_by_role("button", name="Send a new code").click()
    expect(page.locator("#view").get_by_role("status")).to_contain_text("A new code is on its way")
    second, _ = mailed(keel, member.email, after=before)
    assert second != first
    code.fill(f"{second[:4]} {second[4:]}")  # as a person may type it
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/todos")
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean(expected_http={400})


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_the_emailed_link_signs_in_on_one_click_and_leaves_no_code_behind(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    member = keel.register(f"linked_{size}")
    _, link = request_code(keel, member)

    page.goto(link)

    button = page.get_by_role("button", name=f"Sign in as {member.email}")
    expect(button).to_be_visible()
    assert page.url == f"{keel.url}/signin/code"
    assert "code=" not in page.evaluate("() => location.href + JSON.stringify(history.state)")
    # The code rode in the fragment: no request the browser made carried it to a server.
    code = parse_qs(urlsplit(link).fragment)["code"][0]
    assert not [url for url in visit.watch.urls if code in url]
    # Opening the link sends nothing: a mail scanner that fetches it does not use the code up.
    assert not [url for url in visit.watch.urls if "/email-code/verify" in url]
    assert button.evaluate("b => b.scrollWidth <= b.clientWidth")  # the address wraps on a phone, never overflows
    shot(visit, f"email-code-link-{size}")
    button.click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()

    page.goto(link)  # used once already
    page.get_by_role("button", name=f"Sign in as {member.email}").click()
    expect(page.get_by_role("alert").filter(has_text=WRONG)).to_be_visible()
    shot(visit, f"email-code-link-used-{size}")
    page.get_by_role("button", name="Email me a new code").click()
    expect(page.get_by_label("Email")).to_have_value(member.email)
    visit.watch.assert_clean(expected_http={400})


def test_a_link_without_its_code_says_so(visit: Visit, keel: Keel) -> None:
    visit.goto("/signin/code?email=someone%40example.com")
    expect(page_alert := visit.page.get_by_role("alert")).to_contain_text("This link has no sign-in code")
    assert page_alert.is_visible()
    assert visit.page.url == f"{keel.url}/signin/code"


def test_a_code_for_an_account_with_a_second_factor_goes_on_to_the_second_step(visit: Visit, keel: Keel) -> None:
    page = visit.page
    member = keel.register("coded_twice")
    secret, _ = api_totp(keel, member)
    _, link = request_code(keel, member)
    page.goto(link)
    page.get_by_role("button", name=f"Sign in as {member.email}").click()

    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    page.get_by_label("Authentication code").fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    visit.watch.assert_clean(expected_http={403})


def test_too_many_tries_ask_the_person_to_wait(visit: Visit, keel: Keel) -> None:
    page = visit.page
    member = keel.register("coded_hasty")

    def locked(route: Route) -> None:
        problem = {"title": "Too many requests", "status": 429, "code": "rate_limited", "detail": "Try again later."}
        route.fulfill(
            status=429,
            headers={"Retry-After": "42", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        )

    page.route("**/api/v1/auth/email-code/verify", locked)
    visit.goto("/signin")
    page.get_by_role("button", name="Email me a code").click()
    page.get_by_label("Email").fill(member.email)
    page.get_by_role("button", name="Email me a code").click()
    page.get_by_label("Code from the email").fill("12345678")
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page.get_by_text("Too many tries. Wait 42 seconds, then try again.")).to_be_visible()
    assert visit.watch.problems == []


def test_a_code_that_claims_an_unconfirmed_account_says_its_password_was_removed(visit: Visit, keel: Keel) -> None:
    page = visit.page
    # Someone registered the address with a password and never confirmed it.
    member = keel.register("claimed_by_code", verified=False)
    _, link = request_code(keel, member)

    page.goto(link)
    page.get_by_role("button", name=f"Sign in as {member.email}").click()

    expect(page.get_by_role("heading", name="Account", exact=True)).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/account")
    expect(page.get_by_role("status").filter(has_text="that password was removed")).to_be_visible()
    shot(visit, "email-code-password-removed")
    # And it was: the registrant's password no longer signs in.
    with keel.api() as http:
        refused = http.post("/api/v1/auth/login", data={"username": member.email, "password": member.password})
        assert refused.status_code == 401
    visit.watch.assert_clean()
