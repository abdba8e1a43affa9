"""Session handling in the browser: silent refresh, many tabs, and cross-origin pages."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Route, expect

from keel.core.security import create_access_token
from tests.browser.conftest import Keel, Visit
from tests.conftest import base_settings

pytestmark = pytest.mark.slow  # a real server and a real browser


def claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def refreshes(visit: Visit) -> int:
    return len(visit.watch.token_bodies)


def test_an_expired_access_token_is_refreshed_without_the_person_noticing(
    visit: Visit, keel: Keel, tmp_path: Path
) -> None:
    member = keel.register("expiring")
    visit.sign_in(member)
    page = visit.page
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    current = claims(visit.watch.access_tokens[-1])
    # A genuine token of this very session, signed with the server's key, expired an hour ago.
    settings = base_settings(tmp_path, public_url=keel.url)
    expired = create_access_token(
        settings,
        user_id=int(str(current["sub"])),
        session_id=str(current["sid"]),
        amr=["pwd"],
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    swapped: list[str] = []

    def send_expired_once(route: Route) -> None:
        if swapped:
            route.fallback()
            return
        swapped.append(route.request.url)
        route.fallback(headers={**route.request.headers, "authorization": f"Bearer {expired}"})

    page.route("**/api/v1/todos?*", send_expired_once)
    before = refreshes(visit)

    page.get_by_role("radio", name="Done").check()

    expect(page.get_by_text("No todos match.")).to_be_visible()
    assert len(swapped) == 1
    assert refreshes(visit) == before + 1
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean(expected_http={401})


def test_the_client_refreshes_ahead_of_expiry(visit: Visit, keel: Keel) -> None:
    member = keel.register("punctual")
    page = visit.page
    page.clock.install()
    visit.sign_in(member)
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    before = refreshes(visit)

    page.clock.fast_forward("14:45")  # inside the last 30 s of the 15-minute token
    page.get_by_role("radio", name="Open").check()

    expect(page.get_by_text("Nothing to do yet")).to_have_count(0)
    expect(page.get_by_text("No todos match.")).to_be_visible()
    assert refreshes(visit) == before + 1
    # No request was refused on the way: the token was renewed before it could expire.
    visit.watch.assert_clean()


def test_a_reload_resumes_the_session_from_the_cookie(visit: Visit, keel: Keel) -> None:
    member = keel.register("reloader")
    visit.sign_in(member)
    page = visit.page

    page.reload()

    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Todos")).to_be_visible()
    visit.watch.assert_no_token_in_storage(page)
    visit.watch.assert_clean()


NO_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined })"


@pytest.mark.parametrize("locks", ["web-locks", "storage-lease"])
def test_tabs_that_resume_at_once_share_one_refresh_at_a_time(visit: Visit, keel: Keel, locks: str) -> None:
    """Two refreshes of one token count as reuse and end the session; the tabs must queue.

    Web Locks exist only in secure contexts (https, localhost); elsewhere a lease in
    IndexedDB takes their place, so both are exercised.
    """
    if locks == "storage-lease":
        visit.context.add_init_script(NO_WEB_LOCKS)
    member = keel.register(f"many_tabs_{locks.replace('-', '_')}")
    visit.sign_in(member)
    tabs = [visit.page, *(visit.new_tab() for _ in range(3))]
    for tab in tabs[1:]:
        tab.goto(f"{keel.url}/todos")
        expect(tab.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    assert visit.page.evaluate("() => Boolean(navigator.locks)") is (locks == "web-locks")
    before = refreshes(visit)

    # Reload every tab without waiting: each starts by refreshing with the same cookie.
    for tab in tabs:
        tab.evaluate("() => setTimeout(() => location.reload(), 0)")
    for tab in tabs:
        tab.wait_for_load_state()
        expect(tab.get_by_role("heading", name="Todos")).to_be_visible()
        expect(tab.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

    assert refreshes(visit) == before + len(tabs)
    # The session survived: one more request from the first tab still works.
    tabs[0].get_by_role("radio", name="Done").check()
    expect(tabs[0].get_by_text("No todos match.")).to_be_visible()
    visit.watch.assert_no_token_in_storage(tabs[0])
    visit.watch.assert_clean()


def test_a_sign_out_that_fails_keeps_the_person_signed_in(visit: Visit, keel: Keel) -> None:
    """Forgetting the session here while it lives on in the cookie would hand it to the next person."""
    member = keel.register("shared_computer")
    visit.sign_in(member)
    page = visit.page
    page.route("**/api/v1/auth/logout", lambda route: route.abort("connectionrefused"))

    page.get_by_role("button", name="Sign out", exact=True).click()

    expect(page.get_by_role("status").filter(has_text="could not be reached")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    page.unroute("**/api/v1/auth/logout")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    assert [c for c in visit.context.cookies() if c["name"] == "keel_refresh"] == []
    visit.watch.assert_clean(expected_http={0})  # the refused logout


def test_a_refresh_keel_cannot_answer_does_not_end_the_session(visit: Visit, keel: Keel) -> None:
    member = keel.register("patient")
    visit.sign_in(member)
    page = visit.page
    page.route(
        "**/api/v1/auth/refresh",
        lambda route: route.fulfill(status=503, content_type="application/problem+json", body="{}"),
    )

    page.reload()
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()

    page.unroute("**/api/v1/auth/refresh")
    page.reload()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_clean(expected_http={503})


@pytest.mark.parametrize("target", ["/%5Cevil.example/", "//evil.example/", "https://evil.example/", "/docs"])
def test_sign_in_goes_only_to_pages_of_the_app(visit: Visit, keel: Keel, target: str) -> None:
    member = keel.register(f"next_{hashlib.sha256(target.encode()).hexdigest()[:8]}")
    visit.goto(f"/signin?next={target}")
    visit.page.get_by_label("Email").fill(member.email)
    visit.page.get_by_label("Password").fill(member.password)
    visit.page.get_by_role("button", name="Sign in", exact=True).click()

    expect(visit.page).to_have_url(f"{keel.url}/todos")
    visit.watch.assert_clean()


def test_signing_out_in_one_tab_signs_out_the_others(visit: Visit, keel: Keel) -> None:
    member = keel.register("two_tabs")
    visit.sign_in(member)
    other = visit.new_tab()
    other.goto(f"{keel.url}/todos")
    expect(other.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

    visit.page.get_by_role("button", name="Sign out", exact=True).click()

    expect(other).to_have_url(f"{keel.url}/signin?next=%2Ftodos")
    expect(other.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    # The other tab hears of the sign-out from whichever comes first: the storage event, or its
    # live stream ending as "revoked", after which it asks /users/me and meets the 401 on purpose.
    visit.watch.assert_clean(expected_http={401})


ATTACK_PAGE = """<!doctype html>
<title>Free prizes</title>
<form id="form" method="post" action="{keel}/api/v1/auth/refresh"></form>
<script>
  // A page on another origin tries to use the visitor's refresh cookie.
  fetch("{keel}/api/v1/auth/refresh", {{method: "POST", mode: "no-cors", credentials: "include"}})
    .finally(() => fetch("{keel}/api/v1/auth/refresh", {{
      method: "POST", credentials: "include", headers: {{"X-Keel-Client": "web"}}
    }}).catch(() => null))
    .finally(() => document.getElementById("form").submit());
</script>
"""


@pytest.fixture
def other_origin(tmp_path: Path, keel: Keel) -> Iterator[str]:
    """A plain web server on another port: same site as Keel, different origin."""
    (tmp_path / "attack.html").write_text(ATTACK_PAGE.format(keel=keel.url))
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def refresh_answers(keel: Keel) -> list[tuple[str, int]]:
    answers = []
    for raw in keel.log_path.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "request" and entry.get("path") == "/api/v1/auth/refresh":
            answers.append((str(entry["method"]), int(entry["status"])))
    return answers


def test_a_page_on_another_origin_cannot_use_the_refresh_cookie(visit: Visit, keel: Keel, other_origin: str) -> None:
    member = keel.register("target")
    visit.sign_in(member)
    cookie = next(c for c in visit.context.cookies() if c["name"] == "keel_refresh")
    answered = len(refresh_answers(keel))
    attacker = visit.context.new_page()

    with attacker.expect_navigation(url=f"{keel.url}/api/v1/auth/refresh"):
        attacker.goto(f"{other_origin}/attack.html")

    # The no-cors fetch and the form post reached Keel with the cookie and were refused; the
    # fetch with the custom header needed a CORS preflight, which Keel does not grant, so the
    # POST itself was never sent. The server writes its access line after the answer has gone,
    # so the last one may come a moment after the page has it.
    deadline = time.monotonic() + 10
    new = refresh_answers(keel)[answered:]
    while len(new) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        new = refresh_answers(keel)[answered:]
    assert [status for method, status in new if method == "POST"] == [403, 403], new
    assert [status for method, status in new if method == "OPTIONS"] == [405], new
    assert "csrf_rejected" in attacker.content()
    after = next(c for c in visit.context.cookies() if c["name"] == "keel_refresh")
    assert after["value"] == cookie["value"], "the refresh token was not rotated"
    visit.page.reload()
    expect(visit.page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    visit.watch.assert_clean()
