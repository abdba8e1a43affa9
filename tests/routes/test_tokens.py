"""Personal access tokens: made after a recent sign-in, shown once, used as a bearer token within
their scopes, listed without their secret, revoked at once in every worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import select

from keel.core.config import Settings
from keel.core.personal_token import PREFIX, token_hash
from keel.main import create_app
from keel.models import PersonalAccessToken, Role
from tests.factories import Account, Tokens, assert_problem, create_user, login, utc_timestamp
from tests.routes.test_rate_limits import client_from, serving, with_limits

TOKENS = "/api/v1/tokens"
TODOS = "/api/v1/todos"
ME = "/api/v1/users/me"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_token(client: httpx.AsyncClient, session: Tokens, scopes: list[str], **extra: Any) -> dict[str, Any]:
    response = await client.post(TOKENS, json={"name": "script", "scopes": scopes, **extra}, headers=session.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@asynccontextmanager
async def second_worker(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the same database and Redis: its own engine, pool and Redis client."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://worker-2") as http:
            yield http


class TestLifecycle:
    async def test_create_use_list_and_revoke(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await create_user(app)
        session = await login(client, owner)

        created = await make_token(client, session, ["todos:read", "todos:write"])
        token = created["token"]
        assert token.startswith(PREFIX)
        assert set(created) == {"id", "name", "scopes", "token", "created_at", "expires_at", "last_used_at"}
        assert created["scopes"] == ["todos:read", "todos:write"]
        assert created["last_used_at"] is None
        lifetime = utc_timestamp(created["expires_at"]) - utc_timestamp(created["created_at"])
        assert lifetime == timedelta(days=90)

        assert (await client.post(TODOS, json={"title": "by script"}, headers=bearer(token))).status_code == 201
        listed = await client.get(TODOS, headers=bearer(token))
        assert listed.status_code == 200
        assert [todo["title"] for todo in listed.json()["items"]] == ["by script"]

        tokens = (await client.get(TOKENS, headers=session.headers)).json()
        assert [item["id"] for item in tokens] == [created["id"]]
        assert "token" not in tokens[0]
        assert tokens[0]["last_used_at"] is not None

        assert (await client.delete(f"{TOKENS}/{created['id']}", headers=session.headers)).status_code == 204
        refused = await client.get(TODOS, headers=bearer(token))
        assert_problem(refused, 401, "invalid_token")
        assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert (await client.get(TOKENS, headers=session.headers)).json() == []
        again = await client.delete(f"{TOKENS}/{created['id']}", headers=session.headers)
        assert_problem(again, 404, "access_token_not_found")

    async def test_only_the_hash_is_stored(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["profile:read"])
        async with app.state.database.session() as db:
            row = (await db.exec(select(PersonalAccessToken))).one()
        assert row.token_hash == token_hash(created["token"])
        assert created["token"] not in {row.token_hash, row.name, row.scopes}

    async def test_someone_elses_token_is_not_found(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await login(client, await create_user(app))
        other = await login(client, await create_user(app))
        created = await make_token(client, owner, ["todos:read"])

        assert_problem(
            await client.delete(f"{TOKENS}/{created['id']}", headers=other.headers), 404, "access_token_not_found"
        )
        assert (await client.get(TOKENS, headers=other.headers)).json() == []
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200

    async def test_creating_needs_a_recent_authentication(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        session = await login(client, await create_user(app))
        clock.shift(timedelta(minutes=11))
        response = await client.post(TOKENS, json={"name": "late", "scopes": ["todos:read"]}, headers=session.headers)
        assert_problem(response, 403, "reauthentication_required")
        assert (await client.get(TOKENS, headers=session.headers)).json() == []

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "x", "scopes": []},
            {"name": "x", "scopes": ["todos:admin"]},
            {"name": "x", "scopes": ["todos:read", "todos:read"]},
            {"name": "x", "scopes": ["todos:read"], "expires_in_days": 0},
            {"name": "x", "scopes": ["todos:read"], "expires_in_days": 366},
            {"name": "x", "scopes": ["todos:read"], "expires_in_days": None},
            {"name": " ", "scopes": ["todos:read"]},
            {"name": "x" * 101, "scopes": ["todos:read"]},
            {"name": "x", "scopes": ["todos:read"], "user_id": 1},
        ],
    )
    async def test_invalid_requests_are_422(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        session = await login(client, await create_user(app))
        assert_problem(await client.post(TOKENS, json=body, headers=session.headers), 422, "validation_error")

    async def test_a_year_at_most(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"], expires_in_days=365)
        lifetime = utc_timestamp(created["expires_at"]) - utc_timestamp(created["created_at"])
        assert lifetime == timedelta(days=365)

    async def test_never_expiring_tokens_only_where_allowed(self, settings: Settings) -> None:
        allowing = create_app(settings.model_copy(update={"personal_tokens_allow_no_expiry": True}))
        async with allowing.router.lifespan_context(allowing):
            transport = httpx.ASGITransport(app=allowing, client=("203.0.113.7", 51000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                session = await login(client, await create_user(allowing))
                created = await make_token(client, session, ["todos:read"], expires_in_days=None)
                assert created["expires_at"] is None
                assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200

    async def test_an_expired_token_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"], expires_in_days=1)
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200

        clock.shift(timedelta(days=1, seconds=1))
        response = await client.get(TODOS, headers=bearer(created["token"]))
        assert_problem(response, 401, "token_expired")
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'

    async def test_last_used_is_written_at_most_once_a_minute(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"])

        async def last_used() -> str:
            listed = (await client.get(TOKENS, headers=session.headers)).json()
            value: str = listed[0]["last_used_at"]
            return value

        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        first = await last_used()
        clock.shift(timedelta(seconds=30))
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        assert await last_used() == first

        clock.shift(timedelta(seconds=31))
        if app.state.redis is not None:  # the minute's mark lives in Redis, on Redis' own clock
            await app.state.redis.delete(f"keel:pat-used:{token_hash(created['token'])}")
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        assert utc_timestamp(await last_used()) - utc_timestamp(first) >= timedelta(seconds=60)

    @pytest.mark.parametrize(
        "value",
        ["keel_pat_", "keel_pat_short", "keel_pat_" + "a" * 36, "keel_pat_" + "!" * 36, "keel_pat_" + "a" * 37],
    )
    async def test_a_malformed_token_is_401(self, app: FastAPI, client: httpx.AsyncClient, value: str) -> None:
        assert_problem(await client.get(TODOS, headers=bearer(value)), 401, "invalid_token")

    async def test_a_well_formed_unknown_token_is_401(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        from keel.core.personal_token import new_token

        assert_problem(await client.get(TODOS, headers=bearer(new_token())), 401, "invalid_token")


class TestScopes:
    async def test_a_missing_scope_is_403_with_the_rfc6750_challenge(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        session = await login(client, await create_user(app))
        reader = (await make_token(client, session, ["todos:read"]))["token"]

        assert (await client.get(TODOS, headers=bearer(reader))).status_code == 200
        response = await client.post(TODOS, json={"title": "no"}, headers=bearer(reader))
        body = assert_problem(response, 403, "insufficient_scope")
        assert body["scope"] == "todos:write"
        assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="todos:write"'
        assert_problem(await client.get("/api/v1/posts/mine", headers=bearer(reader)), 403, "insufficient_scope")
        assert_problem(await client.get(ME, headers=bearer(reader)), 403, "insufficient_scope")
        assert (await client.get(TODOS, headers=session.headers)).json()["total"] == 0

    async def test_profile_and_posts_scopes(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await create_user(app)
        session = await login(client, owner)
        token = (await make_token(client, session, ["profile:read", "posts:read", "posts:write"]))["token"]

        me = await client.get(ME, headers=bearer(token))
        assert (me.status_code, me.json()["id"]) == (200, owner.id)
        post = await client.post(
            "/api/v1/posts", json={"title": "t", "content": "c", "published": True}, headers=bearer(token)
        )
        assert post.status_code == 201, post.text
        assert (await client.get("/api/v1/posts/mine", headers=bearer(token))).json()["total"] == 1
        assert_problem(await client.get(TODOS, headers=bearer(token)), 403, "insufficient_scope")

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", "/api/v1/auth/sessions", None),
            ("POST", "/api/v1/auth/logout-all", None),
            ("POST", "/api/v1/auth/password-change", {"current_password": "x", "new_password": "y" * 12}),
            ("GET", "/api/v1/auth/mfa", None),
            ("GET", "/api/v1/auth/passkeys", None),
            ("GET", "/api/v1/auth/identities", None),
            ("GET", TOKENS, None),
            ("POST", TOKENS, {"name": "more", "scopes": ["todos:read"]}),
            ("PATCH", ME, {"full_name": "changed"}),
            ("DELETE", ME, {"password": "whatever"}),
            ("GET", "/api/v1/admin/users", None),
        ],
    )
    async def test_account_auth_token_and_admin_routes_refuse_every_token(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        admin = await create_user(app, role=Role.ADMIN)
        session = await login(client, admin)
        everything = [
            "profile:read",
            "todos:read",
            "todos:write",
            "posts:read",
            "posts:write",
            "lists:read",
            "lists:write",
        ]
        token = (await make_token(client, session, everything))["token"]

        response = await client.request(method, path, json=body, headers=bearer(token))

        assert_problem(response, 403, "personal_token_not_allowed")
        assert (await client.get(ME, headers=session.headers)).json()["full_name"] is None
        assert len((await client.get(TOKENS, headers=session.headers)).json()) == 1


async def _everything(client: httpx.AsyncClient, account: Account) -> tuple[Tokens, str]:
    session = await login(client, account)
    return session, (await make_token(client, session, ["profile:read", "todos:read", "todos:write"]))["token"]


class TestWriteLimit:
    async def test_a_token_writes_within_its_owners_write_limit(self, settings: Settings) -> None:
        async with (
            serving(with_limits(settings, rate_limit_writes="3/minute")) as limited,
            client_from(limited, "203.0.113.7") as http,
        ):
            session = await login(http, await create_user(limited))
            token = (await make_token(http, session, ["todos:read", "todos:write"]))["token"]  # write 1
            statuses = [
                (await http.post(TODOS, json={"title": f"t{n}"}, headers=bearer(token))).status_code for n in range(3)
            ]
            by_session = await http.post(TODOS, json={"title": "mine"}, headers=session.headers)
            read = await http.get(TODOS, headers=bearer(token))

        assert statuses == [201, 201, 429]
        assert by_session.status_code == 429  # one limit for the user, whatever the credential
        assert read.status_code == 200
        assert read.json()["total"] == 2


class TestRevocationOnAccountChanges:
    async def test_a_password_reset(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        from keel.core import email_tokens
        from keel.core.email_tokens import Purpose

        account = await create_user(app)
        _, token = await _everything(client, account)
        async with app.state.database.session() as db:
            from keel.models import User

            user = await db.get(User, account.id)
            assert user is not None
            binding = email_tokens.reset_binding(
                app.state.settings, hashed_password=user.hashed_password, email=user.email, verified=user.is_verified
            )
        link = email_tokens.make(app.state.settings, Purpose.PASSWORD_RESET, user_id=account.id, value=binding)
        new = "a-brand-New-passphrase-81"
        response = await client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": link, "new_password": new, "confirm_password": new}
        )
        assert response.status_code == 204, response.text
        assert_problem(await client.get(TODOS, headers=bearer(token)), 401, "invalid_token")

    @pytest.mark.parametrize("change", [{"is_active": False}, {"role": "admin"}], ids=["deactivation", "role-change"])
    async def test_an_admin_change(self, app: FastAPI, client: httpx.AsyncClient, change: dict[str, Any]) -> None:
        account = await create_user(app)
        session, token = await _everything(client, account)
        assert (await client.get(TODOS, headers=bearer(token))).status_code == 200
        admin = await login(client, await create_user(app, role=Role.ADMIN))

        assert (
            await client.patch(f"/api/v1/admin/users/{account.id}", json=change, headers=admin.headers)
        ).status_code == 200

        assert_problem(await client.get(TODOS, headers=bearer(token)), 401, "invalid_token")
        if "role" in change:  # the account's owner signs in again: the token stays revoked
            session = await login(client, account)
            assert (await client.get(TOKENS, headers=session.headers)).json() == []
            assert_problem(await client.get(TODOS, headers=bearer(token)), 401, "invalid_token")

    async def test_deleting_the_account_deletes_its_tokens(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        session, token = await _everything(client, account)
        assert (await client.get(TODOS, headers=bearer(token))).status_code == 200
        response = await client.request("DELETE", ME, json={"password": account.password}, headers=session.headers)
        assert response.status_code == 204

        assert_problem(await client.get(TODOS, headers=bearer(token)), 401, "invalid_token")
        async with app.state.database.session() as db:
            assert (await db.exec(select(PersonalAccessToken))).all() == []

    async def test_an_admin_deleting_the_account(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        _, token = await _everything(client, account)
        assert (await client.get(TODOS, headers=bearer(token))).status_code == 200
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        assert (await client.delete(f"/api/v1/admin/users/{account.id}", headers=admin.headers)).status_code == 204
        assert_problem(await client.get(TODOS, headers=bearer(token)), 401, "invalid_token")

    async def test_a_password_change_or_sign_out_everywhere_keeps_tokens(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        session, token = await _everything(client, account)
        assert (await client.post("/api/v1/auth/logout-all", headers=session.headers)).status_code == 204
        assert (await client.get(TODOS, headers=bearer(token))).status_code == 200


class TestAcrossWorkers:
    async def test_a_revocation_is_refused_at_once_in_another_worker(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"])
        async with second_worker(settings) as worker_2:
            # Both workers have accepted it (and, with Redis, cached it as live).
            assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
            assert (await worker_2.get(TODOS, headers=bearer(created["token"]))).status_code == 200

            assert (await client.delete(f"{TOKENS}/{created['id']}", headers=session.headers)).status_code == 204

            for http in (client, worker_2):
                assert_problem(await http.get(TODOS, headers=bearer(created["token"])), 401, "invalid_token")


# The Redis cache exists only on the PostgreSQL + Redis backend.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestRedisCache:
    async def test_a_redis_wipe_never_readmits_a_revoked_token(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"])
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        assert (await client.delete(f"{TOKENS}/{created['id']}", headers=session.headers)).status_code == 204

        # Everything Keel keeps in Redis is gone, as after a restart without persistence. FLUSHDB: the
        # tests' own database (15) only, never the rest of a shared server.
        await app.state.redis.flushdb()

        assert_problem(await client.get(TODOS, headers=bearer(created["token"])), 401, "invalid_token")

    async def test_a_live_token_is_cached_and_survives_a_flush(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"])
        key = f"keel:pat:{token_hash(created['token'])}"
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        assert await app.state.redis.get(key) is not None
        await app.state.redis.flushdb()

        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        assert await app.state.redis.get(key) is not None

    async def test_a_stale_fill_cannot_overwrite_a_revocation(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        session = await login(client, await create_user(app))
        created = await make_token(client, session, ["todos:read"])
        digest = token_hash(created["token"])
        assert (await client.get(TODOS, headers=bearer(created["token"]))).status_code == 200
        stale, _ = await app.state.session_cache.get_token(digest)
        assert not isinstance(stale, str | None)

        assert (await client.delete(f"{TOKENS}/{created['id']}", headers=session.headers)).status_code == 204
        # A request that read the database before the revocation committed now tries to cache it.
        await app.state.session_cache.fill_token(digest, stale)

        assert_problem(await client.get(TODOS, headers=bearer(created["token"])), 401, "invalid_token")
