"""The web UI's live updates client (static/js/live.js and pages/todo-live.js) against a stand-in
for the server's stream (tests/browser/live_fake.py): each event changes the view as it should,
with a highlight; a dropped connection takes a new ticket and resumes after the last event seen;
overflow, reset, revoked and a missing endpoint each do what the contract says. test_live.py runs
the same page against the real stream."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Keel, Visit, tick
from tests.browser.live_fake import FakeStream, later, now
from tests.browser.test_conflicts import change, elsewhere, expect_changed_elsewhere
from tests.browser.test_layout import open_visit
from tests.browser.test_shared_lists import api_call, members_id, shared_list, switcher

pytestmark = pytest.mark.slow  # a real server and a real browser


def test_live_events_change_the_view_with_a_highlight_and_resume_after_the_last_one(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("live_sailor")
    me = members_id(keel, sailor)
    scrub = api_call(keel, sailor, "POST", "/todos", {"title": "Scrub the deck"})
    coil = api_call(keel, sailor, "POST", "/todos", {"title": "Coil the lines"})
    page = visit.page
    fake = FakeStream(page)
    visit.sign_in(sailor)  # lands on /todos
    expect(page.locator(".todo")).to_have_count(2)
    fake.wait_for_connections(1)

    arrived = {**scrub, "id": 2_000_000, "title": "Fresh from elsewhere", "created_at": now(), "updated_at": now()}
    renamed = {**scrub, "title": "Scrub the deck twice", "updated_at": later(scrub["updated_at"])}
    elsewhere_list = {**arrived, "id": 2_000_001, "title": "Not in this view", "list_id": 77}
    fake.send(
        fake.event("todo.created", todo=arrived, actor_id=me + 1),
        fake.event("todo.updated", todo=renamed),
        fake.event("todo.deleted", todo_id=coil["id"], actor_id=me + 1),
        fake.event("todo.created", todo=elsewhere_list, list_id=77, actor_id=me + 1),
    )
    fake.wait_for_connections(2)
    rows = page.locator(".todo")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("Fresh from elsewhere")  # newest first, as the list is sorted
    expect(rows.first).to_have_class(re.compile(r"\bflash\b"))
    changed = page.locator(".todo", has_text="Scrub the deck twice")
    expect(changed).to_have_class(re.compile(r"\bflash\b"))
    assert changed.evaluate("(el) => getComputedStyle(el).animationName") == "flash"  # a fade, ~1.5 s
    expect(page.locator(".todo", has_text="Coil the lines")).to_have_count(0)
    expect(page.locator(".todo", has_text="Not in this view")).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="2 todos")).to_be_visible()
    expect(page.locator(".todo-pane [aria-live=polite]")).to_have_text("Someone deleted “Coil the lines”.")
    expect(changed).not_to_have_class(re.compile(r"\bflash\b"), timeout=3000)  # the highlight fades

    # Each dropped connection: "Reconnecting…", a new ticket, and the stream resumes after the last id.
    expect(page.get_by_text("Reconnecting…")).to_be_visible()
    fake.wait_for_connections(3)
    assert fake.last_event_ids()[:3] == [None, None, "00000004"]
    assert len(fake.ticket_times) >= 3  # a ticket is good for one connection only

    # The tab's own change arrives too: already on screen, it is not highlighted again.
    page.reload()
    tick(page, "Scrub the deck")
    # Ticked, it moves under the closed "Completed (n)", where no role query finds it.
    expect(page.locator(".todo", has_text="Scrub the deck").locator("input[type=checkbox]")).to_be_checked()
    expect(page.locator(".todo[data-busy]")).to_have_count(0)
    ticked = api_call(keel, sailor, "GET", f"/todos/{scrub['id']}")
    assert ticked["completed"] is True
    seen = len(fake.connections)
    fake.send(fake.event("todo.updated", todo=ticked, actor_id=me))
    fake.wait_for_connections(seen + 1)
    page.wait_for_timeout(300)
    expect(page.locator(".todo", has_text="Scrub the deck")).not_to_have_class(re.compile(r"\bflash\b"))
    # A reload carried on from the id kept for the tab.
    fake.wait_for_connections(seen + 2)
    assert "00000004" in fake.last_event_ids()[3:]
    assert fake.last_event_ids()[-1] == "00000005"
    visit.watch.assert_clean()


def test_the_stream_ends_resets_and_is_revoked_as_the_server_says(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("stream_sailor")
    page = visit.page
    fake = FakeStream(page)
    visit.sign_in(sailor)  # lands on /todos
    fake.wait_for_connections(1)

    # Dropped as too slow: a new ticket at once, resuming after the last id, with no wait.
    fake.send(fake.event("stream.end", reason="overflow"))
    fake.wait_for_connections(3)
    assert fake.connection_times[2] - fake.connection_times[1] < 0.8
    assert fake.last_event_ids()[2] == "00000001"

    # Too far behind to replay: the view reloads what it shows.
    api_call(keel, sailor, "POST", "/todos", {"title": "Added while the stream was away"})
    expect(page.get_by_text("Added while the stream was away")).to_have_count(0)
    fake.send(fake.event("stream.reset", reason="expired"))
    expect(page.get_by_text("Added while the stream was away")).to_be_visible(timeout=5000)

    # Revoked: no new ticket, no reconnect.
    fake.send(fake.event("stream.end", reason="revoked"))
    while fake.bodies:  # until a connection has taken it
        page.wait_for_timeout(100)
    page.wait_for_timeout(200)
    connections = len(fake.connections)
    page.wait_for_timeout(3000)
    assert len(fake.connections) == connections
    expect(page.get_by_text("Reconnecting…")).to_have_count(0)
    visit.watch.assert_clean()


def test_a_member_removed_from_the_list_they_read_is_taken_to_their_inbox(visit: Visit, keel: Keel) -> None:
    owner = keel.register("removing_owner")
    sailor = keel.register("removed_sailor")
    me = members_id(keel, sailor)
    list_id = shared_list(keel, owner, "Regatta", [(sailor, "editor")])
    other_id = shared_list(keel, owner, "Harbour fees", [(sailor, "viewer")])
    page = visit.page
    fake = FakeStream(page)
    visit.sign_in(sailor)
    switcher(page).get_by_role("link", name="Regatta").click()  # in the app: the stream stays open
    expect(page.get_by_role("heading", name="Regatta")).to_be_visible()
    fake.wait_for_connections(1)

    api_call(keel, owner, "PATCH", f"/lists/{list_id}", {"name": "Autumn regatta"})
    renamed = {"id": list_id, "name": "Autumn regatta", "members_count": 2, "updated_at": now(), "version": 2}
    fake.send(fake.event("list.updated", list_id=list_id, list=renamed))
    expect(page.get_by_role("heading", name="Autumn regatta")).to_be_visible()
    expect(switcher(page).get_by_role("link", name="Autumn regatta")).to_be_visible()

    # Made a viewer: the page is drawn again, without the controls a viewer cannot use.
    api_call(keel, owner, "PATCH", f"/lists/{list_id}/members/{me}", {"role": "viewer"})
    member = {"user": {"id": me, "username": sailor.username}, "role": "viewer", "added_at": now()}
    expect(page.get_by_role("form", name="Add a todo")).to_be_visible()
    fake.send(fake.event("list.member_updated", list_id=list_id, actor_id=me + 1000, member=member))
    expect(page.get_by_text("Your role in “Autumn regatta” is now viewer.")).to_be_visible()
    expect(page.get_by_role("form", name="Add a todo")).to_have_count(0)

    fake.send(fake.event("list.member_removed", list_id=list_id, actor_id=me + 1000, user_id=me))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_text("You were removed from “Autumn regatta”.")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/todos")

    switcher(page).get_by_role("link", name="Harbour fees").click()
    expect(page.get_by_role("heading", name="Harbour fees")).to_be_visible()
    fake.send(fake.event("list.deleted", list_id=other_id, actor_id=me + 1000))
    expect(page.get_by_text("The list “Harbour fees” was deleted.")).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    visit.watch.assert_clean()


def test_without_the_events_endpoint_the_page_works_without_live_updates(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("quiet_sailor")
    page = visit.page
    fake = FakeStream(page, ticket_status=404)
    visit.sign_in(sailor)
    page.get_by_label("New todo").fill("Still works")
    page.get_by_role("button", name="Add todo").click()
    expect(page.locator(".todo-title", has_text="Still works")).to_be_visible()
    asked = len(fake.ticket_times)
    page.wait_for_timeout(1500)
    assert asked >= 1
    assert len(fake.ticket_times) == asked  # asked once for the page, never again
    assert fake.connections == []
    expect(page.get_by_text("Reconnecting…")).to_have_count(0)
    visit.watch.assert_clean()


def test_a_failing_ticket_is_retried_later_and_later(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("patient_sailor")
    page = visit.page
    fake = FakeStream(page, ticket_status=503)
    visit.sign_in(sailor)
    expect(page.get_by_text("Reconnecting…")).to_be_visible()
    deadline = time.monotonic() + 15
    while len(fake.ticket_times) < 4 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    times = fake.ticket_times[-4:]
    gaps = [later_time - earlier for earlier, later_time in itertools.pairwise(times)]
    assert len(gaps) == 3, fake.ticket_times
    # 1 s, 2 s, 4 s (each with some slack for a busy machine).
    for gap, wanted in zip(gaps, [1, 2, 4], strict=True):
        assert wanted - 0.2 <= gap <= wanted + 1.5, gaps
    fake.ticket_status = 201
    fake.wait_for_connections(1, timeout=12)
    visit.watch.assert_clean(expected_http={503})


def test_a_change_arriving_live_leaves_an_open_edit_and_an_open_question_alone(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("busy_sailor")
    todo = api_call(keel, sailor, "POST", "/todos", {"title": "Grease the winches"})
    path = f"/api/v1/todos/{todo['id']}"
    page = visit.page
    fake = FakeStream(page)
    visit.sign_in(sailor)
    fake.wait_for_connections(1)
    row = page.locator(".todo", has_text="Grease the winches")
    row.get_by_role("button", name="Edit “Grease the winches”").click()
    editor = page.locator(".todo-edit")
    editor.get_by_label("Title").fill("Grease the winches well")
    with elsewhere(keel, sailor) as http:
        # Changed elsewhere, and the stream says so: the form being typed in stays as typed.
        change(http, path, {"description": "Both of them."})
        seen = len(fake.connections)
        fake.send(fake.event("todo.updated", todo=http.get(path).json()))
        fake.wait_for_connections(seen + 1)
        page.wait_for_timeout(300)
        expect(editor.get_by_label("Title")).to_have_value("Grease the winches well")
        editor.get_by_role("button", name="Save").click()
        expect_changed_elsewhere(editor)
        editor.get_by_role("button", name="Reload").click()
        expect(editor.get_by_label("Description")).to_have_value("Both of them.")
        editor.get_by_role("button", name="Save").click()
        row = page.locator(".todo", has_text="Grease the winches well")
        expect(row).to_contain_text("Both of them.")

        # A delete waiting behind its Undo: the change arriving live does not bring the row back,
        # and when the offer ends the DELETE's 412 brings it back in the row.
        row.get_by_role("button", name="Delete “Grease the winches well”").click()
        expect(page.locator(".todo")).to_have_count(0)
        change(http, path, {"title": "Grease the winches twice"})
        seen = len(fake.connections)
        fake.send(fake.event("todo.updated", todo=http.get(path).json()))
        fake.wait_for_connections(seen + 1)
        page.wait_for_timeout(300)
        expect(page.locator(".todo", has_text="Grease the winches twice")).to_have_count(0)
        expect_changed_elsewhere(row, timeout=10_000)
        row.get_by_role("button", name="Reload").click()
        expect(page.locator(".todo-title")).to_have_text(["Grease the winches twice"])
    visit.watch.assert_clean(expected_http={412})


def test_the_highlight_does_not_move_where_motion_is_reduced(browser: Browser, keel: Keel, screenshots: Path) -> None:
    sailor = keel.register("still_sailor")
    todo = api_call(keel, sailor, "POST", "/todos", {"title": "Read the tide table"})
    for page, watch in open_visit(browser, keel, viewport={"width": 1280, "height": 800}, reduced_motion="reduce"):
        visit = Visit(keel=keel, context=page.context, page=page, watch=watch, shots=screenshots)
        fake = FakeStream(page)
        visit.sign_in(sailor)
        fake.wait_for_connections(1)
        fake.send(fake.event("todo.updated", todo={**todo, "completed": True, "updated_at": later(todo["updated_at"])}))
        row = page.locator(".todo", has_text="Read the tide table")
        expect(row).to_have_class(re.compile(r"\bflash\b"))
        assert row.evaluate("(el) => getComputedStyle(el).animationName") == "none"
        # Done, it moved under the open todos into the closed "Completed (1)".
        expect(row.locator("input[type=checkbox]")).to_be_checked()
        expect(page.locator(".completed-todos > summary")).to_have_text("Completed (1)")
        expect(row).not_to_have_class(re.compile(r"\bflash\b"), timeout=3000)
        watch.assert_clean()
