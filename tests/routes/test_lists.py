"""Shared lists: members and roles, on both backends (the `app` fixture runs each test on SQLite
and on PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from keel.models import EmailKind, EmailOutbox
from tests.factories import Account, Tokens, assert_problem, create_user, login

LISTS = "/api/v1/lists"
LIST_READ_FIELDS = {"id", "name", "owner", "role", "members_count", "created_at", "updated_at"}


@dataclass
class Member:
    account: Account
    tokens: Tokens

    @property
    def headers(self) -> dict[str, str]:
        return self.tokens.headers


async def member(app: FastAPI, client: httpx.AsyncClient, **kwargs: Any) -> Member:
    account = await create_user(app, **kwargs)
    return Member(account, await login(client, account))


@dataclass
class Shared:
    """A list with an owner, an editor and a viewer, and someone who is none of them."""

    list_id: int
    owner: Member
    editor: Member
    viewer: Member
    stranger: Member

    @property
    def url(self) -> str:
        return f"{LISTS}/{self.list_id}"


async def create_list(client: httpx.AsyncClient, who: Member, name: str = "Groceries") -> dict[str, Any]:
    response = await client.post(LISTS, json={"name": name}, headers=who.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def invite(client: httpx.AsyncClient, list_id: int, owner: Member, who: Member, role: str) -> httpx.Response:
    return await client.post(
        f"{LISTS}/{list_id}/members", json={"username": who.account.username, "role": role}, headers=owner.headers
    )


async def shared_list(app: FastAPI, client: httpx.AsyncClient) -> Shared:
    owner, editor, viewer, stranger = [await member(app, client) for _ in range(4)]
    list_id = (await create_list(client, owner))["id"]
    assert (await invite(client, list_id, owner, editor, "editor")).status_code == 201
    assert (await invite(client, list_id, owner, viewer, "viewer")).status_code == 201
    return Shared(list_id, owner, editor, viewer, stranger)


@pytest.fixture
async def shared(app: FastAPI, client: httpx.AsyncClient) -> Shared:
    return await shared_list(app, client)


async def test_a_new_list_is_owned_by_its_creator(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await member(app, client)
    body = await create_list(client, owner, "Holiday")

    assert set(body) == LIST_READ_FIELDS
    assert body["name"] == "Holiday"
    assert body["role"] == "owner"
    assert body["members_count"] == 1
    assert body["owner"]["id"] == owner.account.id
    assert "email" not in body["owner"]
    got = await client.get(f"{LISTS}/{body['id']}", headers=owner.headers)
    assert got.json() == body
    assert got.headers["ETag"]


async def test_each_member_sees_the_list_with_their_own_role(shared: Shared, client: httpx.AsyncClient) -> None:
    for who, role in ((shared.owner, "owner"), (shared.editor, "editor"), (shared.viewer, "viewer")):
        response = await client.get(shared.url, headers=who.headers)
        assert response.status_code == 200
        assert response.json()["role"] == role
        assert response.json()["members_count"] == 3
        page = (await client.get(LISTS, headers=who.headers)).json()
        assert [item["id"] for item in page["items"]] == [shared.list_id]
        assert page["total"] == 1


async def test_a_non_member_finds_no_list(shared: Shared, client: httpx.AsyncClient) -> None:
    stranger = shared.stranger.headers
    assert_problem(await client.get(shared.url, headers=stranger), 404, "list_not_found")
    assert_problem(await client.get(f"{shared.url}/members", headers=stranger), 404, "list_not_found")
    assert_problem(await client.patch(shared.url, json={"name": "mine"}, headers=stranger), 404, "list_not_found")
    assert_problem(await client.delete(shared.url, headers=stranger), 404, "list_not_found")
    assert (await client.get(LISTS, headers=stranger)).json()["total"] == 0
    assert_problem(await client.get(f"{LISTS}/987654", headers=stranger), 404, "list_not_found")


async def test_only_the_owner_renames_deletes_and_manages_members(shared: Shared, client: httpx.AsyncClient) -> None:
    for who in (shared.editor, shared.viewer):
        assert_problem(await client.patch(shared.url, json={"name": "x"}, headers=who.headers), 403, "forbidden")
        assert_problem(await client.delete(shared.url, headers=who.headers), 403, "forbidden")
        assert_problem(await invite(client, shared.list_id, who, shared.stranger, "viewer"), 403, "forbidden")
        role_change = await client.patch(
            f"{shared.url}/members/{shared.viewer.account.id}", json={"role": "editor"}, headers=who.headers
        )
        assert_problem(role_change, 403, "forbidden")
    assert_problem(
        await client.delete(f"{shared.url}/members/{shared.viewer.account.id}", headers=shared.editor.headers),
        403,
        "forbidden",
    )

    renamed = await client.patch(shared.url, json={"name": "Weekly shop"}, headers=shared.owner.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Weekly shop"
    assert (await client.get(shared.url, headers=shared.viewer.headers)).json()["name"] == "Weekly shop"


async def test_members_are_listed_owner_first_with_their_roles(shared: Shared, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{shared.url}/members", headers=shared.viewer.headers)

    assert response.status_code == 200
    assert [(m["user"]["id"], m["role"]) for m in response.json()] == [
        (shared.owner.account.id, "owner"),
        (shared.editor.account.id, "editor"),
        (shared.viewer.account.id, "viewer"),
    ]
    assert set(response.json()[0]) == {"user", "role", "added_at"}
    assert "email" not in response.json()[0]["user"]


async def test_an_invitation_names_an_existing_user_once(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    missing = await client.post(
        f"{shared.url}/members", json={"username": "nobody_here", "role": "viewer"}, headers=shared.owner.headers
    )
    assert_problem(missing, 404, "user_not_found")
    assert_problem(await invite(client, shared.list_id, shared.owner, shared.editor, "viewer"), 409, "already_member")
    assert_problem(await invite(client, shared.list_id, shared.owner, shared.owner, "editor"), 409, "already_member")
    owner_role = await client.post(
        f"{shared.url}/members",
        json={"username": shared.stranger.account.username, "role": "owner"},
        headers=shared.owner.headers,
    )
    assert owner_role.status_code == 422
    inactive = await create_user(app, is_active=False)
    gone = await client.post(
        f"{shared.url}/members", json={"username": inactive.username, "role": "viewer"}, headers=shared.owner.headers
    )
    assert_problem(gone, 404, "user_not_found")

    added = await client.post(
        f"{shared.url}/members",
        json={"username": shared.stranger.account.username.upper(), "role": "viewer"},
        headers=shared.owner.headers,
    )
    assert added.status_code == 201, added.text
    assert added.json()["user"]["id"] == shared.stranger.account.id
    assert added.json()["role"] == "viewer"
    assert (await client.get(shared.url, headers=shared.stranger.headers)).json()["members_count"] == 4


async def test_the_invited_user_is_told_by_email_through_the_outbox(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    from keel.services import outbox as outbox_service

    async with app.state.database.session() as session:
        rows = (await session.exec(select(EmailOutbox).where(EmailOutbox.kind == EmailKind.LIST_INVITATION))).all()
        assert sorted(row.to_address for row in rows) == sorted(
            [shared.editor.account.email, shared.viewer.account.email]
        )
        assert {row.list_id for row in rows} == {shared.list_id}
        editor_row = next(row for row in rows if row.to_address == shared.editor.account.email)
        mail = await outbox_service.compose(session=session, settings=app.state.settings, row=editor_row)
    assert mail is not None
    assert "Groceries" in mail.text
    assert shared.owner.account.username in mail.text
    assert "an editor" in mail.text

    # Removed before it went out: the mail is not sent.
    await client.delete(f"{shared.url}/members/{shared.editor.account.id}", headers=shared.owner.headers)
    async with app.state.database.session() as session:
        row = (await session.exec(select(EmailOutbox).where(col(EmailOutbox.id) == editor_row.id))).one()
        assert await outbox_service.compose(session=session, settings=app.state.settings, row=row) is None


async def test_invitation_mails_to_one_address_have_their_own_hourly_budget(
    app: FastAPI, shared: Shared, client: httpx.AsyncClient
) -> None:
    """Inviting and removing someone over and over adds them each time but mails them at most the
    budget; and invitations never spend the address's budget of reset and verification mails."""
    from keel.services import outbox as outbox_service

    budget = app.state.settings.invitation_emails_per_hour
    who = shared.stranger
    for _ in range(budget + 2):
        assert (await invite(client, shared.list_id, shared.owner, who, "viewer")).status_code == 201
        assert (await client.get(shared.url, headers=who.headers)).status_code == 200
        removed = await client.delete(f"{shared.url}/members/{who.account.id}", headers=shared.owner.headers)
        assert removed.status_code == 204
    assert (await invite(client, shared.list_id, shared.owner, who, "editor")).status_code == 201

    async with app.state.database.session() as session:
        mailed = (
            await session.exec(
                select(EmailOutbox).where(
                    EmailOutbox.kind == EmailKind.LIST_INVITATION, EmailOutbox.to_address == who.account.email
                )
            )
        ).all()
        assert len(mailed) == budget
        assert not await outbox_service.throttled(
            session=session, settings=app.state.settings, to_address=who.account.email
        )


async def test_the_owner_changes_roles_and_a_viewer_made_editor_may_write(
    shared: Shared, client: httpx.AsyncClient
) -> None:
    url = f"{shared.url}/members/{shared.viewer.account.id}"
    changed = await client.patch(url, json={"role": "editor"}, headers=shared.owner.headers)
    assert changed.status_code == 200
    assert changed.json()["role"] == "editor"
    assert (await client.get(shared.url, headers=shared.viewer.headers)).json()["role"] == "editor"

    own = await client.patch(
        f"{shared.url}/members/{shared.owner.account.id}", json={"role": "viewer"}, headers=shared.owner.headers
    )
    assert_problem(own, 409, "list_owner")
    stranger = await client.patch(
        f"{shared.url}/members/{shared.stranger.account.id}", json={"role": "viewer"}, headers=shared.owner.headers
    )
    assert_problem(stranger, 404, "member_not_found")
    assert (await client.patch(url, json={"role": "owner"}, headers=shared.owner.headers)).status_code == 422


async def test_a_member_leaves_and_then_finds_nothing(shared: Shared, client: httpx.AsyncClient) -> None:
    left = await client.delete(f"{shared.url}/members/{shared.viewer.account.id}", headers=shared.viewer.headers)
    assert left.status_code == 204
    assert_problem(await client.get(shared.url, headers=shared.viewer.headers), 404, "list_not_found")
    assert (await client.get(shared.url, headers=shared.owner.headers)).json()["members_count"] == 2

    removed = await client.delete(f"{shared.url}/members/{shared.editor.account.id}", headers=shared.owner.headers)
    assert removed.status_code == 204
    assert_problem(await client.get(shared.url, headers=shared.editor.headers), 404, "list_not_found")
    again = await client.delete(f"{shared.url}/members/{shared.editor.account.id}", headers=shared.owner.headers)
    assert_problem(again, 404, "member_not_found")
    owner_leaving = await client.delete(f"{shared.url}/members/{shared.owner.account.id}", headers=shared.owner.headers)
    assert_problem(owner_leaving, 409, "list_owner")


async def test_a_stale_rename_is_refused(shared: Shared, client: httpx.AsyncClient) -> None:
    tag = (await client.get(shared.url, headers=shared.owner.headers)).headers["ETag"]
    first = await client.patch(shared.url, json={"name": "One"}, headers={**shared.owner.headers, "If-Match": tag})
    assert first.status_code == 200
    stale = await client.patch(shared.url, json={"name": "Two"}, headers={**shared.owner.headers, "If-Match": tag})
    assert_problem(stale, 412, "precondition_failed")
    not_modified = await client.get(
        shared.url, headers={**shared.owner.headers, "If-None-Match": first.headers["ETag"]}
    )
    assert not_modified.status_code == 304
    gone = await client.delete(shared.url, headers={**shared.owner.headers, "If-Match": tag})
    assert_problem(gone, 412, "precondition_failed")


async def test_deleting_a_list_removes_it_for_every_member(shared: Shared, client: httpx.AsyncClient) -> None:
    assert (await client.delete(shared.url, headers=shared.owner.headers)).status_code == 204
    for who in (shared.owner, shared.editor, shared.viewer):
        assert_problem(await client.get(shared.url, headers=who.headers), 404, "list_not_found")
        assert (await client.get(LISTS, headers=who.headers)).json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": None}, {"name": "ok", "owner_id": 1}],
)
async def test_a_bad_list_body_is_a_422(app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    owner = await member(app, client)
    assert_problem(await client.post(LISTS, json=body, headers=owner.headers), 422, "validation_error")


async def test_lists_need_a_signed_in_caller(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(LISTS), 401, "not_authenticated")
    assert_problem(await client.post(LISTS, json={"name": "x"}), 401, "not_authenticated")
