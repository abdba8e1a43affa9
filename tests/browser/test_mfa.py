"""Second factors in the browser: an authenticator app set up on the account page, the sign-in's
second step (app code, recovery code), and the "Confirm it's you" dialog of sensitive changes."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from playwright.sync_api import CDPSession, Locator, Page, Route, ViewportSize, expect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

from keel.models import User, UserSession
from tests.browser.conftest import Account, Keel, Visit

pytestmark = pytest.mark.slow  # a real server and a real browser
# Passkeys need a domain for their relying party: localhost, the one that http may use.
SERVE_HOST = "localhost"

SIZES: dict[str, ViewportSize] = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


def code_after(secret: str, seconds: int = 30) -> str:
    """The app's code for a later time step: a step the server accepts (one either side of now)
    and has not seen, as each step works only once."""
    return pyotp.TOTP(secret).at(time.time() + seconds)


def wrong_code(secret: str) -> str:
    """A 6-digit code that is none of the codes the server could accept now."""
    totp = pyotp.TOTP(secret)
    near = {totp.at(time.time() + offset) for offset in range(-60, 91, 30)}
    return next(code for code in (f"{n:06d}" for n in range(1000)) if code not in near)


def api_totp(keel: Keel, account: Account) -> tuple[str, list[str]]:
    """Turn the authenticator app on through the API: its secret and the recovery codes."""
    headers = {"Authorization": f"Bearer {keel.token(account)}"}
    with keel.api() as http:
        setup = http.post("/api/v1/auth/mfa/totp/setup", headers=headers)
        assert setup.status_code == 200, setup.text
        secret = setup.json()["secret"]
        confirmed = http.post("/api/v1/auth/mfa/totp/confirm", headers=headers, json={"code": pyotp.TOTP(secret).now()})
        assert confirmed.status_code == 200, confirmed.text
    return secret, list(confirmed.json()["recovery_codes"])


def age_sign_ins(keel: Keel, account: Account) -> None:
    """Make every session of `account` look as if it signed in an hour ago, as the server sees it
    (a separate process: its clock cannot be moved, its database can)."""
    url = keel.env.get("KEEL_DATABASE_URL") or f"sqlite+aiosqlite:///{Path(keel.env['KEEL_DATA_DIR']) / 'keel.db'}"
    owner = select(User.id).where(col(User.email) == account.email).scalar_subquery()
    statement = (
        sa.update(UserSession)
        .where(col(UserSession.user_id) == owner)
        .values(authenticated_at=datetime.now(UTC) - timedelta(hours=1))
    )

    async def run() -> int:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                return (await connection.execute(statement)).rowcount
        finally:
            await engine.dispose()

    # Sync Playwright keeps an event loop running in this thread: the query gets a thread of its own.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, run()).result() >= 1


def sign_in_to_second_step(visit: Visit, account: Account) -> Page:
    page = visit.page
    visit.goto("/signin")
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()
    return page


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_an_authenticator_app_is_set_up_and_then_asked_for_at_sign_in(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    member = keel.register(f"app_{size}")
    visit.sign_in(member)
    visit.goto("/account")
    security = page.get_by_role("region", name="Sign-in & security")
    expect(security.get_by_text("Authenticator app Off")).to_be_visible()
    security.scroll_into_view_if_needed()
    visit.screenshot(f"mfa-security-{size}")

    security.get_by_role("button", name="Set up authenticator app").click()

    expect(security.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    shown = security.locator(".secret-key").inner_text()
    assert [len(group) for group in shown.split(" ")] == [4] * 8  # 32 characters, in fours
    secret = shown.replace(" ", "")
    visit.screenshot(f"mfa-qr-setup-{size}")
    security.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    security.get_by_role("button", name="Turn on").click()

    codes = security.get_by_role("list", name="Recovery codes").get_by_role("listitem")
    expect(codes).to_have_count(10)
    visit.screenshot(f"mfa-recovery-codes-{size}")
    with page.expect_download() as download:
        security.get_by_role("button", name="Download as .txt").click()
    assert download.value.suggested_filename == "keel-recovery-codes.txt"
    saved = Path(download.value.path()).read_text()
    assert all(code in saved for code in codes.all_inner_texts())
    security.get_by_role("button", name="I have saved them").click()
    expect(security.get_by_text("Authenticator app On")).to_be_visible()
    expect(security.get_by_text("10 of 10 left")).to_be_visible()

    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    sign_in_to_second_step(visit, member)
    code = page.get_by_label("Authentication code")
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    expect(code).to_have_attribute("inputmode", "numeric")
    expect(page.get_by_text("Enter the 6-digit code from your authenticator app.")).to_be_visible()
    visit.screenshot(f"mfa-second-step-{size}")
    code.fill(wrong_code(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("That code is not right.")).to_be_visible()
    expect(code).to_have_attribute("aria-invalid", "true")

    code.fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean(expected_http={400, 403})


def test_a_recovery_code_finishes_a_sign_in_once(visit: Visit, keel: Keel) -> None:
    member = keel.register("recovering")
    _, recovery_codes = api_totp(keel, member)
    page = sign_in_to_second_step(visit, member)

    page.get_by_role("button", name="Use a recovery code instead").click()
    expect(page.get_by_label("Authentication code")).to_be_hidden()
    page.get_by_label("Recovery code").fill(recovery_codes[0])
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    sign_in_to_second_step(visit, member)
    page.get_by_role("button", name="Use a recovery code instead").click()
    page.get_by_label("Recovery code").fill(recovery_codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_label("Recovery code")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("That code is not right.")).to_be_visible()
    visit.watch.assert_clean(expected_http={400, 403})


def test_an_expired_second_step_goes_back_to_the_password(visit: Visit, keel: Keel) -> None:
    member = keel.register("too_slow")
    secret, _ = api_totp(keel, member)
    page = sign_in_to_second_step(visit, member)
    # The server no longer knows the pending sign-in (as after its 5 minutes, or a finished one).
    page.route(
        "**/api/v1/auth/mfa/verify",
        lambda route: route.fallback(post_data=route.request.post_data.replace('"mfa_token":"', '"mfa_token":"x')),
    )

    page.get_by_label("Authentication code").fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Your sign-in expired")).to_be_visible()
    expect(page.get_by_label("Email")).to_be_visible()
    assert visit.watch.problems == []
    assert sorted(visit.watch.http_errors) == [401, 403]


def test_too_many_wrong_codes_ask_the_person_to_wait(visit: Visit, keel: Keel) -> None:
    member = keel.register("hasty")
    api_totp(keel, member)
    page = sign_in_to_second_step(visit, member)

    def locked(route: Route) -> None:
        problem = {"title": "Too many requests", "status": 429, "code": "rate_limited", "detail": "Try again later."}
        route.fulfill(
            status=429,
            headers={"Retry-After": "42", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        )

    page.route("**/api/v1/auth/mfa/verify", locked)
    page.get_by_label("Authentication code").fill("123456")
    page.get_by_role("button", name="Verify").click()

    wait = page.get_by_role("alert").filter(has_text="Too many tries. Wait 42 seconds, then try again.")
    expect(wait).to_be_visible()
    expect(page.get_by_role("heading", name="Confirm it's you")).to_be_visible()


def test_a_sensitive_change_asks_to_confirm_it_is_you_then_goes_on(visit: Visit, keel: Keel) -> None:
    member = keel.register("stale")
    visit.sign_in(member)
    visit.goto("/account")
    page = visit.page
    security = page.get_by_role("region", name="Sign-in & security")
    expect(security.get_by_role("button", name="Set up authenticator app")).to_be_visible()
    age_sign_ins(keel, member)

    security.get_by_role("button", name="Set up authenticator app").click()

    dialog = page.get_by_role("dialog", name="Confirm it's you")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Password")).to_be_focused()
    dialog.get_by_label("Password").fill("not my password at all")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog.get_by_text("The password is incorrect.")).to_be_visible()
    dialog.get_by_label("Password").fill(member.password)
    dialog.get_by_role("button", name="Confirm").click()

    # The setup ran again after the confirmation, once, and worked.
    expect(dialog).to_be_hidden()
    expect(security.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    visit.watch.assert_clean(expected_http={400, 403})


def test_cancelling_the_confirmation_changes_nothing(visit: Visit, keel: Keel) -> None:
    member = keel.register("cautious")
    secret, _ = api_totp(keel, member)
    page = sign_in_to_second_step(visit, member)
    page.get_by_label("Authentication code").fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    visit.goto("/account")
    security = page.get_by_role("region", name="Sign-in & security")
    age_sign_ins(keel, member)

    security.get_by_role("button", name="Turn off authenticator app").click()
    page.get_by_role("dialog").get_by_role("button", name="Turn off").click()
    dialog = page.get_by_role("dialog", name="Confirm it's you")
    # With the app on, a code from it is the other way to confirm.
    dialog.get_by_role("button", name="Use a code from your app instead").click()
    expect(dialog.get_by_label("Code from your authenticator app")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()

    expect(dialog).to_be_hidden()
    expect(security.get_by_text("Authenticator app On")).to_be_visible()
    page.reload()
    expect(page.get_by_role("region", name="Sign-in & security").get_by_text("Authenticator app On")).to_be_visible()


def test_each_session_says_how_it_signed_in(visit: Visit, keel: Keel) -> None:
    member = keel.register("methodical")
    secret, _ = api_totp(keel, member)
    page = sign_in_to_second_step(visit, member)
    page.get_by_label("Authentication code").fill(code_after(secret))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()

    visit.goto("/account")

    sessions = page.get_by_role("region", name="Sessions").get_by_role("listitem")
    expect(sessions.filter(has_text="This device")).to_contain_text("Signed in with: Password + authenticator app")

    # A server that does not say how a session signed in: the list says nothing of it.
    def without_amr(route: Route) -> None:
        rows = route.fetch().json()
        route.fulfill(json=[{name: value for name, value in row.items() if name != "amr"} for row in rows])

    page.route("**/api/v1/auth/sessions", without_amr)
    page.reload()
    expect(sessions.filter(has_text="This device")).to_be_visible()
    expect(page.get_by_text("Signed in with:")).to_have_count(0)


# --- passkeys ------------------------------------------------------------------------------------
class Authenticator:
    """A platform authenticator (like a phone's or a laptop's) that keeps discoverable credentials
    and verifies its user, in this page's Chromium, through the DevTools WebAuthn domain."""

    def __init__(self, page: Page) -> None:
        self.cdp: CDPSession = page.context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        self.id = str(self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"])

    def credentials(self) -> list[dict[str, object]]:
        return list(self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"])

    def answers(self, enabled: bool) -> None:
        """Whether a request is answered at once, as by a person touching the sensor or picking the
        passkey in autofill. While not, an autofill (conditional) request just waits, as it would for a
        person who types a password instead; it is not answered later either."""
        self.cdp.send("WebAuthn.setAutomaticPresenceSimulation", {"authenticatorId": self.id, "enabled": enabled})


def add_passkey(visit: Visit, name: str) -> None:
    page = visit.page
    visit.goto("/account")
    security = page.get_by_role("region", name="Sign-in & security")
    security.get_by_role("button", name="Add a passkey").click()
    name_field = security.get_by_label("Name")
    expect(name_field).to_have_value("Chrome on Linux")  # named after the device, to start with
    name_field.fill(name)
    security.get_by_role("button", name="Create passkey").click()
    expect(security.get_by_role("list", name="Passkeys").get_by_role("listitem").filter(has_text=name)).to_be_visible()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()


# Counts the page's autofill (conditional) passkey requests, so a test knows one is pending.
COUNT_AUTOFILL_REQUESTS = """
const get = navigator.credentials.get.bind(navigator.credentials);
window.autofillRequests = 0;
navigator.credentials.get = (options) => {
  if (options && options.mediation === "conditional") window.autofillRequests += 1;
  return get(options);
};
"""


def open_sign_in_with_autofill_waiting(visit: Visit, authenticator: Authenticator) -> None:
    """The sign-in page, its autofill passkey request pending (the person has not picked one)."""
    authenticator.answers(False)
    visit.page.add_init_script(COUNT_AUTOFILL_REQUESTS)
    visit.goto("/signin")
    visit.page.wait_for_function("() => window.autofillRequests === 1")
    # The request has reached the authenticator, which leaves it waiting, before it may answer others.
    visit.page.wait_for_timeout(300)
    authenticator.answers(True)


def this_device(page: Page) -> Locator:
    return page.get_by_role("region", name="Sessions").get_by_role("listitem").filter(has_text="This device")


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_passkey_is_added_then_signs_in_without_an_email(visit: Visit, keel: Keel, size: str) -> None:
    page = visit.page
    page.set_viewport_size(SIZES[size])
    authenticator = Authenticator(page)
    member = keel.register(f"passkey_{size}")
    visit.sign_in(member)

    add_passkey(visit, "My laptop")

    security = page.get_by_role("region", name="Sign-in & security")
    passkeys = security.get_by_role("list", name="Passkeys").get_by_role("listitem")
    expect(passkeys).to_have_count(1)
    expect(passkeys.first).to_contain_text("never used yet")
    assert [credential["isResidentCredential"] for credential in authenticator.credentials()] == [True]
    security.get_by_role("button", name="Rename My laptop").click()
    security.get_by_label("New name").fill("Work laptop")
    security.get_by_role("button", name="Save").click()
    expect(passkeys.first).to_contain_text("Work laptop")
    visit.screenshot(f"mfa-passkey-list-{size}")

    authenticator.answers(False)
    sign_out(page)
    open_sign_in_with_autofill_waiting(visit, authenticator)
    expect(page.get_by_label("Email")).to_have_attribute("autocomplete", "username webauthn")
    visit.screenshot(f"mfa-passkey-sign-in-{size}")
    # The autofill request is aborted first: a browser runs one WebAuthn request at a time.
    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    visit.goto("/account")
    expect(this_device(page)).to_contain_text("Signed in with: Passkey")
    expect(page.get_by_role("list", name="Passkeys").get_by_role("listitem").first).to_contain_text("last used")
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean()


def test_a_passkey_picked_in_the_email_autofill_signs_in(visit: Visit, keel: Keel) -> None:
    page = visit.page
    authenticator = Authenticator(page)
    member = keel.register("autofilled")
    visit.sign_in(member)
    add_passkey(visit, "Phone")
    authenticator.answers(False)
    sign_out(page)

    authenticator.answers(True)  # from now on the passkey is picked as soon as autofill offers it
    visit.goto("/signin")

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    assert page.get_by_label("Email").count() == 0
    visit.goto("/account")
    expect(this_device(page)).to_contain_text("Signed in with: Passkey")
    visit.watch.assert_clean()


def test_a_passkey_finishes_a_password_sign_in(visit: Visit, keel: Keel) -> None:
    page = visit.page
    authenticator = Authenticator(page)
    member = keel.register("belt_and_braces")
    visit.sign_in(member)
    add_passkey(visit, "Phone")
    authenticator.answers(False)
    sign_out(page)

    open_sign_in_with_autofill_waiting(visit, authenticator)
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(member.password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("One more step: your passkey.")).to_be_visible()
    visit.screenshot("mfa-second-step-passkey-desktop")
    page.get_by_role("button", name="Use a passkey").click()

    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    visit.goto("/account")
    expect(this_device(page)).to_contain_text("Signed in with: Password + passkey")
    visit.watch.assert_clean(expected_http={403})


def test_removing_a_passkey_asks_to_confirm_it_is_you(visit: Visit, keel: Keel) -> None:
    page = visit.page
    Authenticator(page)
    member = keel.register("tidy")
    visit.sign_in(member)
    add_passkey(visit, "Old phone")
    age_sign_ins(keel, member)
    security = page.get_by_role("region", name="Sign-in & security")

    security.get_by_role("button", name="Remove Old phone").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    dialog = page.get_by_role("dialog", name="Confirm it's you")
    dialog.get_by_label("Password").fill(member.password)
    dialog.get_by_role("button", name="Confirm").click()

    expect(dialog).to_be_hidden()
    expect(security.get_by_role("list", name="Passkeys")).to_have_count(0)
    expect(security.get_by_role("button", name="Add a passkey")).to_be_visible()
    visit.watch.assert_clean(expected_http={403})


def test_a_passkey_confirms_it_is_you(visit: Visit, keel: Keel) -> None:
    page = visit.page
    Authenticator(page)
    member = keel.register("keyed")
    visit.sign_in(member)
    add_passkey(visit, "Laptop")
    age_sign_ins(keel, member)
    security = page.get_by_role("region", name="Sign-in & security")

    security.get_by_role("button", name="Remove Laptop").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    dialog = page.get_by_role("dialog", name="Confirm it's you")
    dialog.get_by_role("button", name="Use a passkey instead").click()

    # No password typed: the passkey proved it, and the change went on.
    expect(dialog).to_be_hidden()
    expect(security.get_by_role("list", name="Passkeys")).to_have_count(0)
    visit.watch.assert_clean(expected_http={403})
