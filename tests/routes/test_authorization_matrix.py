"""Who may do what to whose resource, for every route that takes an id.

The table below is checked against the app's own routes: a new route with an id in its path
fails `test_every_route_with_an_id_is_in_the_matrix` until its expectations are written down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel.main import create_app
from keel.models import Identity as IdentityRow
from keel.models import Role
from tests.conftest import base_settings
from tests.factories import create_user, login
from tests.webauthn_authenticator import SoftAuthenticator

ACTORS = ("anonymous", "owner", "other", "admin")


@dataclass(frozen=True)
class Rule:
    """Expected status per actor; `body` is a valid request body for the route."""

    statuses: dict[str, int]
    body: dict[str, Any] | None = None


def _row(anonymous: int, owner: int, other: int, admin: int) -> dict[str, int]:
    return {"anonymous": anonymous, "owner": owner, "other": other, "admin": admin}


# (method, path template, state of the target) -> rule. "owner" owns the target resource.
MATRIX: dict[tuple[str, str, str], Rule] = {
    ("DELETE", "/api/v1/auth/sessions/{session_id}", "-"): Rule(_row(401, 204, 404, 404)),
    ("PATCH", "/api/v1/auth/passkeys/{passkey_id}", "-"): Rule(_row(401, 200, 404, 404), {"name": "changed"}),
    ("DELETE", "/api/v1/auth/passkeys/{passkey_id}", "-"): Rule(_row(401, 204, 404, 404)),
    ("DELETE", "/api/v1/auth/identities/{identity_id}", "-"): Rule(_row(401, 204, 404, 404)),
    # No provider is configured here: every provider path is a 404 (or, for the callback, the
    # browser is sent to the sign-in page with an error), whoever asks.
    ("POST", "/api/v1/auth/identities/{provider}/link", "-"): Rule(_row(401, 404, 404, 404)),
    ("GET", "/api/v1/auth/oidc/{provider}/authorize", "-"): Rule(_row(404, 404, 404, 404)),
    ("GET", "/api/v1/auth/oidc/{provider}/callback", "-"): Rule(_row(303, 303, 303, 303)),
    ("GET", "/api/v1/users/{user_id}", "-"): Rule(_row(200, 200, 200, 200)),
    ("DELETE", "/api/v1/tokens/{token_id}", "-"): Rule(_row(401, 204, 404, 404)),
    ("PATCH", "/api/v1/admin/users/{user_id}", "-"): Rule(_row(401, 403, 403, 200), {"is_verified": True}),
    ("DELETE", "/api/v1/admin/users/{user_id}", "-"): Rule(_row(401, 403, 403, 204)),
    ("POST", "/api/v1/admin/users/{user_id}/mfa/reset", "-"): Rule(_row(401, 403, 403, 204)),
    # The owner reads their own activity at /users/me/activity; this one is for admins only.
    ("GET", "/api/v1/admin/users/{user_id}/activity", "-"): Rule(_row(401, 403, 403, 200)),
    ("GET", "/api/v1/todos/{todo_id}", "-"): Rule(_row(401, 200, 404, 404)),
    ("PATCH", "/api/v1/todos/{todo_id}", "-"): Rule(_row(401, 200, 404, 404), {"title": "changed"}),
    ("DELETE", "/api/v1/todos/{todo_id}", "-"): Rule(_row(401, 204, 404, 404)),
    ("GET", "/api/v1/posts/{post_id}", "draft"): Rule(_row(404, 200, 404, 200)),
    ("GET", "/api/v1/posts/{post_id}", "published"): Rule(_row(200, 200, 200, 200)),
    ("PATCH", "/api/v1/posts/{post_id}", "draft"): Rule(_row(401, 200, 404, 403), {"title": "changed"}),
    ("PATCH", "/api/v1/posts/{post_id}", "published"): Rule(_row(401, 200, 403, 403), {"title": "changed"}),
    ("DELETE", "/api/v1/posts/{post_id}", "draft"): Rule(_row(401, 204, 404, 204)),
    ("DELETE", "/api/v1/posts/{post_id}", "published"): Rule(_row(401, 204, 403, 204)),
    ("POST", "/api/v1/posts/{post_id}/vote", "draft"): Rule(_row(401, 404, 404, 404)),
    # An author does not vote for their own post.
    ("POST", "/api/v1/posts/{post_id}/vote", "published"): Rule(_row(401, 403, 204, 204)),
    ("DELETE", "/api/v1/posts/{post_id}/vote", "draft"): Rule(_row(401, 204, 404, 204)),
    ("DELETE", "/api/v1/posts/{post_id}/vote", "published"): Rule(_row(401, 204, 204, 204)),
}

# Shared lists (and todos in them): "owner" owns the list, "editor" and "viewer" are members with
# those roles, "other" is a signed-in user who is not a member, "admin" an administrator who is not
# one either (an admin has no way into other people's lists). A route that forgot the membership
# check gives a non-member a 200; one that forgot the role check gives a viewer a 2xx.
LIST_ACTORS = ("anonymous", "owner", "editor", "viewer", "other", "admin")
NEWCOMER = "matrix_newcomer"


def _list_row(anonymous: int, owner: int, editor: int, viewer: int, other: int, admin: int) -> dict[str, int]:
    return {"anonymous": anonymous, "owner": owner, "editor": editor, "viewer": viewer, "other": other, "admin": admin}


# The member in `{user_id}` is the viewer: the owner may remove them, and so may they themself.
LIST_MATRIX: dict[tuple[str, str, str], Rule] = {
    ("GET", "/api/v1/lists/{list_id}", "-"): Rule(_list_row(401, 200, 200, 200, 404, 404)),
    ("PATCH", "/api/v1/lists/{list_id}", "-"): Rule(_list_row(401, 200, 403, 403, 404, 404), {"name": "changed"}),
    ("DELETE", "/api/v1/lists/{list_id}", "-"): Rule(_list_row(401, 204, 403, 403, 404, 404)),
    ("GET", "/api/v1/lists/{list_id}/members", "-"): Rule(_list_row(401, 200, 200, 200, 404, 404)),
    ("POST", "/api/v1/lists/{list_id}/members", "-"): Rule(
        _list_row(401, 201, 403, 403, 404, 404), {"username": NEWCOMER, "role": "viewer"}
    ),
    ("PATCH", "/api/v1/lists/{list_id}/members/{user_id}", "-"): Rule(
        _list_row(401, 200, 403, 403, 404, 404), {"role": "editor"}
    ),
    ("DELETE", "/api/v1/lists/{list_id}/members/{user_id}", "-"): Rule(_list_row(401, 204, 403, 204, 404, 404)),
    # A todo in the list (made by the owner), and the list's page and creates.
    ("GET", "/api/v1/todos/{todo_id}", "in_list"): Rule(_list_row(401, 200, 200, 200, 404, 404)),
    ("PATCH", "/api/v1/todos/{todo_id}", "in_list"): Rule(
        _list_row(401, 200, 200, 403, 404, 404), {"title": "changed"}
    ),
    ("DELETE", "/api/v1/todos/{todo_id}", "in_list"): Rule(_list_row(401, 204, 204, 403, 404, 404)),
    ("GET", "/api/v1/todos?list_id={list_id}", "in_list"): Rule(_list_row(401, 200, 200, 200, 404, 404)),
    ("POST", "/api/v1/todos", "in_list"): Rule(
        _list_row(401, 201, 201, 403, 404, 404), {"title": "new", "list_id": "{list_id}"}
    ),
}

# Comments: "author" wrote the comment, "post_author" the post it is on. "unpublished": the post was
# published, commented on, then unpublished (its comments are hidden with it; nobody comments there).
COMMENT_ACTORS = ("anonymous", "author", "other", "post_author", "admin")
COMMENTS = "/api/v1/posts/{post_id}/comments"


def _comment_row(anonymous: int, author: int, other: int, post_author: int, admin: int) -> dict[str, int]:
    return {"anonymous": anonymous, "author": author, "other": other, "post_author": post_author, "admin": admin}


COMMENT_MATRIX: dict[tuple[str, str, str], Rule] = {
    ("GET", COMMENTS, "published"): Rule(_comment_row(200, 200, 200, 200, 200)),
    ("GET", COMMENTS, "unpublished"): Rule(_comment_row(404, 404, 404, 200, 200)),
    ("POST", COMMENTS, "published"): Rule(_comment_row(401, 201, 201, 201, 201), {"content": "hello"}),
    ("POST", COMMENTS, "unpublished"): Rule(_comment_row(401, 404, 404, 404, 404), {"content": "hello"}),
    ("PATCH", COMMENTS + "/{comment_id}", "published"): Rule(
        _comment_row(401, 200, 403, 403, 403), {"content": "changed"}
    ),
    ("PATCH", COMMENTS + "/{comment_id}", "unpublished"): Rule(
        _comment_row(401, 404, 404, 403, 403), {"content": "changed"}
    ),
    ("DELETE", COMMENTS + "/{comment_id}", "published"): Rule(_comment_row(401, 204, 403, 204, 204)),
    ("DELETE", COMMENTS + "/{comment_id}", "unpublished"): Rule(_comment_row(401, 404, 404, 204, 204)),
}
COMMENT_CASES = [
    pytest.param(method, path, state, actor, id=f"{method} {path} [{state}] as {actor}")
    for (method, path, state), rule in COMMENT_MATRIX.items()
    for actor in COMMENT_ACTORS
]

CASES = [
    pytest.param(method, path, state, actor, id=f"{method} {path} [{state}] as {actor}")
    for (method, path, state), rule in MATRIX.items()
    for actor in ACTORS
]


def _routes_with_ids() -> set[tuple[str, str]]:
    app = create_app(base_settings(Path("/nonexistent"), database_url="sqlite+aiosqlite:///:memory:"))
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if "{" in path
        for method in operations
    }


LIST_CASES = [
    pytest.param(method, path, state, actor, id=f"{method} {path} [{state}] as {actor}")
    for (method, path, state), rule in LIST_MATRIX.items()
    for actor in LIST_ACTORS
]


def test_every_route_with_an_id_is_in_the_matrix() -> None:
    covered = {
        (method, path)
        for method, path, _ in [*MATRIX, *LIST_MATRIX, *COMMENT_MATRIX]
        if "{" in path and "?" not in path
    }
    assert _routes_with_ids() == covered


async def _fixture_ids(
    app: FastAPI, client: httpx.AsyncClient, owner_headers: dict[str, str], state: str
) -> dict[str, str]:
    """Create the owner's resources and return the value of each path parameter."""
    # First: adding a passkey ends the owner's other sessions (it has none yet).
    options = await client.post("/api/v1/auth/passkeys/register/options", headers=owner_headers)
    credential = SoftAuthenticator(origin=app.state.settings.public_url).create(options.json())
    passkey = await client.post(
        "/api/v1/auth/passkeys/register", json={"credential": credential, "name": "mine"}, headers=owner_headers
    )
    todo = await client.post("/api/v1/todos", json={"title": "mine"}, headers=owner_headers)
    post = await client.post(
        "/api/v1/posts",
        json={"title": "mine", "content": "text", "published": state == "published"},
        headers=owner_headers,
    )
    sessions = await client.get("/api/v1/auth/sessions", headers=owner_headers)
    token = await client.post("/api/v1/tokens", json={"name": "mine", "scopes": ["todos:read"]}, headers=owner_headers)
    me = await client.get("/api/v1/users/me", headers=owner_headers)
    async with app.state.database.session() as session:
        identity = IdentityRow(
            user_id=me.json()["id"], provider="example", subject="owner-1", confirmed_at=datetime.now(UTC)
        )
        session.add(identity)
        await session.commit()
        await session.refresh(identity)
    assert todo.status_code == post.status_code == passkey.status_code == token.status_code == 201
    return {
        "passkey_id": str(passkey.json()["id"]),
        "token_id": str(token.json()["id"]),
        "todo_id": str(todo.json()["id"]),
        "post_id": str(post.json()["id"]),
        "session_id": sessions.json()[0]["id"],
        "user_id": str(me.json()["id"]),
        "identity_id": str(identity.id),
        "provider": "example",
    }


@pytest.mark.parametrize(("method", "path", "state", "actor"), CASES)
async def test_access(app: FastAPI, client: httpx.AsyncClient, method: str, path: str, state: str, actor: str) -> None:
    owner = await login(client, await create_user(app))
    headers = {
        "anonymous": {},
        "owner": owner.headers,
        "other": (await login(client, await create_user(app))).headers,
        "admin": (await login(client, await create_user(app, role=Role.ADMIN))).headers,
    }
    ids = await _fixture_ids(app, client, owner.headers, state)
    rule = MATRIX[(method, path, state)]

    response = await client.request(method, path.format(**ids), json=rule.body, headers=headers[actor])

    assert response.status_code == rule.statuses[actor], response.text


@pytest.mark.parametrize(("method", "path", "state", "actor"), LIST_CASES)
async def test_list_access(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, state: str, actor: str
) -> None:
    accounts = {name: await create_user(app) for name in ("owner", "editor", "viewer", "other")}
    accounts["admin"] = await create_user(app, role=Role.ADMIN)
    await create_user(app, username=NEWCOMER)
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    headers |= {name: (await login(client, account)).headers for name, account in accounts.items()}
    created = await client.post("/api/v1/lists", json={"name": "shared"}, headers=headers["owner"])
    assert created.status_code == 201, created.text
    list_id = created.json()["id"]
    for role in ("editor", "viewer"):
        invited = await client.post(
            f"/api/v1/lists/{list_id}/members",
            json={"username": accounts[role].username, "role": role},
            headers=headers["owner"],
        )
        assert invited.status_code == 201, invited.text
    todo = await client.post("/api/v1/todos", json={"title": "shared", "list_id": list_id}, headers=headers["owner"])
    assert todo.status_code == 201, todo.text
    ids = {"list_id": str(list_id), "user_id": str(accounts["viewer"].id), "todo_id": str(todo.json()["id"])}
    rule = LIST_MATRIX[(method, path, state)]
    body = {
        key: int(value.format(**ids)) if value == "{list_id}" else value for key, value in (rule.body or {}).items()
    }

    response = await client.request(method, path.format(**ids), json=body or None, headers=headers[actor])

    assert response.status_code == rule.statuses[actor], response.text


@pytest.mark.parametrize(("method", "path", "state", "actor"), COMMENT_CASES)
async def test_comment_access(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, state: str, actor: str
) -> None:
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for name in ("author", "other", "post_author"):
        headers[name] = (await login(client, await create_user(app))).headers
    headers["admin"] = (await login(client, await create_user(app, role=Role.ADMIN))).headers
    post = await client.post(
        "/api/v1/posts", json={"title": "t", "content": "c", "published": True}, headers=headers["post_author"]
    )
    post_id = post.json()["id"]
    comment = await client.post(f"/api/v1/posts/{post_id}/comments", json={"content": "c"}, headers=headers["author"])
    assert comment.status_code == 201, comment.text
    if state == "unpublished":
        hidden = await client.patch(
            f"/api/v1/posts/{post_id}", json={"published": False}, headers=headers["post_author"]
        )
        assert hidden.status_code == 200, hidden.text
    rule = COMMENT_MATRIX[(method, path, state)]
    url = path.format(post_id=post_id, comment_id=comment.json()["id"])

    response = await client.request(method, url, json=rule.body, headers=headers[actor])

    assert response.status_code == rule.statuses[actor], response.text
