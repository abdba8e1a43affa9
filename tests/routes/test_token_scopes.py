"""What a personal access token may reach: every route of the app, as the requests find it.

Each route is asked with a token that holds no scope: the answer says what the route needs (403
`insufficient_scope` names the scope in its RFC 6750 challenge), or that it refuses every token
(403 `personal_token_not_allowed`), or that it reads no credential at all ("public"). The table
below is that answer written down: a route added without its family's declaration is refused
(deny by default) and, being in no table, fails `test_every_route_is_in_the_table` until its
expectation is written here. Then a token with exactly the named scope gets through, and one with
every scope is still refused where tokens are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount

from keel.core.personal_token import Scope, format_scopes, new_token, token_hash
from keel.deps import CurrentUser
from keel.models import PersonalAccessToken, Role, utcnow
from tests.factories import create_user
from tests.routes.sse import EVENTS, open_stream

REFUSED = "refused"
PUBLIC = "public"  # reads no credential: a token sent there is never looked at

EXPECTED: dict[tuple[str, str], str] = {
    # todos: todos:read / todos:write
    ("GET", "/api/v1/todos"): "todos:read",
    ("GET", "/api/v1/todos/"): "todos:read",
    ("POST", "/api/v1/todos"): "todos:write",
    ("POST", "/api/v1/todos/"): "todos:write",
    ("GET", "/api/v1/todos/{todo_id}"): "todos:read",
    ("PATCH", "/api/v1/todos/{todo_id}"): "todos:write",
    ("DELETE", "/api/v1/todos/{todo_id}"): "todos:write",
    # shared lists: lists:read / lists:write
    ("GET", "/api/v1/lists"): "lists:read",
    ("GET", "/api/v1/lists/"): "lists:read",
    ("POST", "/api/v1/lists"): "lists:write",
    ("POST", "/api/v1/lists/"): "lists:write",
    ("GET", "/api/v1/lists/{list_id}"): "lists:read",
    ("PATCH", "/api/v1/lists/{list_id}"): "lists:write",
    ("DELETE", "/api/v1/lists/{list_id}"): "lists:write",
    ("GET", "/api/v1/lists/{list_id}/members"): "lists:read",
    ("POST", "/api/v1/lists/{list_id}/members"): "lists:write",
    ("PATCH", "/api/v1/lists/{list_id}/members/{user_id}"): "lists:write",
    ("DELETE", "/api/v1/lists/{list_id}/members/{user_id}"): "lists:write",
    # live updates: either read scope (todos:read is the one a refusal names)
    ("GET", "/api/v1/events"): "todos:read",
    ("POST", "/api/v1/events/ticket"): "todos:read",
    # posts: posts:read / posts:write (the public feed too, once a token is sent)
    ("GET", "/api/v1/posts"): "posts:read",
    ("GET", "/api/v1/posts/"): "posts:read",
    ("POST", "/api/v1/posts"): "posts:write",
    ("POST", "/api/v1/posts/"): "posts:write",
    ("GET", "/api/v1/posts/mine"): "posts:read",
    ("GET", "/api/v1/posts/{post_id:not_mine}"): "posts:read",
    ("PATCH", "/api/v1/posts/{post_id:not_mine}"): "posts:write",
    ("DELETE", "/api/v1/posts/{post_id:not_mine}"): "posts:write",
    ("POST", "/api/v1/posts/{post_id:not_mine}/vote"): "posts:write",
    ("DELETE", "/api/v1/posts/{post_id:not_mine}/vote"): "posts:write",
    ("GET", "/api/v1/tags"): "posts:read",
    ("POST", "/api/v1/posts/preview"): "posts:write",
    ("GET", "/api/v1/posts/{post_id:not_mine}/comments"): "posts:read",
    ("POST", "/api/v1/posts/{post_id:not_mine}/comments"): "posts:write",
    ("PATCH", "/api/v1/posts/{post_id:not_mine}/comments/{comment_id}"): "posts:write",
    ("DELETE", "/api/v1/posts/{post_id:not_mine}/comments/{comment_id}"): "posts:write",
    # users: the profile can be read; account changes refuse every token
    ("GET", "/api/v1/users/me"): "profile:read",
    ("GET", "/api/v1/users/me/activity"): "profile:read",
    ("PATCH", "/api/v1/users/me"): REFUSED,
    ("DELETE", "/api/v1/users/me"): REFUSED,
    ("GET", "/api/v1/users/{user_id}"): PUBLIC,
    # auth: sign-in, sessions, passwords, verification
    ("POST", "/api/v1/auth/register"): REFUSED,
    ("POST", "/api/v1/auth/login"): REFUSED,
    ("POST", "/api/v1/auth/refresh"): REFUSED,
    ("POST", "/api/v1/auth/logout"): REFUSED,
    ("POST", "/api/v1/auth/logout-all"): REFUSED,
    ("GET", "/api/v1/auth/sessions"): REFUSED,
    ("DELETE", "/api/v1/auth/sessions/{session_id}"): REFUSED,
    ("POST", "/api/v1/auth/verify-email/request"): REFUSED,
    ("POST", "/api/v1/auth/verify-email/confirm"): REFUSED,
    ("POST", "/api/v1/auth/password-reset/request"): REFUSED,
    ("POST", "/api/v1/auth/password-check"): REFUSED,
    ("POST", "/api/v1/auth/password-reset/confirm"): REFUSED,
    ("POST", "/api/v1/auth/password-change"): REFUSED,
    ("POST", "/api/v1/auth/email-code/request"): REFUSED,
    ("POST", "/api/v1/auth/email-code/verify"): REFUSED,
    # auth: second factors
    ("GET", "/api/v1/auth/mfa"): REFUSED,
    ("POST", "/api/v1/auth/mfa/totp/setup"): REFUSED,
    ("POST", "/api/v1/auth/mfa/totp/confirm"): REFUSED,
    ("DELETE", "/api/v1/auth/mfa/totp"): REFUSED,
    ("POST", "/api/v1/auth/mfa/recovery-codes"): REFUSED,
    ("POST", "/api/v1/auth/reauthenticate"): REFUSED,
    ("POST", "/api/v1/auth/mfa/verify"): REFUSED,
    # auth: passkeys
    ("POST", "/api/v1/auth/passkeys/register/options"): REFUSED,
    ("POST", "/api/v1/auth/passkeys/register"): REFUSED,
    ("GET", "/api/v1/auth/passkeys"): REFUSED,
    ("PATCH", "/api/v1/auth/passkeys/{passkey_id:int}"): REFUSED,
    ("DELETE", "/api/v1/auth/passkeys/{passkey_id:int}"): REFUSED,
    ("POST", "/api/v1/auth/passkeys/authenticate/options"): REFUSED,
    ("POST", "/api/v1/auth/passkeys/authenticate"): REFUSED,
    ("POST", "/api/v1/auth/passkeys/reauthenticate/options"): REFUSED,
    ("POST", "/api/v1/auth/passkeys/reauthenticate"): REFUSED,
    # auth: providers and linked identities
    ("GET", "/api/v1/auth/providers"): REFUSED,
    ("GET", "/api/v1/auth/oidc/{provider}/authorize"): REFUSED,
    ("GET", "/api/v1/auth/oidc/{provider}/callback"): REFUSED,
    ("GET", "/api/v1/auth/identities"): REFUSED,
    ("POST", "/api/v1/auth/identities/{provider}/link"): REFUSED,
    ("POST", "/api/v1/auth/identities/confirm"): REFUSED,
    ("DELETE", "/api/v1/auth/identities/{identity_id:int}"): REFUSED,
    # personal access tokens
    ("POST", "/api/v1/tokens"): REFUSED,
    ("GET", "/api/v1/tokens"): REFUSED,
    ("DELETE", "/api/v1/tokens/{token_id}"): REFUSED,
    # admin
    ("GET", "/api/v1/admin/users"): REFUSED,
    ("PATCH", "/api/v1/admin/users/{user_id}"): REFUSED,
    ("DELETE", "/api/v1/admin/users/{user_id}"): REFUSED,
    ("GET", "/api/v1/admin/users/{user_id}/activity"): REFUSED,
    ("POST", "/api/v1/admin/users/{user_id}/mfa/reset"): REFUSED,
    # operations, documentation (the admin-only schema declares no scope: refused) and the web UI
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/static/docs"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("GET", "/sw.js"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/signin"): PUBLIC,
    ("GET", "/signin/code"): PUBLIC,
    ("GET", "/signin/mfa"): PUBLIC,
    ("GET", "/link-identity"): PUBLIC,
    ("GET", "/signup"): PUBLIC,
    ("GET", "/forgot-password"): PUBLIC,
    ("GET", "/reset-password"): PUBLIC,
    ("GET", "/verify-email"): PUBLIC,
    ("GET", "/todos"): PUBLIC,
    ("GET", "/my-posts"): PUBLIC,
    ("GET", "/posts/new"): PUBLIC,
    ("GET", "/posts/{post_id}"): PUBLIC,
    ("GET", "/posts/{post_id}/edit"): PUBLIC,
    ("GET", "/tags/{tag}"): PUBLIC,
    ("GET", "/account"): PUBLIC,
    ("GET", "/admin/users"): PUBLIC,
}


def _flatten(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, HEAD aside (it is its GET); a mount as one GET."""
    found = []
    for route in _flatten(app.routes):
        if isinstance(route, Mount):
            found.append(("GET", route.path))
            continue
        path = getattr(route, "path", None)
        assert path is not None, route
        found += [(method, path) for method in sorted(getattr(route, "methods", None) or ()) if method != "HEAD"]
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def _token(app: FastAPI, user_id: int, scopes: set[str]) -> dict[str, str]:
    """A token with exactly these scopes, none at all included (which the API never makes)."""
    token = new_token()
    async with app.state.database.session() as session:
        session.add(
            PersonalAccessToken(
                user_id=user_id,
                name="matrix",
                token_hash=token_hash(token),
                scopes=format_scopes(scopes),
                expires_at=utcnow() + timedelta(days=1),
            )
        )
        await session.commit()
    return {"Authorization": f"Bearer {token}"}


async def _ask(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if (method, path) == ("GET", EVENTS):  # a stream that is let through never ends: its start tells
        app = client._transport.app  # type: ignore[attr-defined]  # the ASGI transport's app
        async with open_stream(app, headers=headers) as stream:
            return httpx.Response(stream.status, headers=stream.headers, content=stream.body)
    return await client.request(method, _concrete(path), headers=headers)


def _what_it_needs(response: httpx.Response) -> str:
    code = (
        response.json().get("code")
        if response.headers.get("content-type", "").startswith("application/problem+json")
        else None
    )
    if response.status_code == 403 and code == "personal_token_not_allowed":
        return REFUSED
    if response.status_code == 403 and code == "insufficient_scope":
        challenge = response.headers["WWW-Authenticate"]
        match = re.fullmatch(r'Bearer error="insufficient_scope", scope="([a-z:]+)"', challenge)
        assert match is not None, challenge
        return match.group(1)
    assert response.status_code not in (401, 403), (response.status_code, response.text)
    return PUBLIC


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_route_is_in_the_table(app: FastAPI) -> None:
    routes = every_route(app)
    assert len(routes) == len(set(routes))
    assert set(routes) == set(EXPECTED)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_api_route_family_declares_its_scopes_once(app: FastAPI) -> None:
    """One declaration per route, from its router: no route adds or checks a scope of its own."""
    from keel.deps import TokenScopes

    for route in _flatten(app.routes):
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            declared = [sub.call for sub in route.dependant.dependencies if isinstance(sub.call, TokenScopes)]
            assert len(declared) == 1, route.path


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the check reads no backend-specific state
async def test_what_each_route_needs_of_a_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    admin = await create_user(app, role=Role.ADMIN)  # refusals are the token's, not the role's
    no_scope = await _token(app, admin.id, set())
    computed = {(method, path): _what_it_needs(await _ask(client, method, path, no_scope)) for method, path in EXPECTED}
    print("\nroute -> what a personal access token needs")  # noqa: T201 - the table, as computed
    for (method, path), need in computed.items():
        print(f"{method:6} {path:50} {need}")  # noqa: T201
    assert computed == EXPECTED

    every_scope = await _token(app, admin.id, {scope.value for scope in Scope})
    for (method, path), need in EXPECTED.items():
        if need == REFUSED:
            assert _what_it_needs(await _ask(client, method, path, every_scope)) == REFUSED, (method, path)
        elif need != PUBLIC:
            just_that = await _token(app, admin.id, {need})
            assert _what_it_needs(await _ask(client, method, path, just_that)) == PUBLIC, (method, path)


async def undeclared(user: CurrentUser) -> dict[str, int]:
    """A route added without its family's declaration."""
    return {"user_id": user.user_id}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_either_read_scope_opens_a_stream(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await create_user(app)
    for scope in ("todos:read", "lists:read"):
        headers = await _token(app, user.id, {scope})
        assert _what_it_needs(await _ask(client, "POST", "/api/v1/events/ticket", headers)) == PUBLIC
        assert _what_it_needs(await _ask(client, "GET", EVENTS, headers)) == PUBLIC
    refused = await _ask(client, "GET", EVENTS, await _token(app, user.id, {"todos:write", "lists:write"}))
    assert _what_it_needs(refused) == "todos:read"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_route_whose_family_declares_nothing_refuses_every_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.add_api_route("/api/v1/undeclared", undeclared, methods=["GET"], include_in_schema=False)
    owner = await create_user(app)
    every_scope = await _token(app, owner.id, {scope.value for scope in Scope})

    response = await client.get("/api/v1/undeclared", headers=every_scope)

    assert response.status_code == 403
    assert response.json()["code"] == "personal_token_not_allowed"
