"""Operational endpoints, the request id, and behaviour when backing services are down."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.config import Settings
from keel.main import create_app
from keel.models import RefreshToken, UserSession
from tests.conftest import base_settings
from tests.factories import assert_problem, create_user, signed_in

UNREACHABLE_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/nope"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app on these settings with its lifespan started, and a client talking to it."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


class TestHealth:
    async def test_is_ok(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"status": "ok"}

    async def test_is_ok_even_when_the_database_is_unreachable(self, tmp_path: Path) -> None:
        settings = base_settings(tmp_path, database_url=UNREACHABLE_DATABASE)

        async with running(settings) as (_, http):
            response = await http.get("/health")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReady:
    async def test_reports_each_configured_check(self, client: httpx.AsyncClient, settings: Settings) -> None:
        response = await client.get("/ready")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        expected = {"database": "ok", "redis": "ok"} if settings.redis_url else {"database": "ok"}
        assert body["checks"] == expected

    @pytest.mark.parametrize(
        ("database", "redis", "failed"),
        [
            (UNREACHABLE_DATABASE, None, {"database"}),
            (None, UNREACHABLE_REDIS, {"redis"}),
            (UNREACHABLE_DATABASE, UNREACHABLE_REDIS, {"database", "redis"}),
        ],
        ids=["database-down", "redis-down", "both-down"],
    )
    async def test_is_503_naming_the_failed_check(
        self, tmp_path: Path, database: str | None, redis: str | None, failed: set[str]
    ) -> None:
        overrides: dict[str, object] = {"redis_url": redis}
        if database is not None:
            overrides["database_url"] = database
        settings = base_settings(tmp_path, **overrides)

        async with running(settings) as (_, http):
            response = await http.get("/ready")

        body = assert_problem(response, 503, "not_ready")
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert {name for name, result in checks.items() if result != "ok"} == failed
        assert all(checks[name] in {"unavailable", "timeout"} for name in failed)
        assert isinstance(body["detail"], str)
        for name in failed:
            assert name in body["detail"]
        assert int(response.headers["retry-after"]) > 0
        # No connection string, host or driver error leaks into the answer.
        assert "127.0.0.1" not in response.text
        assert "postgres" not in response.text


class TestUnreachableRedis:
    @pytest.fixture
    def redis_down(self, settings: Settings) -> Settings:
        """The test backend's database, with a Redis that refuses connections."""
        return settings.model_copy(update={"redis_url": UNREACHABLE_REDIS})

    async def test_authenticated_requests_are_503_with_retry_after(
        self, settings: Settings, redis_down: Settings
    ) -> None:
        async with running(settings) as (app, http):
            _, tokens = await signed_in(app, http)  # before the outage
        async with running(redis_down) as (app, http):
            responses = [
                await http.get("/api/v1/users/me", headers=tokens.headers),
                await http.patch("/api/v1/users/me", json={"full_name": "X"}, headers=tokens.headers),
                await http.get("/api/v1/auth/sessions", headers=tokens.headers),
            ]

        for response in responses:
            assert_problem(response, 503, "service_unavailable")
            assert int(response.headers["retry-after"]) > 0
            assert "Traceback" not in response.text

    async def test_sign_in_and_refresh_are_503_and_hand_out_nothing(
        self, settings: Settings, redis_down: Settings
    ) -> None:
        async with running(settings) as (app, http):
            account, tokens = await signed_in(app, http)  # before the outage
        async with running(redis_down) as (app, http):
            # Tokens handed out now would be refused by every other request, and a revocation made
            # now could not reach the cache: sign-in and refresh fail closed like the rest.
            signing_in = await http.post(
                "/api/v1/auth/login", data={"username": account.email, "password": account.password}
            )
            refreshing = await http.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})
            async with app.state.database.session() as session:
                sessions = list(await session.exec(select(UserSession).where(UserSession.user_id == account.id)))
                unused = list(await session.exec(select(RefreshToken).where(col(RefreshToken.used_at).is_(None))))
        async with running(settings) as (app, http):
            after = await http.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})

        for response in (signing_in, refreshing):
            assert_problem(response, 503, "service_unavailable")
            assert int(response.headers["retry-after"]) > 0
            assert "access_token" not in response.text
        assert len(sessions) == 1  # only the one opened before the outage
        assert [token.session_id for token in unused] == [sessions[0].id]  # and its token was not consumed
        assert after.status_code == 200, after.text  # so it still refreshes once Redis is back

    async def test_anonymous_requests_still_work(self, redis_down: Settings) -> None:
        async with running(redis_down) as (app, http):
            account = await create_user(app)
            response = await http.get(f"/api/v1/users/{account.id}")

        assert response.status_code == 200, response.text
        assert response.json()["id"] == account.id


class TestDocumentation:
    @pytest.mark.parametrize(
        ("path", "media_type"),
        [("/docs", "text/html"), ("/redoc", "text/html"), ("/openapi.json", "application/json")],
    )
    async def test_is_served(self, client: httpx.AsyncClient, path: str, media_type: str) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)

    async def test_openapi_lists_the_api(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()

        assert schema["openapi"].startswith("3.")
        assert schema["info"]["title"] == "Keel"
        for path in ("/api/v1/users/me", "/api/v1/users/{user_id}", "/api/v1/admin/users", "/health", "/ready"):
            assert path in schema["paths"], path


class TestRequestId:
    @pytest.mark.parametrize("path", ["/health", "/api/v1/users/me", "/nowhere", "/"])
    async def test_every_response_carries_one(self, client: httpx.AsyncClient, path: str) -> None:
        first = await client.get(path)
        second = await client.get(path)

        assert GENERATED_ID.match(first.headers["x-request-id"])
        assert GENERATED_ID.match(second.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    @pytest.mark.parametrize(
        "value", ["abc-123", "7f9c2ba4e88f827d616045507605853e", "trace:abc/def+ghi=@x.y_z", "a" * 128]
    )
    async def test_a_sane_client_value_is_echoed(self, client: httpx.AsyncClient, value: str) -> None:
        response = await client.get("/health", headers={"X-Request-ID": value})

        assert response.headers["x-request-id"] == value

    async def test_is_echoed_in_problem_bodies(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/users/me", headers={"X-Request-ID": "abc-123"})

        body = assert_problem(response, 401, "not_authenticated")
        assert response.headers["x-request-id"] == "abc-123"
        assert body["request_id"] == "abc-123"

    @pytest.mark.parametrize(
        "value",
        [
            b"a" * 129,
            b"abc 123",
            b"abc\t123",
            b"abc\n123",
            b"abc\r\nX-Injected: 1",
            b"abc\x00",
            b"abc\x7f",
            b"caf\xc3\xa9",
            b"<script>",
            b'"quoted"',
            b"",
        ],
        ids=["too-long", "space", "tab", "newline", "crlf", "nul", "del", "non-ascii", "markup", "quotes", "empty"],
    )
    async def test_an_insane_client_value_is_replaced(self, client: httpx.AsyncClient, value: bytes) -> None:
        response = await client.get("/health", headers=[(b"X-Request-ID", value)])

        assert response.status_code == 200
        assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]
        assert GENERATED_ID.match(response.headers["x-request-id"])
        assert "x-injected" not in response.headers
