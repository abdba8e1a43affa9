"""Signing in with another provider in the browser, against a real OpenID Connect provider
(oidc-provider-mock on 127.0.0.1): a new account from the sign-in page, a provider connected from
the account page, a disconnect refused while it is the only way in, and a consent denied."""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import werkzeug.serving
from playwright.sync_api import Page, Route, ViewportSize, expect

from tests.browser.conftest import Account, Keel, Visit
from tests.browser.test_email_code import mailed, other_code
from tests.browser.test_mfa import age_sign_ins, api_totp, code_after
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SIZES: dict[str, ViewportSize] = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
NOTES = Path("/work/notes/shots")
# Passkeys need a domain (localhost): the sign-in page then shows its passkey button with the providers.
SERVE_HOST = "localhost"
PROVIDER_PORT = free_port()
PROVIDER_URL = f"http://127.0.0.1:{PROVIDER_PORT}"
SERVE_ENV = {
    "KEEL_OIDC_PROVIDERS": json.dumps(
        [
            {
                "id": "mock",
                "name": "Mock ID",
                "issuer": PROVIDER_URL,
                "client_id": "keel-client",
                "client_secret": "keel-secret",
            }
        ]
    )
}
ONLY_WAY = "This is your only way to sign in: set a password or add a passkey first."


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    """oidc-provider-mock, in a thread of this process, on the port the server was configured with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from oidc_provider_mock import app as mock_provider_app

    server = werkzeug.serving.make_server("127.0.0.1", PROVIDER_PORT, mock_provider_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield PROVIDER_URL
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def keel(provider_url: str, keel: Keel) -> Keel:
    """The conftest's server, started once the provider it is configured with is up."""
    return keel


def provider_user(sub: str, email: str, *, verified: bool = True) -> None:
    response = httpx.put(f"{PROVIDER_URL}/users/{sub}", json={"email": email, "email_verified": verified})
    assert response.status_code == 204, response.text


def offline_styles(page: Page) -> None:
    """The mock's page asks a CDN for its stylesheet; these tests stay on 127.0.0.1."""

    def empty(route: Route) -> None:
        route.fulfill(status=200, content_type="text/css", body="")

    page.route("https://cdn.jsdelivr.net/**", empty)


def at_provider(page: Page, sub: str | None) -> None:
    """Answer the provider's page: authorize as `sub`, or deny (None)."""
    expect(page.get_by_role("heading", name="Authorize Client")).to_be_visible()
    if sub is None:
        page.get_by_role("button", name="Deny").click()
    else:
        page.get_by_placeholder("sub").fill(sub)
        page.get_by_role("button", name="Authorize", exact=True).click()


def shot(visit: Visit, name: str) -> None:
    visit.screenshot(name)
    if NOTES.is_dir():
        shutil.copy(visit.shots / f"{name}.png", NOTES / f"{name}.png")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_new_account_signs_in_with_the_provider_from_the_sign_in_page(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    offline_styles(page)
    provider_user(f"newcomer-{size}", f"newcomer_{size}@example.com")
    visit.goto("/signin?next=/my-posts")
    button = page.get_by_role("link", name="Continue with Mock ID")
    expect(button).to_have_attribute("href", "/api/v1/auth/oidc/mock/authorize?next=%2Fmy-posts")
    shot(visit, f"oidc-signin-{size}")
    button.click()
    at_provider(page, f"newcomer-{size}")

    # Back on Keel, signed in by the refresh cookie the callback set, on the page asked for.
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/my-posts")
    visit.goto("/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_text("Mock ID", exact=True)).to_be_visible()
    expect(section.get_by_text(f"newcomer_{size}@example.com")).to_be_visible()
    # The account has no password: its only way in cannot be disconnected.
    section.get_by_role("button", name="Disconnect Mock ID").click()
    expect(section.get_by_role("alert")).to_have_text(ONLY_WAY)
    expect(section.get_by_text("Mock ID", exact=True)).to_be_visible()
    shot(visit, f"oidc-account-only-way-{size}")
    visit.watch.assert_clean(expected_http={409})
    visit.watch.assert_no_token_in_storage(page)


def test_the_sign_up_page_offers_the_provider_too(visit: Visit, keel: Keel) -> None:
    visit.goto("/signup")
    expect(visit.page.get_by_role("link", name="Continue with Mock ID")).to_have_attribute(
        "href", "/api/v1/auth/oidc/mock/authorize?next=%2Ftodos"
    )


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_password_account_connects_and_disconnects_the_provider(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    offline_styles(page)
    member = keel.register(f"linker_{size}")
    provider_user(f"linker-{size}", member.email)
    visit.sign_in(member)
    visit.goto("/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_text("None yet.")).to_be_visible()
    shot(visit, f"oidc-account-none-{size}")
    section.get_by_role("button", name="Connect Mock ID", exact=True).click()
    at_provider(page, f"linker-{size}")

    expect(page).to_have_url(f"{keel.url}/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_text("Mock ID", exact=True)).to_be_visible()
    shot(visit, f"oidc-account-linked-{size}")
    expect(section.get_by_role("button", name="Connect Mock ID", exact=True)).to_have_count(0)
    # With a password as well, the provider may go.
    section.get_by_role("button", name="Disconnect Mock ID").click()
    expect(section.get_by_text("None yet.")).to_be_visible()
    expect(section.get_by_role("button", name="Connect Mock ID", exact=True)).to_be_visible()
    visit.watch.assert_clean()


def test_a_denied_consent_says_so_on_the_sign_in_page(visit: Visit, keel: Keel) -> None:
    page = visit.page
    page.set_viewport_size(SIZES["phone"])
    offline_styles(page)
    visit.goto("/signin")
    page.get_by_role("link", name="Continue with Mock ID").click()
    at_provider(page, None)

    expect(page.get_by_role("alert").filter(has_text="You cancelled")).to_have_text(
        "You cancelled at the provider, so you are not signed in."
    )
    expect(page).to_have_url(f"{keel.url}/signin")  # the code said once, then off the address bar
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    shot(visit, "oidc-denied-phone")
    assert visit.watch.problems == []


def test_every_provider_error_has_its_own_message(visit: Visit, keel: Keel) -> None:
    page = visit.page
    seen = set()
    codes = ("state_mismatch", "email_not_verified", "link_confirmation_sent", "account_inactive", "email_taken")
    for code in (*codes, "rate_limited"):
        visit.goto(f"/signin?error={code}&next=/todos")
        alert = page.locator(".notice.error")
        expect(alert).to_be_visible()
        expect(alert).not_to_contain_text("did not work")  # not the fallback
        seen.add(alert.inner_text())
        expect(page).to_have_url(f"{keel.url}/signin?next=%2Ftodos")
    assert len(seen) == 6
    assert any("Wait a minute" in message for message in seen)  # rate_limited: a clear message
    visit.goto("/signin?error=something_new")
    expect(page.locator(".notice.error")).to_contain_text("Signing in with the provider did not work.")


def test_a_mailed_link_connects_the_provider_then_its_sign_in_asks_for_the_app_code(visit: Visit, keel: Keel) -> None:
    page = visit.page
    page.set_viewport_size(SIZES["phone"])
    offline_styles(page)
    member = keel.register("guarded")
    secret, _ = api_totp(keel, member)
    provider_user("guarded-sub", member.email)
    visit.goto("/signin")
    page.get_by_role("link", name="Continue with Mock ID").click()
    at_provider(page, "guarded-sub")

    # The address has an account already: its owner is asked by email first.
    expect(page.locator(".notice.error")).to_contain_text("We emailed it a link")
    link = keel.link(member.email, "link-identity")
    page.goto(link)
    expect(page.get_by_role("heading", name="Link this sign-in to your account?")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/link-identity")  # the token is off the address bar
    shot(visit, "oidc-link-identity-phone")
    page.get_by_role("button", name="Link it to my account").click()
    expect(page.get_by_role("status").filter(has_text="Done")).to_have_text(
        "Done: Mock ID now signs you in to your account."
    )
    # A link that is not the one mailed is refused, on the page, and links nothing.
    page.goto(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
    page.get_by_role("button", name="Link it to my account").click()
    expect(page.locator("#view").get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("button", name="Link it to my account")).to_be_visible()
    shot(visit, "oidc-link-identity-refused-phone")

    visit.goto("/signin")
    page.get_by_role("link", name="Continue with Mock ID").click()
    at_provider(page, "guarded-sub")
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    expect(page.get_by_text("The provider signed you in. One more step")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/signin/mfa")  # the mfa_token is off the address bar
    shot(visit, "oidc-mfa-phone")
    page.get_by_label("Authentication code").fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/todos")
    visit.goto("/account")
    expect(page.get_by_role("region", name="Connected accounts").get_by_text("Mock ID", exact=True)).to_be_visible()
    assert visit.watch.problems == []


def test_a_mfa_page_without_its_token_sends_back_to_sign_in(visit: Visit, keel: Keel) -> None:
    visit.goto("/signin/mfa")
    expect(visit.page.get_by_role("alert")).to_have_text(
        "This sign-in has expired or was already used. Please sign in again."
    )
    visit.page.get_by_role("link", name="Sign in", exact=True).last.click()
    expect(visit.page).to_have_url(f"{keel.url}/signin")


def test_connecting_after_a_while_asks_to_confirm_it_is_you_first(visit: Visit, keel: Keel) -> None:
    page = visit.page
    offline_styles(page)
    member = keel.register("stale_linker")
    provider_user("stale-linker", member.email)
    visit.sign_in(member)
    visit.goto("/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_role("button", name="Connect Mock ID", exact=True)).to_be_visible()
    age_sign_ins(keel, member)

    section.get_by_role("button", name="Connect Mock ID", exact=True).click()
    dialog = page.get_by_role("dialog", name="Confirm it's you")
    dialog.get_by_label("Password").fill(member.password)
    dialog.get_by_role("button", name="Confirm").click()
    at_provider(page, "stale-linker")

    expect(page).to_have_url(f"{keel.url}/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_role("button", name="Disconnect Mock ID")).to_be_visible()
    visit.watch.assert_clean(expected_http={403})


def test_an_account_without_a_password_confirms_it_is_you_with_an_emailed_code(visit: Visit, keel: Keel) -> None:
    page = visit.page
    offline_styles(page)
    provider_user("no-password", "no_password@example.com")
    visit.goto("/signin")
    page.get_by_role("link", name="Continue with Mock ID").click()
    at_provider(page, "no-password")
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.goto("/account")
    section = page.get_by_role("region", name="Connected accounts")
    expect(section.get_by_role("button", name="Disconnect Mock ID")).to_be_visible()
    age_sign_ins(keel, Account(email="no_password@example.com", username="no_password"))

    # A sensitive change asks to confirm it is you; this account has no password to give.
    section.get_by_role("button", name="Disconnect Mock ID").click()
    dialog = page.get_by_role("dialog", name="Confirm it's you")
    before = len(keel.mails("no_password@example.com"))
    dialog.get_by_role("button", name="Email me a code instead").click()
    code_field = dialog.get_by_label("Code from the email")
    expect(code_field).to_be_focused()
    expect(dialog.get_by_label("Password")).to_be_hidden()
    code, _ = mailed(keel, "no_password@example.com", after=before)
    shot(visit, "reauth-email-code")
    code_field.fill(other_code(code))
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.get_by_text("That code is not right.")).to_be_visible()
    code_field.fill(code)
    dialog.get_by_role("button", name="Confirm").click()

    # Confirmed: the change itself is then judged, and this is the account's only way in.
    expect(dialog).to_be_hidden()
    expect(section.get_by_role("alert")).to_have_text(ONLY_WAY)
    # Recently authenticated now, it may delete itself without a password.
    removal = page.get_by_role("region", name="Delete account")
    removal.get_by_role("button", name="Delete my account").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete account").click()
    expect(page.get_by_text("Your account is deleted.")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    visit.watch.assert_clean(expected_http={400, 403, 409})
