"""The shared form plumbing: human validation messages, where a person's eyes and focus go after
an error, the Show password toggle and the strength hint that asks the server's own policy."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize, expect

from keel.http.web_assets import Assets
from keel.main import WEB_DIR
from tests.browser.axe import violations
from tests.browser.conftest import Keel, Visit

PHONE: ViewportSize = {"width": 360, "height": 740}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
STRONG = "a sturdy keel holds 42 knots"


def module_url(name: str) -> str:
    return Assets(WEB_DIR / "static", WEB_DIR / "index.html").url(f"js/{name}")


def assert_no_problems(visit: Visit, expected_http: frozenset[int] = frozenset()) -> None:
    assert visit.watch.problems == []
    assert [status for status in visit.watch.http_errors if status not in expected_http] == []


def sign_up_form(visit: Visit, *, email: str, username: str) -> Page:
    visit.goto("/signup")
    page = visit.page
    page.get_by_label("Email").fill(email)
    page.get_by_label("Username").fill(username)
    return page


def issue(type_: str, msg: str, **ctx: int) -> dict[str, Any]:
    """One item of a 422's `errors`, as the API sends it (no `loc`: the form finds the field)."""
    return {"type": type_, "msg": msg, **({"ctx": ctx} if ctx else {})}


TOO_SHORT = issue("string_too_short", "String should have at least 3 characters", min_length=3)


@pytest.mark.parametrize(
    ("error", "label", "said"),
    [
        (TOO_SHORT, "Username", "Username needs at least 3 characters."),
        (
            issue("string_too_short", "String should have at least 1 character", min_length=1),
            "Title",
            "Title must not be empty.",
        ),
        (
            issue("string_too_long", "String should have at most 200 characters", max_length=200),
            "Title",
            "Title can be at most 200 characters.",
        ),
        (issue("missing", "Field required"), "Email", "Email is required."),
        (
            issue("string_pattern_mismatch", "String should match pattern '^[a-z]+$'"),
            "Username",
            "Username contains characters that are not allowed here.",
        ),
        (
            issue("greater_than_equal", "Input should be greater than or equal to 1", ge=1),
            "Limit",
            "Limit must be 1 or more.",
        ),
        (
            issue("enum", "Input should be 'low', 'normal' or 'high'"),
            "Priority",
            "Choose one of the priority options offered.",
        ),
        (issue("value_error", "Value error, Give a date as YYYY-MM-DD."), "Due date", "Give a date as YYYY-MM-DD."),
        (
            issue("value_error", "value is not a valid email address: It needs an @-sign."),
            "Email",
            "It needs an @-sign.",
        ),
        # Without the bound (an older server), no sentence can be made: the server's msg stays.
        (
            issue("string_too_long", "String should have at most 9 characters"),
            "Title",
            "String should have at most 9 characters",
        ),
        (issue("something_new", "A rule nobody mapped yet"), "Title", "A rule nobody mapped yet"),
        # About no field of the form (the request as a whole): the server's msg.
        (TOO_SHORT, None, "String should have at least 3 characters"),
    ],
)
def test_validation_errors_read_as_sentences_naming_the_field(
    visit: Visit, error: dict[str, Any], label: str | None, said: str
) -> None:
    visit.goto("/signin")

    message = visit.page.evaluate(
        "async ([url, error, label]) => (await import(url)).humanMessage(error, label)",
        [module_url("validation.js"), error, label],
    )

    assert message == said


def test_a_field_error_names_the_field_and_takes_the_focus(visit: Visit) -> None:
    page = sign_up_form(visit, email="short_name@example.com", username="ab")
    page.get_by_label("Password", exact=True).fill(STRONG)
    page.get_by_role("button", name="Create account").click()

    username = page.get_by_label("Username")
    expect(page.get_by_text("Username needs at least 3 characters.")).to_be_visible()
    expect(username).to_be_focused()
    expect(username).to_have_attribute("aria-invalid", "true")
    assert_no_problems(visit, frozenset({422}))


def test_an_unverified_writer_on_a_phone_sees_why_publishing_failed(visit: Visit, keel: Keel) -> None:
    member = keel.register("phone_writer", verified=False)
    visit.sign_in(member)
    page = visit.page
    page.set_viewport_size(PHONE)
    visit.goto("/posts/new")
    page.get_by_label("Title").fill("Dawn passage")
    # A long text puts Publish far below the alert at the top of the form.
    page.get_by_label("Text").fill("\n\n".join(f"Watch {n}: wind steady from the west." for n in range(40)))
    publish = page.get_by_role("button", name="Publish")
    publish.scroll_into_view_if_needed()
    publish.click()

    alert = page.locator("form .form-alert")
    expect(alert).to_contain_text("Verify your email address before publishing.")
    expect(alert).to_be_focused()
    expect(alert).to_be_in_viewport()
    visit.screenshot("forms-unverified-publish-phone")
    visit.watch.assert_clean(expected_http={403})


def test_show_password_is_a_keyboard_toggle_that_never_sends_the_form(visit: Visit) -> None:
    page = sign_up_form(visit, email="toggler@example.com", username="toggler")
    password = page.get_by_label("Password", exact=True)
    password.fill(STRONG)
    toggle = page.get_by_role("button", name="Show password")
    expect(toggle).to_have_attribute("aria-pressed", "false")

    password.press("Tab")
    expect(toggle).to_be_focused()
    page.keyboard.press("Space")
    expect(password).to_have_attribute("type", "text")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    expect(password).to_have_attribute("type", "password")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert not [url for url in visit.watch.urls if url.endswith("/api/v1/auth/register")]

    # Shown when the form is sent, it is hidden again (as a password manager expects).
    toggle.click()
    page.get_by_label("Username").fill("x")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Username needs at least 3 characters.")).to_be_visible()
    expect(password).to_have_attribute("type", "password")
    assert_no_problems(visit, frozenset({422}))


def test_every_password_field_has_its_toggle(visit: Visit, keel: Keel) -> None:
    member = keel.register("many_passwords")
    visit.goto("/signin")
    expect(visit.page.get_by_role("button", name="Show password")).to_have_count(1)
    visit.sign_in(member)
    visit.page.get_by_role("link", name="many_passwords").click()
    account = visit.page.locator("form").filter(has=visit.page.get_by_label("Current password"))
    expect(account.get_by_role("button", name="Show password")).to_have_count(2)


def test_the_strength_hint_is_the_servers_verdict(visit: Visit) -> None:
    page = sign_up_form(visit, email="zephyrquill@example.com", username="zephyrquill")
    password = page.get_by_label("Password", exact=True)
    hint = page.locator(".strength")

    password.fill("password123")
    expect(hint).to_contain_text("too common")
    # Built from the username: refused here, as the save would refuse it for this account.
    password.fill("zephyrquill7")
    expect(hint).to_contain_text("built from your email or username")
    expect(hint).not_to_have_class("strength acceptable")
    password.fill(STRONG)
    expect(hint).to_contain_text("this password is accepted")
    expect(hint).to_have_attribute("data-score", "4")
    assert hint.get_attribute("id") in (password.get_attribute("aria-describedby") or "").split()
    assert violations(page) == []
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= size["width"]
        visit.screenshot(f"forms-sign-up-strength-{name}")

    page.get_by_label("Username").fill("x")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Username needs at least 3 characters.")).to_be_visible()
    assert violations(page) == []
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        visit.screenshot(f"forms-sign-up-error-{name}")
    assert_no_problems(visit, frozenset({422}))
