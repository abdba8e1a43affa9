"""The todo page answers at once: ticks and deletes show before the API does, refusals roll back,
deletes wait behind an Undo, due dates read relative with views by due date, a phone adds from one
line, and select mode marks or deletes many todos at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Response, Route, expect

from tests.browser.axe import violations
from tests.browser.conftest import Account, Keel, Visit, Watch, tick

pytestmark = pytest.mark.slow  # a real server and a real browser


@contextmanager
def elsewhere(keel: Keel, account: Account) -> Iterator[httpx.Client]:
    with keel.api() as http:
        http.headers["Authorization"] = f"Bearer {keel.token(account)}"
        yield http


def add_todos(keel: Keel, account: Account, *todos: dict[str, Any]) -> list[int]:
    ids = []
    with elsewhere(keel, account) as http:
        for body in todos:
            answer = http.post("/api/v1/todos", json=body)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


def todo_status(keel: Keel, account: Account, todo_id: int) -> int:
    with elsewhere(keel, account) as http:
        return http.get(f"/api/v1/todos/{todo_id}").status_code


def deletes_seen(page: Page) -> list[str]:
    """The todo DELETEs the page sends from now on, each listed when its answer arrives."""
    seen: list[str] = []

    def record(response: Response) -> None:
        if response.request.method == "DELETE" and "/api/v1/todos/" in response.url:
            seen.append(response.url)

    page.on("response", record)
    return seen


# Whether the element is what a tap at its centre would reach (nothing drawn over it).
ON_TOP = """(el) => {
  const box = el.getBoundingClientRect();
  const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
  return el === hit || el.contains(hit);
}"""


def titles(page: Page) -> Locator:
    return page.locator(".todo .todo-title")


class TestTick:
    def test_a_tick_shows_before_the_api_answers(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("quick_ticker")
        add_todos(keel, sailor, {"title": "Coil the lines"})
        page = visit.page
        held: list[Route] = []
        page.route(
            "**/api/v1/todos/*",
            lambda route: held.append(route) if route.request.method == "PATCH" else route.continue_(),
        )
        visit.sign_in(sailor)
        tick(page, "Coil the lines")
        row = page.locator(".todo", has_text="Coil the lines")
        expect(row).to_have_class("todo done")
        page.wait_for_timeout(200)
        assert len(held) == 1, "the PATCH is still on its way"
        # Until the answer the row stays where it is, with focus on its box.
        expect(page.get_by_role("checkbox", name="Coil the lines")).to_be_focused()
        held[0].continue_()
        # Then it moves under the closed "Completed (1)", and focus to where the next todo is written.
        expect(page.locator(".completed-todos > summary")).to_have_text("Completed (1)")
        expect(row).to_have_class("todo done")
        expect(page.get_by_label("New todo")).to_be_focused()
        visit.watch.assert_clean()

    def test_a_refused_tick_goes_back_and_says_why(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("refused_ticker")
        todo_id = add_todos(keel, sailor, {"title": "Check the bilge"})[0]
        page = visit.page
        problem = {
            "title": "Service Unavailable",
            "status": 503,
            "detail": "Keel is busy. Try again.",
            "code": "unavailable",
        }

        def refuse(route: Route) -> None:
            if route.request.method != "PATCH":
                route.continue_()
                return
            route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem))

        page.route("**/api/v1/todos/*", refuse)
        visit.sign_in(sailor)
        box = page.get_by_role("checkbox", name="Check the bilge")
        box.click()  # check() would see the quick rollback as a failed click
        row = page.locator(".todo", has_text="Check the bilge")
        expect(row.get_by_role("alert")).to_have_text("Keel is busy. Try again.")
        expect(box).not_to_be_checked()
        expect(row).to_have_class("todo")
        with elsewhere(keel, sailor) as http:
            assert http.get(f"/api/v1/todos/{todo_id}").json()["completed"] is False
        visit.watch.assert_clean(expected_http={503})


class TestDelete:
    def test_undo_brings_the_todo_back_and_nothing_is_deleted(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("undoing_sailor")
        first, _ = add_todos(keel, sailor, {"title": "Stow the fenders"}, {"title": "Pump the dinghy"})
        page = visit.page
        deletes = deletes_seen(page)
        visit.sign_in(sailor)
        expect(titles(page)).to_have_text(["Pump the dinghy", "Stow the fenders"])
        page.get_by_role("button", name="Delete “Pump the dinghy”").click()
        expect(titles(page)).to_have_text(["Stow the fenders"])
        # Focus moves to the row that took its place, not to the top of the page.
        expect(page.get_by_role("checkbox", name="Stow the fenders")).to_be_focused()
        toast = page.locator(".undo-toast")
        expect(toast).to_contain_text("Deleted “Pump the dinghy”.")
        visit.screenshot("todo-undo-desktop")
        toast.get_by_role("button", name="Undo").click()
        expect(titles(page)).to_have_text(["Pump the dinghy", "Stow the fenders"])
        expect(page.get_by_role("checkbox", name="Pump the dinghy")).to_be_focused()
        page.wait_for_timeout(6000)
        assert deletes == []
        assert todo_status(keel, sailor, first) == 200
        visit.watch.assert_clean()

    def test_without_undo_the_delete_is_sent_when_the_offer_ends(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("deleting_sailor")
        todo_id = add_todos(keel, sailor, {"title": "Throw out the old charts"})[0]
        page = visit.page
        deletes = deletes_seen(page)
        visit.sign_in(sailor)
        page.get_by_role("button", name="Delete “Throw out the old charts”").click()
        expect(page.locator(".todo")).to_have_count(0)
        # With nothing left, focus waits in the add field.
        expect(page.get_by_label("New todo")).to_be_focused()
        page.wait_for_timeout(1000)
        assert deletes == [], "the DELETE waits while Undo is offered"
        with page.expect_response(lambda r: r.request.method == "DELETE", timeout=10_000) as answer:
            pass
        assert answer.value.status == 204
        expect(page.locator(".undo-toast")).to_be_empty()
        assert todo_status(keel, sailor, todo_id) == 404
        visit.watch.assert_clean()

    def test_leaving_the_page_sends_the_waiting_delete_at_once(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("leaving_sailor")
        todo_id = add_todos(keel, sailor, {"title": "Return the hired buoy"})[0]
        page = visit.page
        visit.sign_in(sailor)
        page.get_by_role("button", name="Delete “Return the hired buoy”").click()
        with page.expect_response(lambda r: r.request.method == "DELETE", timeout=3000):
            page.get_by_role("link", name="Feed", exact=True).click()
        assert todo_status(keel, sailor, todo_id) == 404
        visit.watch.assert_clean()


def test_done_todos_wait_under_the_open_ones_and_clear_together_with_an_undo(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("clearing_sailor")
    ids = add_todos(
        keel, sailor, {"title": "Old rope"}, {"title": "Old chart"}, {"title": "Reef the main"}, {"title": "Bail"}
    )
    with elsewhere(keel, sailor) as http:
        for todo_id in ids[:2]:
            assert http.patch(f"/api/v1/todos/{todo_id}", json={"completed": True}).status_code == 200
    page = visit.page
    visit.sign_in(sailor)
    expect(page.get_by_role("list", name="Todos").locator(".todo-title")).to_have_text(["Bail", "Reef the main"])
    completed = page.locator(".completed-todos")
    expect(completed.locator("> summary")).to_have_text("Completed (2)")
    expect(page.get_by_role("checkbox", name="Old rope")).to_be_hidden()

    # Ticking moves the todo under them, and focus to the next open one.
    tick(page, "Bail")
    expect(completed.locator("> summary")).to_have_text("Completed (3)")
    expect(page.get_by_role("checkbox", name="Reef the main")).to_be_focused()

    completed.locator("> summary").click()
    expect(page.get_by_role("list", name="Completed todos").locator(".todo-title")).to_have_text(
        ["Bail", "Old chart", "Old rope"]
    )
    visit.screenshot("todos-completed-desktop")
    completed.get_by_role("button", name="Clear completed").click()
    expect(completed).to_be_hidden()
    expect(page.locator(".undo-toast")).to_contain_text("Cleared 3 completed todos.")
    page.locator(".undo-toast").get_by_role("button", name="Undo").click()
    expect(completed.locator("> summary")).to_have_text("Completed (3)")

    deletes = deletes_seen(page)
    completed.get_by_role("button", name="Clear completed").click()
    expect(page.locator(".undo-toast")).to_be_empty(timeout=10_000)
    for _ in range(100):
        if len(deletes) == 3:
            break
        page.wait_for_timeout(100)
    assert len(deletes) == 3
    for todo_id in [*ids[:2], ids[3]]:
        assert todo_status(keel, sailor, todo_id) == 404
    assert todo_status(keel, sailor, ids[2]) == 200
    visit.watch.assert_clean()


def test_due_dates_read_relative_and_the_views_pick_by_them(visit: Visit, keel: Keel) -> None:
    sailor = keel.register("dated_sailor")
    today = date.today()
    add_todos(
        keel,
        sailor,
        {"title": "Undated"},
        {"title": "Last week", "due_date": (today - timedelta(days=3)).isoformat()},
        {"title": "Yesterday's", "due_date": (today - timedelta(days=1)).isoformat()},
        {"title": "Today's", "due_date": today.isoformat()},
        {"title": "Tomorrow's", "due_date": (today + timedelta(days=1)).isoformat()},
        {"title": "Soon", "due_date": (today + timedelta(days=3)).isoformat()},
    )
    page = visit.page
    visit.sign_in(sailor)

    def due(title: str) -> Locator:
        return page.locator(".todo", has_text=title).locator(".due")

    expect(due("Today's")).to_have_text("Due today")
    expect(due("Tomorrow's")).to_have_text("Due tomorrow")
    expect(due("Soon")).to_have_text("Due in 3 days")
    expect(due("Yesterday's")).to_have_text("Overdue, due yesterday")
    expect(due("Last week")).to_have_text("Overdue, due 3 days ago")
    expect(due("Last week")).to_have_class("due overdue")
    expect(due("Today's").locator("time")).to_have_attribute("datetime", today.isoformat())

    page.get_by_text("Today", exact=True).click()
    expect(titles(page)).to_have_text(["Today's"])
    assert page.url.endswith("/todos?due=today")
    page.get_by_text("Upcoming", exact=True).click()
    expect(titles(page)).to_have_text(["Soon", "Tomorrow's"])
    page.get_by_text("Overdue", exact=True).click()
    expect(titles(page)).to_have_text(["Yesterday's", "Last week"])
    # The view survives a reload; ticking an overdue todo takes it out of the view.
    page.reload()
    expect(titles(page)).to_have_text(["Yesterday's", "Last week"])
    tick(page, "Yesterday's")
    expect(titles(page)).to_have_text(["Last week"])
    expect(page.get_by_role("checkbox", name="Last week")).to_be_focused()
    page.get_by_text("Any date", exact=True).click()
    expect(titles(page)).to_have_count(6)
    visit.watch.assert_clean()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_phone_adds_from_one_line_and_sees_the_todo_at_once(
    browser: Browser, keel: Keel, screenshots: Any, scheme: str
) -> None:
    sailor = keel.register(f"phone_{scheme}")
    context = browser.new_context(viewport={"width": 360, "height": 740}, color_scheme=scheme, service_workers="block")  # type: ignore[arg-type]
    watch = Watch(context, keel.url)
    page = watch.attach(context.new_page())
    try:
        visit = Visit(keel=keel, context=context, page=page, watch=watch, shots=screenshots)
        visit.sign_in(sailor)
        # An empty list offers the way to its first todo.
        page.get_by_role("button", name="Add your first todo").click()
        title = page.get_by_label("New todo")
        expect(title).to_be_focused()
        expect(page.get_by_label("Priority")).to_be_hidden()
        title.fill("Fill the water tanks")
        page.get_by_role("button", name="Add todo").click()
        row = page.locator(".todo", has_text="Fill the water tanks")
        expect(row).to_be_in_viewport()
        page.get_by_text("More options").click()
        expect(page.get_by_label("Priority")).to_be_visible()
        page.get_by_text("More options").click()
        visit.screenshot(f"todos-phone-{scheme}")
        # Edit and Delete wait behind the row's menu on a phone.
        delete = page.get_by_role("button", name="Delete “Fill the water tanks”")
        expect(delete).to_be_hidden()
        page.get_by_label("Actions for “Fill the water tanks”").click()
        page.screenshot(path=screenshots / f"todos-phone-menu-{scheme}.png")
        page.keyboard.press("Escape")
        expect(delete).to_be_hidden()
        expect(page.get_by_label("Actions for “Fill the water tanks”")).to_be_focused()
        page.get_by_label("Actions for “Fill the water tanks”").click()
        delete.click()
        expect(page.locator(".undo-toast")).to_be_visible()
        page.screenshot(path=screenshots / f"todos-phone-undo-{scheme}.png")
        undo = page.locator(".undo-toast").get_by_role("button", name="Undo")
        # A message shown meanwhile (as "Todo added." may still be) sits clear of the Undo bar.
        page.evaluate("() => { document.getElementById('toast').textContent = 'Todo added.'; }")
        assert undo.evaluate(ON_TOP), "another toast covers the Undo button"
        undo.click()
        expect(row).to_be_visible()
        watch.assert_clean()
    finally:
        context.close()


def completed_on_server(keel: Keel, account: Account) -> dict[str, bool]:
    """Each of `account`'s inbox todos (by title) and whether Keel has it done."""
    with elsewhere(keel, account) as http:
        listed = http.get("/api/v1/todos", params={"limit": 100})
        assert listed.status_code == 200, listed.text
        return {item["title"]: item["completed"] for item in listed.json()["items"]}


def select_bar(page: Page) -> Locator:
    return page.get_by_role("group", name="Selected todos")


class TestSelectMode:
    def test_the_keyboard_alone_marks_several_done_and_deletes_them_with_one_undo(
        self, visit: Visit, keel: Keel
    ) -> None:
        sailor = keel.register("selecting_sailor")
        add_todos(keel, sailor, {"title": "Fix the hatch"}, {"title": "Mend the sail"}, {"title": "Bake bread"})
        add_todos(keel, sailor, {"title": "Buy milk"})
        page = visit.page
        visit.sign_in(sailor)
        expect(titles(page)).to_have_text(["Buy milk", "Bake bread", "Mend the sail", "Fix the hatch"])

        page.get_by_role("button", name="Select", exact=True).focus()
        page.keyboard.press("Enter")
        bar = select_bar(page)
        expect(bar).to_be_visible()
        expect(bar.get_by_role("status")).to_have_text("0 selected")
        # Focus starts on the first row's box; the tick boxes step aside, so nothing gets ticked by mistake.
        expect(page.get_by_role("checkbox", name="Select “Buy milk”")).to_be_focused()
        expect(page.get_by_role("checkbox", name="Buy milk", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Delete “Buy milk”")).to_have_count(0)
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        expect(page.get_by_role("checkbox", name="Select “Bake bread”")).to_be_focused()
        page.keyboard.press("Tab")
        page.keyboard.press("Space")
        expect(bar.get_by_role("status")).to_have_text("2 selected")
        expect(page.locator(".todo.selected .todo-title")).to_have_text(["Buy milk", "Mend the sail"])
        expect(bar.get_by_role("button", name="Mark not done")).to_be_disabled()
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            visit.screenshot(f"todos-select-desktop-{scheme}")
            assert violations(page) == [], scheme
        page.emulate_media(color_scheme="light")

        bar.get_by_role("button", name="Mark done").focus()
        page.keyboard.press("Enter")
        # Both show done at once, under "Completed (2)", and focus waits where select mode began.
        expect(page.locator(".completed-todos > summary")).to_have_text("Completed (2)")
        expect(bar).to_be_hidden()
        expect(page.get_by_role("button", name="Select", exact=True)).to_be_focused()
        expect(page.locator("#toast")).to_have_text("Marked 2 todos done.")
        expect(page.get_by_role("list", name="Todos").locator(".todo-title")).to_have_text(
            ["Bake bread", "Fix the hatch"]
        )
        page.wait_for_load_state("networkidle")
        assert completed_on_server(keel, sailor) == {
            "Buy milk": True,
            "Bake bread": False,
            "Mend the sail": True,
            "Fix the hatch": False,
        }

        # Select all picks every todo on the page, the done ones too (shown for that); one Undo
        # brings them all back and nothing is deleted.
        deletes = deletes_seen(page)
        page.keyboard.press("Enter")
        expect(bar).to_be_visible()
        expect(page.locator(".completed-todos")).to_have_attribute("open", "")
        bar.get_by_label("Select all on this page").focus()
        page.keyboard.press("Space")
        expect(bar.get_by_role("status")).to_have_text("4 selected")
        expect(page.get_by_role("checkbox", name="Select “Mend the sail”")).to_be_checked()
        bar.get_by_role("button", name="Delete").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".todo")).to_have_count(0)
        toast = page.locator(".undo-toast")
        expect(toast).to_contain_text("Deleted 4 todos.")
        expect(toast.get_by_role("button", name="Undo")).to_have_count(1)
        toast.get_by_role("button", name="Undo").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".todo")).to_have_count(4)
        expect(page.locator("#toast")).to_have_text("Restored 4 todos.")
        assert deletes == []

        # Escape leaves select mode and its picks behind.
        page.get_by_role("button", name="Select", exact=True).focus()
        page.keyboard.press("Enter")
        page.keyboard.press("Space")
        expect(bar.get_by_role("status")).to_have_text("1 selected")
        page.keyboard.press("Escape")
        expect(bar).to_be_hidden()
        expect(page.get_by_role("button", name="Select", exact=True)).to_be_focused()
        expect(page.locator(".todo.selected")).to_have_count(0)

        # Delete for real: the two open ones go when the offer ends; with no open row left in their
        # place, focus waits in the add field.
        page.keyboard.press("Enter")
        page.get_by_role("checkbox", name="Select “Bake bread”").focus()
        page.keyboard.press("Space")
        page.keyboard.press("Tab")
        page.keyboard.press("Space")
        expect(bar.get_by_role("status")).to_have_text("2 selected")
        expect(page.locator(".todo.selected .todo-title")).to_have_text(["Bake bread", "Fix the hatch"])
        expect(bar.get_by_role("button", name="Mark done")).to_be_enabled()
        expect(bar.get_by_role("button", name="Mark not done")).to_be_disabled()
        bar.get_by_role("button", name="Delete").click()
        expect(page.locator(".undo-toast")).to_contain_text("Deleted 2 todos.")
        expect(page.get_by_label("New todo")).to_be_focused()
        expect(page.get_by_role("list", name="Todos").locator(".empty")).to_have_text("All done. Nothing open here.")
        for _ in range(100):
            if len(deletes) == 2:
                break
            page.wait_for_timeout(100)
        assert len(deletes) == 2
        assert completed_on_server(keel, sailor) == {"Buy milk": True, "Mend the sail": True}
        visit.watch.assert_clean()

    def test_a_todo_keel_refuses_goes_back_alone_and_says_why(self, visit: Visit, keel: Keel) -> None:
        sailor = keel.register("refused_selector")
        stuck, _, _ = add_todos(keel, sailor, {"title": "Stuck winch"}, {"title": "Oil the blocks"}, {"title": "Swab"})
        page = visit.page
        problem = {"title": "Service Unavailable", "status": 503, "detail": "Keel is busy. Try again.", "code": "x"}

        def refuse_one(route: Route) -> None:
            if route.request.method == "PATCH" and route.request.url.endswith(f"/todos/{stuck}"):
                route.fulfill(status=503, content_type="application/problem+json", body=json.dumps(problem))
            else:
                route.continue_()

        page.route("**/api/v1/todos/*", refuse_one)
        visit.sign_in(sailor)
        page.get_by_role("button", name="Select", exact=True).click()
        page.get_by_role("checkbox", name="Select “Stuck winch”").click()
        # A tap on the row's text picks it too.
        page.locator(".todo", has_text="Oil the blocks").locator(".todo-title").click()
        expect(select_bar(page).get_by_role("status")).to_have_text("2 selected")
        select_bar(page).get_by_role("button", name="Mark done").click()

        stuck_row = page.locator(".todo", has_text="Stuck winch")
        expect(stuck_row.get_by_role("alert")).to_have_text("Keel is busy. Try again.")
        expect(page.get_by_role("checkbox", name="Stuck winch")).not_to_be_checked()
        expect(page.locator(".completed-todos > summary")).to_have_text("Completed (1)")
        expect(page.locator("#toast")).to_have_text(
            "Marked 1 of 2 todos done. 1 could not be changed: its row says why."
        )
        page.wait_for_load_state("networkidle")
        assert completed_on_server(keel, sailor) == {"Stuck winch": False, "Oil the blocks": True, "Swab": False}
        visit.watch.assert_clean(expected_http={503})

    @pytest.mark.parametrize("scheme", ["light", "dark"])
    def test_a_phone_picks_by_tapping_rows(self, browser: Browser, keel: Keel, screenshots: Any, scheme: str) -> None:
        sailor = keel.register(f"phone_selector_{scheme}")
        add_todos(keel, sailor, *({"title": f"Chore {n}"} for n in range(1, 13)))
        phone = {"width": 360, "height": 740}
        context = browser.new_context(viewport=phone, color_scheme=scheme, service_workers="block")  # type: ignore[arg-type]
        watch = Watch(context, keel.url)
        page = watch.attach(context.new_page())
        try:
            visit = Visit(keel=keel, context=context, page=page, watch=watch, shots=screenshots)
            visit.sign_in(sailor)
            page.get_by_role("button", name="Select", exact=True).click()
            for title in ("Chore 12", "Chore 11", "Chore 3"):
                page.locator(".todo", has_text=title).click()
            bar = select_bar(page)
            expect(bar.get_by_role("status")).to_have_text("3 selected")
            # The bar stays in sight while the list scrolls under it.
            page.locator(".todo", has_text="Chore 1").last.scroll_into_view_if_needed()
            expect(bar.get_by_role("button", name="Delete")).to_be_in_viewport()
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=screenshots / f"todos-select-phone-{scheme}.png")
            assert violations(page) == []
            bar.get_by_role("button", name="Delete").click()
            expect(page.locator(".undo-toast")).to_contain_text("Deleted 3 todos.")
            expect(page.locator(".todo")).to_have_count(9)
            page.screenshot(path=screenshots / f"todos-select-phone-deleted-{scheme}.png")
            watch.assert_clean()
        finally:
            context.close()


def test_a_viewer_of_a_shared_list_gets_no_select_mode(visit: Visit, keel: Keel) -> None:
    owner = keel.register("select_owner")
    reader = keel.register("select_reader")
    with elsewhere(keel, owner) as http:
        made = http.post("/api/v1/lists", json={"name": "Read only"}).json()
        member = {"username": reader.username, "role": "viewer"}
        assert http.post(f"/api/v1/lists/{made['id']}/members", json=member).status_code == 201
        assert http.post("/api/v1/todos", json={"title": "Look, do not touch", "list_id": made["id"]}).is_success
    page = visit.page
    visit.sign_in(reader)
    visit.goto(f"/todos?list={made['id']}")
    expect(page.locator(".todo", has_text="Look, do not touch")).to_be_visible()
    expect(page.get_by_role("button", name="Select", exact=True)).to_have_count(0)
    visit.watch.assert_clean()
