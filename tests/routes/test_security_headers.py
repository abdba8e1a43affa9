"""Security headers on every response, and CORS only for the origins listed in KEEL_CORS_ORIGINS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from keel.core.config import ConfigError, Settings, load_settings
from keel.http.security_headers import API_CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY, HSTS
from keel.main import CONTENT_SECURITY_POLICY, create_app
from tests.conftest import TEST_SECRET, base_settings
from tests.factories import create_user, login

ALLOWED = "https://app.example.com"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


def sqlite_settings(tmp_path: Path, **overrides: object) -> Settings:
    return base_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path / 'keel.db'}", **overrides)


class TestHeaders:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/health", 200),
            ("GET", "/api/v1/todos", 401),
            ("GET", "/api/v1/nowhere", 404),
            ("PUT", "/api/v1/todos", 405),
            ("GET", "/static/keel.css", 200),
            ("GET", "/openapi.json", 200),
        ],
    )
    async def test_every_response_carries_them(
        self, client: httpx.AsyncClient, method: str, path: str, status: int
    ) -> None:
        response = await client.request(method, path)

        assert response.status_code == status
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == API_CONTENT_SECURITY_POLICY
        # Over plain http (the default public URL) there is no HSTS.
        assert "strict-transport-security" not in response.headers

    async def test_a_page_of_the_ui_keeps_its_own_policy_once(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/todos")

        assert response.headers.get_list("content-security-policy") == [CONTENT_SECURITY_POLICY]
        assert response.headers.get_list("x-frame-options") == ["DENY"]

    @pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
    async def test_the_documentation_keeps_its_own_policy_once(self, client: httpx.AsyncClient, path: str) -> None:
        # /redoc's policy differs in a nonce on every response: tests/routes/test_docs.py.
        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers.get_list("content-security-policy") == [DOCS_CONTENT_SECURITY_POLICY]
        assert "frame-ancestors 'none'" in DOCS_CONTENT_SECURITY_POLICY

    async def test_hsts_when_the_public_address_is_https(self, tmp_path: Path) -> None:
        async with running(sqlite_settings(tmp_path, public_url="https://keel.example.com")) as (_, http):
            response = await http.get("/health")

        assert response.headers["strict-transport-security"] == HSTS

    async def test_token_responses_are_never_cached(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        response = await client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": account.password}
        )

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        tokens = await login(client, account)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})
        assert refreshed.headers["cache-control"] == "no-store"


class TestCors:
    async def test_off_by_default(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health", headers={"Origin": ALLOWED})

        assert "access-control-allow-origin" not in response.headers

    async def test_a_listed_origin_may_call_with_credentials(self, tmp_path: Path) -> None:
        settings = sqlite_settings(tmp_path, cors_origins=f"{ALLOWED}, https://admin.example.com")
        async with running(settings) as (_, http):
            preflight = await http.options(
                "/api/v1/todos",
                headers={
                    "Origin": ALLOWED,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
                },
            )
            simple = await http.get("/health", headers={"Origin": "https://admin.example.com"})

        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ALLOWED
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert simple.headers["access-control-allow-origin"] == "https://admin.example.com"
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()

    async def test_any_other_origin_gets_nothing(self, tmp_path: Path) -> None:
        async with running(sqlite_settings(tmp_path, cors_origins=ALLOWED)) as (_, http):
            preflight = await http.options(
                "/api/v1/todos",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            simple = await http.get("/health", headers={"Origin": "https://evil.example"})

        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-origin" not in simple.headers

    async def test_the_cookie_header_of_the_web_app_is_not_allowed_cross_origin(self, tmp_path: Path) -> None:
        # Cookie mode is same-origin only; a cross-origin page cannot even send the opt-in header.
        async with running(sqlite_settings(tmp_path, cors_origins=ALLOWED)) as (_, http):
            preflight = await http.options(
                "/api/v1/auth/refresh",
                headers={
                    "Origin": ALLOWED,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "x-keel-client",
                },
            )

        assert preflight.status_code == 400

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("*", "'*' is refused"),
            ("https://app.example.com/", "is not an origin"),
            ("app.example.com", "is not an origin"),
            (f"{ALLOWED},ftp://files.example.com", "is not an origin"),
        ],
    )
    def test_refuses_anything_but_a_list_of_origins(self, tmp_path: Path, value: str, fragment: str) -> None:
        with pytest.raises(ConfigError, match="KEEL_CORS_ORIGINS") as caught:
            load_settings(environment="test", data_dir=tmp_path, secret_key=TEST_SECRET, cors_origins=value)

        assert fragment in str(caught.value)
