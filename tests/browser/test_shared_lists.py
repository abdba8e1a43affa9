"""Shared lists in the web UI: the switcher (Inbox, my lists, shared with me) kept in the address,
making, renaming and deleting a list, the members dialog (invite, roles, remove, leave), a viewer's
read-only page, labels as chips that filter, the assignee picker and "Assigned to me", a stale
rename or delete meeting 412, phone and dark layouts, and axe-core's scan of these views. The live
updates client has its own tests (test_live_client.py, test_live.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.axe import violations
from tests.browser.conftest import Account, Keel, Visit
from tests.browser.live_fake import without_live_updates
from tests.browser.test_conflicts import capture, change, elsewhere, expect_changed_elsewhere
from tests.browser.test_layout import UNLABELLED, open_visit

pytestmark = pytest.mark.slow  # a real server and a real browser


def api_call(keel: Keel, account: Account, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One API request as `account`, in a session of its own; the answer's JSON (None for 204)."""
    with elsewhere(keel, account) as http:
        answer = http.request(method, f"/api/v1{path}", json=body)
        assert answer.is_success, answer.text
        return answer.json() if answer.status_code != 204 else None


def shared_list(keel: Keel, owner: Account, name: str, members: list[tuple[Account, str]]) -> int:
    """A list of `owner`'s with `members` ([(account, role)]) in it; its id."""
    made = api_call(keel, owner, "POST", "/lists", {"name": name})
    for member, role in members:
        api_call(keel, owner, "POST", f"/lists/{made['id']}/members", {"username": member.username, "role": role})
    return int(made["id"])


def switcher(page: Page) -> Any:
    return page.get_by_role("navigation", name="Lists")


def test_a_list_is_made_renamed_and_deleted_and_the_address_keeps_the_choice(visit: Visit, keel: Keel) -> None:
    owner = keel.register("list_maker")
    page = visit.page
    visit.sign_in(owner)
    visit.goto("/todos")
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()

    switcher(page).get_by_label("New list").fill("Boat trip")
    switcher(page).get_by_role("button", name="Create list").click()
    expect(page.get_by_role("heading", name="Boat trip")).to_be_visible()
    expect(page).to_have_url(f"{keel.url}/todos?list=" + page.url.split("list=")[1])
    list_id = int(page.url.split("list=")[1])
    expect(switcher(page).get_by_role("link", name="Boat trip")).to_have_attribute("aria-current", "page")

    page.get_by_label("New todo").fill("Pack the life jackets")
    page.get_by_role("button", name="Add todo").click()
    expect(page.locator(".todo-title", has_text="Pack the life jackets")).to_be_visible()
    # The inbox does not show the list's todos, and back returns to the list.
    switcher(page).get_by_role("link", name="Inbox").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.locator(".todo-title", has_text="Pack the life jackets")).to_have_count(0)
    page.go_back()
    expect(page.get_by_role("heading", name="Boat trip")).to_be_visible()
    page.reload()
    expect(page.locator(".todo-title", has_text="Pack the life jackets")).to_be_visible()

    page.get_by_role("button", name="Rename").click()
    page.get_by_label("List name").fill("Boat trip to the islands")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("heading", name="Boat trip to the islands")).to_be_visible()
    expect(switcher(page).get_by_role("link", name="Boat trip to the islands")).to_be_visible()
    capture(visit, "shared-list-owner")

    page.get_by_role("button", name="Delete list").click()
    expect(page.get_by_role("dialog")).to_contain_text("all its todos")
    page.get_by_role("dialog").get_by_role("button", name="Delete list").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_text("The list “Boat trip to the islands” was deleted.")).to_be_visible()
    with elsewhere(keel, owner) as http:
        assert http.get(f"/api/v1/lists/{list_id}").status_code == 404
    visit.watch.assert_clean()


def test_the_owner_manages_members_and_a_viewer_reads_then_leaves(
    visit: Visit, second_visit: Visit, keel: Keel
) -> None:
    owner = keel.register("crew_owner")
    mate = keel.register("crew_mate")
    keel.register("crew_cook")
    list_id = shared_list(keel, owner, "Galley", [])
    api_call(keel, owner, "POST", "/todos", {"title": "Buy lemons", "list_id": list_id, "labels": ["food"]})
    page = visit.page
    visit.sign_in(owner)
    visit.goto(f"/todos?list={list_id}")
    page.get_by_role("button", name="Members").click()
    dialog = page.get_by_role("dialog", name="Members of “Galley”")
    expect(dialog.get_by_role("list", name="Members")).to_contain_text("crew_owner (you)")

    # Errors are said beside the form, in words.
    dialog.get_by_label("Username").fill("nobody_here")
    dialog.get_by_role("button", name="Invite").click()
    expect(dialog.get_by_text("No one has that username. Check the spelling.")).to_be_visible()
    dialog.get_by_label("Username").fill("crew_mate")
    dialog.get_by_role("button", name="Invite").click()
    expect(dialog.get_by_role("list", name="Members")).to_contain_text("crew_mate")
    dialog.get_by_label("Username").fill("CREW_MATE")
    dialog.get_by_role("button", name="Invite").click()
    expect(dialog.get_by_text("They are already a member of this list.")).to_be_visible()
    dialog.get_by_label("Username").fill("crew_cook")
    dialog.get_by_label("Role", exact=True).select_option("viewer")
    dialog.get_by_role("button", name="Invite").click()
    expect(dialog.get_by_label("Role of crew_cook")).to_have_value("viewer")
    dialog.get_by_label("Role of crew_mate").select_option("viewer")
    expect(dialog.get_by_role("status")).to_have_text("crew_mate is now viewer.")
    dialog.get_by_role("button", name="Remove crew_cook").click()
    page.get_by_role("dialog").filter(has_text="Remove crew_cook").get_by_role("button", name="Remove").click()
    expect(dialog.get_by_role("list", name="Members")).not_to_contain_text("crew_cook")
    visit.screenshot("shared-list-members-desktop")
    page.keyboard.press("Escape")  # the dialog closes and focus goes back to its button
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Members")).to_be_focused()
    expect(page.get_by_text("Your list · 2 members")).to_be_visible()
    members = api_call(keel, owner, "GET", f"/lists/{list_id}/members")
    assert [(m["user"]["username"], m["role"]) for m in members] == [("crew_owner", "owner"), ("crew_mate", "viewer")]

    # The viewer finds the list under "Shared with me" and reads it without any control to change it.
    other = second_visit.page
    second_visit.sign_in(mate)
    second_visit.goto("/todos")
    switcher(other).get_by_role("link", name="Galley").click()
    expect(other.get_by_text("Shared by crew_owner · you can view")).to_be_visible()
    expect(other.get_by_text("Buy lemons")).to_be_visible()
    expect(other.get_by_role("form", name="Add a todo")).to_have_count(0)
    expect(other.locator(".todo-list").get_by_role("checkbox")).to_have_count(0)
    expect(other.get_by_role("button", name="Edit “Buy lemons”")).to_have_count(0)
    expect(other.get_by_role("button", name="Delete “Buy lemons”")).to_have_count(0)
    expect(other.get_by_role("button", name="Rename")).to_have_count(0)
    capture(second_visit, "shared-list-viewer")
    other.get_by_role("button", name="Members").click()
    other.get_by_role("button", name="Leave list").click()
    other.get_by_role("dialog").filter(has_text="Leave “Galley”?").get_by_role("button", name="Leave").click()
    expect(other.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(other.get_by_text("You left “Galley”.")).to_be_visible()
    expect(switcher(other).get_by_role("link", name="Galley")).to_have_count(0)
    visit.watch.assert_clean(expected_http={404, 409})  # user_not_found, already_member
    second_visit.watch.assert_clean()


def test_labels_are_chips_that_filter_and_are_edited_as_chips(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("label_sailor")
    api_call(keel, sailor, "POST", "/todos", {"title": "Check the charts", "labels": ["navigation"]})
    page = visit.page
    visit.sign_in(sailor)
    visit.goto("/todos")
    add = page.get_by_role("form", name="Add a todo")
    add.get_by_label("New todo").fill("Buy rope")
    labels = add.get_by_label("Labels", exact=True)
    labels.fill("Errands")
    labels.press("Enter")  # a chip, not a submit
    labels.type("deck, ")
    expect(add.get_by_role("list", name="Labels added")).to_contain_text("errands")
    expect(add.get_by_role("list", name="Labels added")).to_contain_text("deck")
    add.get_by_role("button", name="Remove label “deck”").click()
    labels.fill("shopping")  # still typed when the form is sent: it counts too
    add.get_by_role("button", name="Add todo").click()
    row = page.locator(".todo", has_text="Buy rope")
    expect(row.get_by_role("list", name="Labels").get_by_role("listitem")).to_have_text(["errands", "shopping"])
    expect(add.get_by_role("list", name="Labels added")).to_be_hidden()  # the form starts afresh

    # Too many or too long labels are refused in the field, before the server is asked.
    labels.fill("x" * 31)
    labels.press("Enter")
    expect(add.get_by_text("A label has at most 30 characters.")).to_be_visible()
    labels.fill("")

    row.get_by_role("button", name="Show only label “errands”").click()
    expect(page).to_have_url(f"{keel.url}/todos?label=errands")
    expect(page.locator(".todo")).to_have_count(1)
    expect(page.get_by_text("Label: errands")).to_be_visible()
    capture(visit, "shared-list-label-filter")
    page.reload()
    expect(page.locator(".todo")).to_have_count(1)
    page.get_by_role("button", name="Clear label filter").click()
    expect(page.locator(".todo")).to_have_count(2)
    expect(page).to_have_url(f"{keel.url}/todos")

    row.get_by_role("button", name="Edit “Buy rope”").click()
    editor = page.locator(".todo-edit")
    expect(editor.get_by_role("list", name="Labels added")).to_contain_text("shopping")
    editor.get_by_role("button", name="Remove label “shopping”").click()
    editor.get_by_label("Labels", exact=True).fill("Harbour Store")
    editor.get_by_label("Labels", exact=True).press("Enter")
    editor.get_by_role("button", name="Save").click()
    expect(row.get_by_role("list", name="Labels").get_by_role("listitem")).to_have_text(["errands", "harbour store"])
    visit.watch.assert_clean()


def test_todos_are_assigned_to_members_and_assigned_to_me_filters(visit: Visit, keel: Keel) -> None:
    skipper = keel.register("assign_skipper")
    deckhand = keel.register("assign_deckhand")
    list_id = shared_list(keel, skipper, "Watch rota", [(deckhand, "editor")])
    page = visit.page
    visit.sign_in(skipper)
    visit.goto(f"/todos?list={list_id}")
    add = page.get_by_role("form", name="Add a todo")
    expect(add.get_by_label("Assigned to")).to_contain_text("assign_deckhand")
    adding = [("Night watch", "assign_deckhand"), ("Morning watch", "assign_skipper (you)"), ("Anyone: coffee", None)]
    for title, assignee in adding:
        add.get_by_label("New todo").fill(title)
        if assignee:
            add.get_by_label("Assigned to").select_option(label=assignee)
        add.get_by_role("button", name="Add todo").click()
        expect(page.locator(".todo", has_text=title)).to_be_visible()
    expect(page.locator(".todo", has_text="Night watch")).to_contain_text("Assigned to assign_deckhand")
    expect(page.locator(".todo", has_text="Morning watch")).to_contain_text("Assigned to you")
    expect(page.locator(".todo", has_text="Anyone: coffee")).not_to_contain_text("Assigned to")

    page.get_by_label("Assigned to me").check()
    expect(page.locator(".todo")).to_have_count(1)
    expect(page.locator(".todo")).to_contain_text("Morning watch")
    expect(page).to_have_url(f"{keel.url}/todos?list={list_id}&assigned=me")
    page.get_by_label("Assigned to me").uncheck()
    expect(page.locator(".todo")).to_have_count(3)

    # Reassigning in the edit form.
    page.get_by_role("button", name="Edit “Anyone: coffee”").click()
    page.locator(".todo-edit").get_by_label("Assigned to").select_option(label="assign_deckhand")
    page.locator(".todo-edit").get_by_role("button", name="Save").click()
    expect(page.locator(".todo", has_text="Anyone: coffee")).to_contain_text("Assigned to assign_deckhand")
    mine = api_call(keel, deckhand, "GET", f"/todos?list_id={list_id}&assignee_id=" + str(members_id(keel, deckhand)))
    assert sorted(todo["title"] for todo in mine["items"]) == ["Anyone: coffee", "Night watch"]
    visit.watch.assert_clean()


def members_id(keel: Keel, account: Account) -> int:
    return int(api_call(keel, account, "GET", "/users/me")["id"])


def test_a_list_renamed_elsewhere_is_not_overwritten(visit: Visit, keel: Keel) -> None:
    owner = keel.register("rename_owner")
    list_id = shared_list(keel, owner, "Spares", [])
    page = visit.page
    # The page must not hear of the changes made elsewhere: this is what a page out of date does.
    without_live_updates(page)
    visit.sign_in(owner)
    visit.goto(f"/todos?list={list_id}")
    page.get_by_role("button", name="Rename").click()
    form = page.get_by_role("form", name="Rename the list")
    form.get_by_label("List name").fill("Spare parts")
    with elsewhere(keel, owner) as http:
        change(http, f"/api/v1/lists/{list_id}", {"name": "Spares and tools"})
        form.get_by_role("button", name="Save name").click()
        expect_changed_elsewhere(form)
        assert http.get(f"/api/v1/lists/{list_id}").json()["name"] == "Spares and tools"
        form.get_by_role("button", name="Reload").click()
        expect(form.get_by_label("List name")).to_have_value("Spares and tools")
        expect(form.locator(".typed")).to_contain_text("Spare parts")
        form.get_by_role("button", name="Use mine").click()
        form.get_by_role("button", name="Save name").click()
        expect(page.get_by_role("heading", name="Spare parts")).to_be_visible()
        assert http.get(f"/api/v1/lists/{list_id}").json()["name"] == "Spare parts"

        # Deleting a list renamed since the page read it deletes nothing.
        change(http, f"/api/v1/lists/{list_id}", {"name": "Spares, final"})
        page.get_by_role("button", name="Delete list").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete list").click()
        expect_changed_elsewhere(page.locator(".list-head"))
        assert http.get(f"/api/v1/lists/{list_id}").status_code == 200
    visit.watch.assert_clean(expected_http={412})


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("phone", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}),
        ("dark", {"viewport": {"width": 1280, "height": 800}, "color_scheme": "dark"}),
        ("phone-dark", {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "color_scheme": "dark"}),
    ],
)
def test_a_shared_list_fits_a_phone_and_dark_mode(
    browser: Browser, keel: Keel, screenshots: Path, label: str, options: dict[str, Any]
) -> None:
    owner = keel.register(f"fit_owner_{label.replace('-', '_')}")
    mate = keel.register(f"fit_mate_{label.replace('-', '_')}")
    list_id = shared_list(keel, owner, "A list with a rather long name for a small screen", [(mate, "editor")])
    mate_id = members_id(keel, mate)
    for title, labels, assignee in [
        ("Replace the bilge pump impeller before the season starts", ["engine", "before launch", "spares"], mate_id),
        ("Check the flares", ["safety"], None),
    ]:
        body = {"title": title, "list_id": list_id, "labels": labels, "assignee_id": assignee}
        api_call(keel, owner, "POST", "/todos", body)
    for page, watch in open_visit(browser, keel, **options):
        visit = Visit(keel=keel, context=page.context, page=page, watch=watch, shots=screenshots)
        visit.sign_in(owner)
        visit.goto(f"/todos?list={list_id}")
        expect(page.locator(".todo")).to_have_count(2)
        # A phone's add form is one line; its labels wait under "More options".
        more = page.get_by_role("form", name="Add a todo").get_by_text("More options")
        if more.is_visible():
            more.click()
        page.get_by_role("textbox", name="Labels", exact=True).fill("one, two, ")
        fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(fits)
        assert page.evaluate(UNLABELLED) == []
        visit.screenshot(f"shared-list-{label}")
        page.get_by_role("button", name="Members").click()
        expect(page.get_by_role("dialog").get_by_role("list", name="Members")).to_contain_text(mate.username)
        assert page.evaluate(fits)
        assert page.evaluate(UNLABELLED) == []
        page.screenshot(path=screenshots / f"shared-list-members-{label}.png")
        watch.assert_clean()


def test_the_shared_list_views_have_no_accessibility_violations(visit: Visit, second_visit: Visit, keel: Keel) -> None:
    owner = keel.register("axe_owner")
    reader = keel.register("axe_reader")
    list_id = shared_list(keel, owner, "Checked by axe", [(reader, "viewer")])
    api_call(keel, owner, "POST", "/todos", {"title": "Label me", "list_id": list_id, "labels": ["deck", "rope"]})
    api_call(keel, owner, "POST", "/todos", {"title": "Done already", "list_id": list_id, "labels": ["deck"]})
    page = visit.page
    visit.sign_in(owner)
    assert violations(page) == []  # the inbox
    visit.goto(f"/todos?list={list_id}")
    expect(page.locator(".todo")).to_have_count(2)
    page.get_by_role("textbox", name="Labels", exact=True).fill("typed, ")
    assert violations(page) == []
    page.locator(".todo", has_text="Label me").get_by_role("button", name="Show only label “rope”").click()
    expect(page.get_by_role("button", name="Clear label filter")).to_be_visible()
    page.get_by_role("button", name="Edit “Label me”").click()
    assert violations(page) == []
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Members").click()
    page.get_by_role("dialog").get_by_role("button", name="Invite").click()  # an empty username: an error shown
    expect(page.get_by_role("dialog").get_by_label("Username")).to_have_attribute("aria-invalid", "true")
    assert violations(page) == []
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Rename").click()
    assert violations(page) == []

    other = second_visit.page
    second_visit.sign_in(reader)
    second_visit.goto(f"/todos?list={list_id}")
    expect(other.locator(".todo")).to_have_count(2)
    assert violations(other) == []
    visit.watch.assert_clean(expected_http={422})
    second_visit.watch.assert_clean()


def test_axe_sees_a_violation(visit: Visit) -> None:
    """The scans above mean something only if a violation would be seen."""
    visit.goto("/signin")
    visit.page.get_by_role("heading", name="Sign in").wait_for()
    visit.page.evaluate("() => document.querySelector('main').append(document.createElement('input'))")
    assert any(found.startswith("label ") for found in violations(visit.page)), violations(visit.page)
