"""Todos in shared lists: visible to every member and to no one else, changed by owners and
editors, labelled, assigned and filtered; the private inbox as it always was. Both backends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import assert_problem
from tests.routes.test_lists import Shared, create_list, member, shared_list

TODOS = "/api/v1/todos"


@pytest.fixture
async def shared(app: FastAPI, client: httpx.AsyncClient) -> Shared:
    return await shared_list(app, client)


async def add(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post(TODOS, json={"title": "A todo", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def page(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(TODOS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_todo_in_a_list_is_seen_by_every_member_and_by_no_one_else(
    shared: Shared, client: httpx.AsyncClient
) -> None:
    todo = await add(client, shared.editor.headers, title="Milk", list_id=shared.list_id)
    assert todo["list_id"] == shared.list_id
    assert todo["owner_id"] == shared.editor.account.id

    for who in (shared.owner, shared.editor, shared.viewer):
        got = await client.get(f"{TODOS}/{todo['id']}", headers=who.headers)
        assert got.status_code == 200
        assert got.json() == todo
        assert [item["id"] for item in (await page(client, who.headers, list_id=shared.list_id))["items"]] == [
            todo["id"]
        ]
    stranger = shared.stranger.headers
    assert_problem(await client.get(f"{TODOS}/{todo['id']}", headers=stranger), 404, "todo_not_found")
    assert_problem(await client.patch(f"{TODOS}/{todo['id']}", json={}, headers=stranger), 404, "todo_not_found")
    assert_problem(await client.delete(f"{TODOS}/{todo['id']}", headers=stranger), 404, "todo_not_found")
    assert_problem(await client.get(TODOS, params={"list_id": shared.list_id}, headers=stranger), 404, "list_not_found")
    assert_problem(await client.get(TODOS, params={"list_id": 987654}, headers=stranger), 404, "list_not_found")


async def test_the_inbox_stays_private_and_holds_no_list_todos(shared: Shared, client: httpx.AsyncClient) -> None:
    private = await add(client, shared.editor.headers, title="My own")
    await add(client, shared.editor.headers, title="Shared", list_id=shared.list_id)

    assert private["list_id"] is None
    assert private["labels"] == []
    assert private["assignee_id"] is None
    inbox = await page(client, shared.editor.headers)
    assert [item["title"] for item in inbox["items"]] == ["My own"]
    assert inbox["total"] == 1
    for who in (shared.owner, shared.viewer):
        assert_problem(await client.get(f"{TODOS}/{private['id']}", headers=who.headers), 404, "todo_not_found")
        assert (await page(client, who.headers))["total"] == 0


async def test_a_viewer_reads_but_cannot_write(shared: Shared, client: httpx.AsyncClient) -> None:
    todo = await add(client, shared.owner.headers, list_id=shared.list_id)
    viewer = shared.viewer.headers
    create = await client.post(TODOS, json={"title": "x", "list_id": shared.list_id}, headers=viewer)
    assert_problem(create, 403, "forbidden")
    assert_problem(
        await client.patch(f"{TODOS}/{todo['id']}", json={"completed": True}, headers=viewer), 403, "forbidden"
    )
    assert_problem(await client.delete(f"{TODOS}/{todo['id']}", headers=viewer), 403, "forbidden")
    assert (await client.get(f"{TODOS}/{todo['id']}", headers=viewer)).json()["completed"] is False

    done = await client.patch(f"{TODOS}/{todo['id']}", json={"completed": True}, headers=shared.editor.headers)
    assert done.status_code == 200
    assert done.json()["completed"] is True
    assert (await client.delete(f"{TODOS}/{todo['id']}", headers=shared.editor.headers)).status_code == 204


async def test_creating_in_a_list_one_is_not_a_member_of_is_a_404(shared: Shared, client: httpx.AsyncClient) -> None:
    response = await client.post(TODOS, json={"title": "x", "list_id": shared.list_id}, headers=shared.stranger.headers)
    assert_problem(response, 404, "list_not_found")
    assert (await page(client, shared.owner.headers, list_id=shared.list_id))["total"] == 0


async def test_labels_are_normalised_and_filter_the_page(shared: Shared, client: httpx.AsyncClient) -> None:
    first = await add(
        client, shared.editor.headers, list_id=shared.list_id, labels=["  Errands ", "errands", "Home  Office"]
    )
    await add(client, shared.editor.headers, list_id=shared.list_id, labels=["home"])
    await add(client, shared.editor.headers, list_id=shared.list_id, labels=["100%_sure"])
    mine = await add(client, shared.editor.headers, labels=["errands"])

    assert first["labels"] == ["errands", "home office"]
    in_list = await page(client, shared.viewer.headers, list_id=shared.list_id, label="ERRANDS")
    assert [item["id"] for item in in_list["items"]] == [first["id"]]
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="home"))["total"] == 1
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="home office"))["total"] == 1
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="100%_sure"))["total"] == 1
    # LIKE's wildcards are literal characters in a label.
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="%"))["total"] == 0
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="h_me"))["total"] == 0
    assert [item["id"] for item in (await page(client, shared.editor.headers, label="errands"))["items"]] == [
        mine["id"]
    ]

    relabelled = await client.patch(f"{TODOS}/{first['id']}", json={"labels": []}, headers=shared.editor.headers)
    assert relabelled.json()["labels"] == []
    assert (await page(client, shared.viewer.headers, list_id=shared.list_id, label="errands"))["total"] == 0


@pytest.mark.parametrize(
    "labels",
    [["x" * 31], [""], ["   "], ["a,b"], ["nul\x00"], [f"l{i}" for i in range(11)], "errands", [1], None],
)
async def test_bad_labels_are_a_422(app: FastAPI, client: httpx.AsyncClient, labels: Any) -> None:
    someone = await member(app, client)
    response = await client.post(TODOS, json={"title": "x", "labels": labels}, headers=someone.headers)
    assert_problem(response, 422, "validation_error")


async def test_an_assignee_must_be_a_member_and_filters_the_page(shared: Shared, client: httpx.AsyncClient) -> None:
    todo = await add(client, shared.editor.headers, list_id=shared.list_id, assignee_id=shared.viewer.account.id)
    await add(client, shared.editor.headers, list_id=shared.list_id)
    assert todo["assignee_id"] == shared.viewer.account.id

    assigned = await page(client, shared.owner.headers, list_id=shared.list_id, assignee_id=shared.viewer.account.id)
    assert [item["id"] for item in assigned["items"]] == [todo["id"]]

    outsider = await client.post(
        TODOS,
        json={"title": "x", "list_id": shared.list_id, "assignee_id": shared.stranger.account.id},
        headers=shared.editor.headers,
    )
    assert_problem(outsider, 409, "not_a_member")
    reassign = await client.patch(
        f"{TODOS}/{todo['id']}", json={"assignee_id": shared.stranger.account.id}, headers=shared.editor.headers
    )
    assert_problem(reassign, 409, "not_a_member")
    someone_elses_inbox = await client.post(
        TODOS, json={"title": "x", "assignee_id": shared.viewer.account.id}, headers=shared.editor.headers
    )
    assert_problem(someone_elses_inbox, 409, "not_a_member")
    assert (await add(client, shared.editor.headers, assignee_id=shared.editor.account.id))["assignee_id"] == (
        shared.editor.account.id
    )

    # A member who leaves is unassigned from the list's todos.
    left = await client.delete(f"{shared.url}/members/{shared.viewer.account.id}", headers=shared.viewer.headers)
    assert left.status_code == 204
    assert (await client.get(f"{TODOS}/{todo['id']}", headers=shared.owner.headers)).json()["assignee_id"] is None


async def test_moving_needs_editor_rights_on_both_lists(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    other_list = (await create_list(client, shared.owner, "Other"))["id"]
    invited = await client.post(
        f"{shared.url.rsplit('/', 1)[0]}/{other_list}/members",
        json={"username": shared.editor.account.username, "role": "viewer"},
        headers=shared.owner.headers,
    )
    assert invited.status_code == 201
    todo = await add(client, shared.editor.headers, list_id=shared.list_id, assignee_id=shared.viewer.account.id)
    url = f"{TODOS}/{todo['id']}"

    # The editor only views the other list; the stranger's list is not theirs to see at all.
    assert_problem(
        await client.patch(url, json={"list_id": other_list}, headers=shared.editor.headers), 403, "forbidden"
    )
    strangers_list = (await create_list(client, shared.stranger, "Theirs"))["id"]
    moved_away = await client.patch(url, json={"list_id": strangers_list}, headers=shared.editor.headers)
    assert_problem(moved_away, 404, "list_not_found")
    # A viewer of the todo's own list may not move it either.
    assert_problem(await client.patch(url, json={"list_id": None}, headers=shared.viewer.headers), 403, "forbidden")

    moved = await client.patch(url, json={"list_id": other_list}, headers=shared.owner.headers)
    assert moved.status_code == 200, moved.text
    assert moved.json()["list_id"] == other_list
    assert moved.json()["assignee_id"] is None  # the viewer is no member of the other list
    assert_problem(await client.get(url, headers=shared.viewer.headers), 404, "todo_not_found")
    assert (await client.get(url, headers=shared.editor.headers)).status_code == 200

    # Into the inbox: it becomes the mover's private todo.
    mine = await client.patch(url, json={"list_id": None}, headers=shared.owner.headers)
    assert mine.status_code == 200
    assert mine.json()["list_id"] is None
    assert mine.json()["owner_id"] == shared.owner.account.id
    assert_problem(await client.get(url, headers=shared.editor.headers), 404, "todo_not_found")
    assert [item["id"] for item in (await page(client, shared.owner.headers))["items"]] == [todo["id"]]

    # From the inbox into a list: editor rights on the list.
    back = await client.patch(url, json={"list_id": shared.list_id}, headers=shared.owner.headers)
    assert back.status_code == 200
    assert (await client.get(url, headers=shared.viewer.headers)).status_code == 200


async def test_a_stale_edit_of_a_list_todo_is_refused(shared: Shared, client: httpx.AsyncClient) -> None:
    todo = await add(client, shared.owner.headers, list_id=shared.list_id)
    url = f"{TODOS}/{todo['id']}"
    tag = (await client.get(url, headers=shared.editor.headers)).headers["ETag"]
    assert tag == (await client.get(url, headers=shared.owner.headers)).headers["ETag"]

    first = await client.patch(url, json={"title": "Editor's"}, headers={**shared.editor.headers, "If-Match": tag})
    assert first.status_code == 200
    stale = await client.patch(url, json={"title": "Owner's"}, headers={**shared.owner.headers, "If-Match": tag})
    assert_problem(stale, 412, "precondition_failed")
    assert_problem(
        await client.delete(url, headers={**shared.owner.headers, "If-Match": tag}), 412, "precondition_failed"
    )
    assert (await client.get(url, headers=shared.viewer.headers)).json()["title"] == "Editor's"


async def test_deleting_a_list_deletes_its_todos_and_nothing_else(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    in_list = await add(client, shared.editor.headers, list_id=shared.list_id)
    private = await add(client, shared.editor.headers)

    assert (await client.delete(shared.url, headers=shared.owner.headers)).status_code == 204

    async with app.state.database.session() as session:
        from keel.models import Todo

        assert await session.get(Todo, in_list["id"]) is None
        assert await session.get(Todo, private["id"]) is not None
    assert_problem(await client.get(f"{TODOS}/{in_list['id']}", headers=shared.editor.headers), 404, "todo_not_found")


async def test_a_removed_member_loses_the_todos_they_created_there(shared: Shared, client: httpx.AsyncClient) -> None:
    todo = await add(client, shared.editor.headers, list_id=shared.list_id)
    removed = await client.delete(f"{shared.url}/members/{shared.editor.account.id}", headers=shared.owner.headers)
    assert removed.status_code == 204

    assert_problem(await client.get(f"{TODOS}/{todo['id']}", headers=shared.editor.headers), 404, "todo_not_found")
    assert (await page(client, shared.editor.headers))["total"] == 0
    assert (await client.get(f"{TODOS}/{todo['id']}", headers=shared.owner.headers)).json()["owner_id"] == (
        shared.editor.account.id
    )


async def test_deleting_an_account_deletes_its_lists_and_keeps_its_todos_in_others_lists(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from keel.models import ListMember, Todo, TodoList

    leaving, staying = await member(app, client), await member(app, client)
    own_list = (await create_list(client, leaving, "Leaving's"))["id"]
    their_list = (await create_list(client, staying, "Staying's"))["id"]
    for owner, guest, list_id in ((leaving, staying, own_list), (staying, leaving, their_list)):
        invited = await client.post(
            f"/api/v1/lists/{list_id}/members",
            json={"username": guest.account.username, "role": "editor"},
            headers=owner.headers,
        )
        assert invited.status_code == 201
    in_own_list = await add(client, staying.headers, list_id=own_list)
    private = await add(client, leaving.headers)
    kept = await add(client, leaving.headers, list_id=their_list, labels=["kept"])
    assigned = await add(client, staying.headers, list_id=their_list, assignee_id=leaving.account.id)

    deleted = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": leaving.account.password}, headers=leaving.headers
    )
    assert deleted.status_code == 204, deleted.text

    # The list it owned went, with every todo in it (one another member had added included).
    assert_problem(await client.get(f"/api/v1/lists/{own_list}", headers=staying.headers), 404, "list_not_found")
    assert_problem(await client.get(f"{TODOS}/{in_own_list['id']}", headers=staying.headers), 404, "todo_not_found")
    # Its todo in someone else's list stays, by no one; the one assigned to it is unassigned.
    survivor = await client.get(f"{TODOS}/{kept['id']}", headers=staying.headers)
    assert survivor.status_code == 200
    assert survivor.json()["owner_id"] is None
    assert survivor.json()["labels"] == ["kept"]
    assert (await client.get(f"{TODOS}/{assigned['id']}", headers=staying.headers)).json()["assignee_id"] is None
    members = (await client.get(f"/api/v1/lists/{their_list}/members", headers=staying.headers)).json()
    assert [m["user"]["id"] for m in members] == [staying.account.id]
    # The survivor is still the list's to change.
    done = await client.patch(f"{TODOS}/{kept['id']}", json={"completed": True}, headers=staying.headers)
    assert done.status_code == 200
    async with app.state.database.session() as session:
        assert await session.get(Todo, private["id"]) is None
        assert await session.get(TodoList, own_list) is None
        assert await session.get(ListMember, (their_list, leaving.account.id)) is None


async def test_a_list_page_costs_what_the_inbox_page_costs(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    from tests.services.test_statement_counts import _page_statements, _statements_for

    await add(client, shared.editor.headers, list_id=shared.list_id, labels=["a"])
    await app.state.dispatcher.drain()  # the invitations' delivery would be counted too
    path = f"{TODOS}?limit=100&list_id={shared.list_id}"
    one = await _statements_for(app, client, path, shared.viewer.tokens)
    for i in range(29):
        await add(client, shared.editor.headers, title=f"todo {i}", list_id=shared.list_id, labels=["a"])
    thirty = await _statements_for(app, client, path, shared.viewer.tokens)
    filtered = await _statements_for(app, client, f"{path}&label=a", shared.viewer.tokens)

    # The membership is a condition of the page's own statement: no lookup of its own.
    assert one == thirty == filtered == _page_statements(app)
    # Only an empty page looks the membership up, to tell an empty list from someone else's.
    empty = await _statements_for(app, client, f"{path}&label=none", shared.viewer.tokens)
    assert empty == _page_statements(app) + 1
