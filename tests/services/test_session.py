"""Revocation takes effect on the very next request, in every worker, whatever Redis went through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from keel.core.session_cache import SessionCache
from keel.main import create_app
from keel.models import Role
from tests.factories import Account, Tokens, assert_problem, create_user, login

ME = "/api/v1/users/me"


@asynccontextmanager
async def second_worker(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the same database and Redis: its own engine, pool and Redis client."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://worker-2") as http:
            yield http


Action = Callable[[FastAPI, httpx.AsyncClient, Account, Tokens], Awaitable[None]]


async def _logout(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=tokens.headers)).status_code == 204


async def _logout_all_elsewhere(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    other = await login(client, victim)
    assert (await client.post("/api/v1/auth/logout-all", headers=other.headers)).status_code == 204


async def _revoke_from_another_session(
    app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens
) -> None:
    other = await login(client, victim)
    sessions = (await client.get("/api/v1/auth/sessions", headers=other.headers)).json()
    target = next(s["id"] for s in sessions if not s["current"])
    response = await client.delete(f"/api/v1/auth/sessions/{target}", headers=other.headers)
    assert response.status_code == 204


async def _password_change_elsewhere(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    other = await login(client, victim)
    response = await client.post(
        "/api/v1/auth/password-change",
        json={"current_password": victim.password, "new_password": "an-entirely-Fresh-phrase-7"},
        headers=other.headers,
    )
    assert response.status_code == 204


async def _delete_account(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    other = await login(client, victim)
    response = await client.request("DELETE", ME, json={"password": victim.password}, headers=other.headers)
    assert response.status_code == 204


async def _admin(app: FastAPI, client: httpx.AsyncClient) -> Tokens:
    admin = await create_user(app, role=Role.ADMIN)
    return await login(client, admin)


async def _deactivate(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    admin = await _admin(app, client)
    response = await client.patch(f"/api/v1/admin/users/{victim.id}", json={"is_active": False}, headers=admin.headers)
    assert response.status_code == 200


async def _role_change(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    admin = await _admin(app, client)
    response = await client.patch(f"/api/v1/admin/users/{victim.id}", json={"role": "admin"}, headers=admin.headers)
    assert response.status_code == 200


async def _refresh_token_reuse(app: FastAPI, client: httpx.AsyncClient, victim: Account, tokens: Tokens) -> None:
    rotated = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert rotated.status_code == 200, rotated.text
    replayed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})
    assert_problem(replayed, 401, "invalid_refresh_token")


ACTIONS: dict[str, Action] = {
    "logout": _logout,
    "logout-all": _logout_all_elsewhere,
    "revoke-session": _revoke_from_another_session,
    "password-change": _password_change_elsewhere,
    "account-deletion": _delete_account,
    "deactivation": _deactivate,
    "role-change": _role_change,
    "refresh-token-reuse": _refresh_token_reuse,
}


class TestRevocationIsImmediate:
    @pytest.mark.parametrize("action", ACTIONS.values(), ids=ACTIONS.keys())
    async def test_in_this_worker_and_another(
        self, action: Action, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        victim = await create_user(app)
        tokens = await login(client, victim)
        async with second_worker(settings) as worker_2:
            # Both workers have accepted the token (and, with Redis, cached its session as valid).
            assert (await client.get(ME, headers=tokens.headers)).status_code == 200
            assert (await worker_2.get(ME, headers=tokens.headers)).status_code == 200

            await action(app, client, victim, tokens)

            for http in (client, worker_2):
                response = await http.get(ME, headers=tokens.headers)
                assert_problem(response, 401, "session_revoked")
                assert response.headers["WWW-Authenticate"].startswith("Bearer")


# The Redis cache exists only on the PostgreSQL + Redis backend.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestRedisCache:
    async def test_a_redis_that_lost_its_data_never_readmits_a_revoked_token(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        victim = await create_user(app)
        tokens = await login(client, victim)
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200
        assert (await client.post("/api/v1/auth/logout", headers=tokens.headers)).status_code == 204

        await app.state.redis.flushdb()  # as after a restart without persistence

        assert_problem(await client.get(ME, headers=tokens.headers), 401, "session_revoked")

    async def test_a_flushed_cache_is_rebuilt_from_the_database(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        victim = await create_user(app)
        tokens = await login(client, victim)
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200
        await app.state.redis.flushdb()

        assert (await client.get(ME, headers=tokens.headers)).status_code == 200
        sid = (await client.get("/api/v1/auth/sessions", headers=tokens.headers)).json()[0]["id"]
        assert await app.state.redis.get(SessionCache.prefix + sid) is not None

    async def test_a_stale_fill_cannot_overwrite_a_revocation(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        victim = await create_user(app)
        tokens = await login(client, victim)
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200
        cache: SessionCache = app.state.session_cache
        sid = (await client.get("/api/v1/auth/sessions", headers=tokens.headers)).json()[0]["id"]
        stale = await cache.get(sid)
        assert stale is not None
        assert not isinstance(stale, str)

        assert (await client.post("/api/v1/auth/logout", headers=tokens.headers)).status_code == 204
        # A request that read the database before the logout committed now tries to cache it.
        await cache.fill(sid, stale, 300)

        assert_problem(await client.get(ME, headers=tokens.headers), 401, "session_revoked")

    async def test_valid_requests_do_not_query_the_database_for_the_session(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from keel.services import session as session_service

        victim = await create_user(app)
        tokens = await login(client, victim)
        assert (await client.get("/api/v1/auth/sessions", headers=tokens.headers)).status_code == 200
        loads = 0
        original = session_service._load_state

        async def counting(*args: object, **kwargs: object) -> object:
            nonlocal loads
            loads += 1
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(session_service, "_load_state", counting)
        for _ in range(3):
            assert (await client.get("/api/v1/auth/sessions", headers=tokens.headers)).status_code == 200
        assert loads == 0
