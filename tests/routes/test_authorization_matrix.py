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
    ("POST", "/api/v1/posts/{post_id}/vote", "published"): Rule(_row(401, 204, 204, 204)),
    ("DELETE", "/api/v1/posts/{post_id}/vote", "draft"): Rule(_row(401, 204, 404, 204)),
    ("DELETE", "/api/v1/posts/{post_id}/vote", "published"): Rule(_row(401, 204, 204, 204)),
}

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


def test_every_route_with_an_id_is_in_the_matrix() -> None:
    covered = {(method, path) for method, path, _ in MATRIX}
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
    me = await client.get("/api/v1/users/me", headers=owner_headers)
    async with app.state.database.session() as session:
        identity = IdentityRow(
            user_id=me.json()["id"], provider="example", subject="owner-1", confirmed_at=datetime.now(UTC)
        )
        session.add(identity)
        await session.commit()
        await session.refresh(identity)
    assert todo.status_code == post.status_code == passkey.status_code == 201
    return {
        "passkey_id": str(passkey.json()["id"]),
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
