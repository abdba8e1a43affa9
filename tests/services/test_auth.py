"""A token refresh is one transaction of prebuilt statements, whichever way it ends (keel.services.auth)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from keel.core import audit
from keel.core.errors import InvalidRefreshToken
from keel.core.session_cache import REVOKED, SessionCache
from keel.services import auth as auth_service
from keel.services import signin
from tests.factories import Tokens, assert_problem, signed_in
from tests.services.test_statement_counts import count_statements

AUTH = "/api/v1/auth"
ME = "/api/v1/users/me"

Events = list[tuple[str, str, dict[str, Any]]]


@contextmanager
def audited(monkeypatch: pytest.MonkeyPatch) -> Iterator[Events]:
    events: Events = []
    original = audit.record

    def recording(event: audit.SecurityEvent, *, level: Any = "info", **fields: Any) -> None:
        events.append((event.value, level, fields))
        original(event, level=level, **fields)

    monkeypatch.setattr(audit, "record", recording)
    yield events


async def rotate(client: httpx.AsyncClient, tokens: Tokens) -> Tokens:
    response = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})
    assert response.status_code == 200, response.text
    return Tokens(access=response.json()["access_token"], refresh=response.json()["refresh_token"])


class TestRefresh:
    @pytest.fixture
    def cache_calls(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The names of the session cache's writes, in order (none without Redis)."""
        calls: list[str] = []
        cache: SessionCache | None = app.state.session_cache
        if cache is not None:
            for name in ("admit", "tombstone", "fill", "forget"):
                original = getattr(cache, name)

                def spy(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
                    calls.append(_name)
                    return _original(*args, **kwargs)

                monkeypatch.setattr(cache, name, spy)
        return calls

    @asynccontextmanager
    async def refreshing(self, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[str]]:
        """The statements run meanwhile; opening an ORM session fails the test."""

        def no_orm_session() -> Any:
            raise AssertionError("a refresh opens no ORM session")

        with monkeypatch.context() as patched, count_statements(app) as statements:
            patched.setattr(app.state.database, "session", no_orm_session)
            yield statements

    async def call(self, app: FastAPI, refresh_token: str) -> signin.IssuedTokens:
        return await auth_service.refresh(
            database=app.state.database,
            cache=app.state.session_cache,
            settings=app.state.settings,
            token=auth_service.PresentedToken.of(refresh_token),
        )

    async def test_a_good_token_consumes_reads_touches_and_inserts(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cache_calls: list[str]
    ) -> None:
        _, tokens = await signed_in(app, client)
        cache_calls.clear()
        async with self.refreshing(app, monkeypatch) as statements:
            issued = await self.call(app, tokens.refresh)

        assert issued.pair.refresh_token != tokens.refresh
        assert len(statements) == 4, statements  # consume, session state, touch, new token
        assert cache_calls == ([] if app.state.session_cache is None else ["admit"])

    async def test_a_replayed_token_revokes_its_session_in_the_same_transaction(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cache_calls: list[str]
    ) -> None:
        account, original = await signed_in(app, client)
        newest = await rotate(client, original)
        assert (await client.get(ME, headers=newest.headers)).status_code == 200
        session_id = jwt.decode(original.access, options={"verify_signature": False})["sid"]
        cache_calls.clear()

        with audited(monkeypatch) as events:
            async with self.refreshing(app, monkeypatch) as statements:
                with pytest.raises(InvalidRefreshToken):
                    await self.call(app, original.refresh)

        assert len(statements) == 3, statements  # consume (nothing), whose token it was, revoke
        assert events == [
            ("refresh_token_reuse", "warning", {"session_id": session_id, "user_id": account.id}),
        ]
        if app.state.session_cache is not None:
            assert cache_calls == ["tombstone"]
            assert await app.state.session_cache.get(session_id) == REVOKED
        assert_problem(await client.get(ME, headers=newest.headers), 401, "session_revoked")
        refused = await client.post(f"{AUTH}/refresh", json={"refresh_token": newest.refresh})
        assert_problem(refused, 401, "invalid_refresh_token")

    async def test_an_unknown_token_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cache_calls: list[str]
    ) -> None:
        _, tokens = await signed_in(app, client)
        cache_calls.clear()

        with audited(monkeypatch) as events:
            async with self.refreshing(app, monkeypatch) as statements:
                with pytest.raises(InvalidRefreshToken):
                    await self.call(app, "never-issued")

        assert len(statements) == 2, statements  # consume (nothing), whose token it was (nobody's)
        assert events == [("refresh_failed", "info", {"reason": "unknown_token"})]
        assert cache_calls == []
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200

    async def test_an_ended_session_keeps_the_token_consumed(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, cache_calls: list[str]
    ) -> None:
        _, tokens = await signed_in(app, client)
        assert (await client.post(f"{AUTH}/logout", headers=tokens.headers)).status_code == 204
        cache_calls.clear()

        async with self.refreshing(app, monkeypatch) as statements:
            with pytest.raises(InvalidRefreshToken):
                await self.call(app, tokens.refresh)

        assert len(statements) == 2, statements  # consume, session state
        assert cache_calls == []


async def test_a_refresh_through_http_makes_two_redis_round_trips(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis: one script call counts the refresh and reports its RateLimit numbers, one SET caches
    the session. (Counting refresh through `limits` took a third, for the numbers alone.)"""
    if app.state.session_cache is None:
        pytest.skip("no Redis on this backend: the refresh makes no Redis calls at all")
    from redis.asyncio import Redis

    _, tokens = await signed_in(app, client)
    commands: list[str] = []
    original: Any = Redis.execute_command

    async def recording(self: Redis, *args: Any, **options: Any) -> Any:
        commands.append(str(args[0]).upper())
        return await original(self, *args, **options)

    monkeypatch.setattr(Redis, "execute_command", recording)
    response = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})
    assert response.status_code == 200, response.text
    assert response.headers["ratelimit"].startswith('"refresh";r=29;')
    assert sorted(commands) == ["EVALSHA", "SET"], commands
