"""Cookie mode for the web app: the refresh token in an HttpOnly cookie, guarded by a same-origin check."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, func, select

from keel.core.config import Settings
from keel.core.db import Database
from keel.core.security import PasswordHasher
from keel.http.web_session import REFRESH_COOKIE, REFRESH_COOKIE_PATH
from keel.main import create_app
from keel.models import UserSession
from keel.routes.auth import router as auth_router
from tests.factories import Account, assert_problem, create_user, login
from tests.routes.transports import (
    AUTH,
    ME,
    ORIGIN,
    WEB,
    assert_cookie_cleared,
    assert_cookie_set,
    assert_no_cookie,
    jarless_client,
    refresh_cookie_of,
    with_cookie,
)

# Rotation, reuse, expiry, the 401s and logout are tested in both modes at once in test_auth.py
# (the `transport` fixture); this file keeps what only cookie mode has.
PUBLIC_HTTPS_URL = "https://keel.example.com"
DAY = 24 * 3600


# --- clients ---------------------------------------------------------------------------------
@pytest.fixture
async def web(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with jarless_client(app) as http:
        yield http


@pytest.fixture
async def https_public_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app as deployed behind a TLS proxy: it sees plain http, but its public URL is https."""
    application = create_app(settings.model_copy(update={"public_url": PUBLIC_HTTPS_URL}))
    async with application.router.lifespan_context(application):
        yield application


# --- requests --------------------------------------------------------------------------------
@dataclass
class WebTokens:
    access: str
    cookie: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


async def web_login_response(
    client: httpx.AsyncClient, account: Account, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(
        f"{AUTH}/login",
        data={"username": account.email, "password": account.password},
        headers=WEB if headers is None else headers,
    )


async def web_login(client: httpx.AsyncClient, account: Account) -> WebTokens:
    response = await web_login_response(client, account)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] is None
    return WebTokens(access=response.json()["access_token"], cookie=refresh_cookie_of(response).value)


async def web_signed_in(app: FastAPI, client: httpx.AsyncClient) -> tuple[Account, WebTokens]:
    account = await create_user(app)
    return account, await web_login(client, account)


async def cookie_refresh(
    client: httpx.AsyncClient, cookie: str | None, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    return await client.post(f"{AUTH}/refresh", headers=with_cookie(cookie, headers), **kwargs)


async def rotate(client: httpx.AsyncClient, tokens: WebTokens) -> WebTokens:
    response = await cookie_refresh(client, tokens.cookie)
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"] is None
    return WebTokens(access=response.json()["access_token"], cookie=refresh_cookie_of(response).value)


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {access_token}"})


async def assert_web_session_alive(client: httpx.AsyncClient, tokens: WebTokens) -> WebTokens:
    assert (await me(client, tokens.access)).status_code == 200
    rotated = await rotate(client, tokens)
    assert (await me(client, rotated.access)).status_code == 200
    return rotated


async def assert_web_session_ended(client: httpx.AsyncClient, tokens: WebTokens) -> None:
    assert_problem(await me(client, tokens.access), 401, "session_revoked")
    response = await cookie_refresh(client, tokens.cookie)
    assert_problem(response, 401, "invalid_refresh_token")
    assert_cookie_cleared(response)


async def session_count(app: FastAPI, *, live_only: bool = False) -> int:
    database: Database = app.state.database
    statement = select(func.count()).select_from(UserSession)
    if live_only:
        statement = statement.where(col(UserSession.revoked_at).is_(None))
    async with database.session() as session:
        return (await session.exec(statement)).one()


def count_password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("verify", "dummy_verify"):
        original: Callable[..., Awaitable[Any]] = getattr(PasswordHasher, name)

        def counting(original: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Awaitable[Any]]:
            async def wrapper(self: PasswordHasher, *args: Any, **options: Any) -> Any:
                calls.append(name)
                return await original(self, *args, **options)

            return wrapper

        monkeypatch.setattr(PasswordHasher, name, counting(original, name))
    return calls


# Origins that must not pass the same-origin check on a request to http://testserver.
FOREIGN_ORIGINS = [
    pytest.param("https://evil.example", id="other-site"),
    pytest.param("http://testserver.evil.example", id="suffix-host"),
    pytest.param("http://evil.testserver", id="subdomain"),
    pytest.param("https://testserver", id="other-scheme"),
    pytest.param("http://testserver:8080", id="other-port"),
    pytest.param("null", id="null"),
    pytest.param("http://testserver/", id="not-a-bare-origin"),
    pytest.param("http://user@testserver", id="credentials"),
    pytest.param("testserver", id="no-scheme"),
    pytest.param("", id="empty"),
]


# --- login -----------------------------------------------------------------------------------
class TestWebLogin:
    async def test_the_cookie_is_a_working_refresh_token(self, app: FastAPI, web: httpx.AsyncClient) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await web.post(f"{AUTH}/refresh", json={"refresh_token": tokens.cookie})
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no-header"),
            pytest.param({"Origin": ORIGIN}, id="origin-only"),
            pytest.param({"X-Keel-Client": "mobile", "Origin": ORIGIN}, id="other-client"),
        ],
    )
    async def test_without_the_web_header_nothing_changes(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        account = await create_user(app)
        response = await web_login_response(web, account, headers)
        assert response.status_code == 200, response.text
        assert isinstance(response.json()["refresh_token"], str)
        assert response.headers["Cache-Control"] == "no-store"
        assert_no_cookie(response)

    @pytest.mark.parametrize("origin", [*FOREIGN_ORIGINS, pytest.param(None, id="missing")])
    async def test_cross_site_is_refused_before_checking_the_password(
        self, app: FastAPI, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, origin: str | None
    ) -> None:
        account = await create_user(app)
        checks = count_password_checks(monkeypatch)
        headers = {"X-Keel-Client": "web"} | ({"Origin": origin} if origin is not None else {})

        response = await web_login_response(web, account, headers)
        body = assert_problem(response, 403, "csrf_rejected")
        assert body["detail"] == "This request must come from the Keel web app."
        assert_no_cookie(response)
        assert "access_token" not in response.text
        assert checks == []
        assert await session_count(app) == 0

    @pytest.mark.parametrize("origin", ["http://testserver:80", "HTTP://TestServer", "http://127.0.0.1:8000"], ids=str)
    async def test_equivalent_and_public_origins_are_accepted(
        self, app: FastAPI, web: httpx.AsyncClient, settings: Settings, origin: str
    ) -> None:
        assert settings.public_url == "http://127.0.0.1:8000"  # the last case is the public URL's origin
        account = await create_user(app)
        response = await web_login_response(web, account, {"X-Keel-Client": "web", "Origin": origin})
        assert response.status_code == 200, response.text
        assert_cookie_set(response, max_age=settings.session_idle_ttl_seconds)

    async def test_wrong_password_sets_no_cookie(self, app: FastAPI, web: httpx.AsyncClient) -> None:
        account = await create_user(app)
        response = await web.post(
            f"{AUTH}/login", data={"username": account.email, "password": "Not-the-right-one-77"}, headers=WEB
        )
        assert_problem(response, 401, "invalid_credentials")
        assert_no_cookie(response)

    async def test_secure_when_the_public_url_is_https(self, https_public_app: FastAPI, settings: Settings) -> None:
        account = await create_user(https_public_app)
        async with jarless_client(https_public_app) as client:
            # Behind the proxy the browser's origin is the public one, not what the app sees.
            response = await web_login_response(client, account, {"X-Keel-Client": "web", "Origin": PUBLIC_HTTPS_URL})
            assert response.status_code == 200, response.text
            cookie = assert_cookie_set(response, max_age=settings.session_idle_ttl_seconds, secure=True)

            refreshed = await cookie_refresh(client, cookie, {"X-Keel-Client": "web", "Origin": PUBLIC_HTTPS_URL})
            assert refreshed.status_code == 200, refreshed.text
            assert_cookie_set(refreshed, max_age=settings.session_idle_ttl_seconds, secure=True)

            replayed = await cookie_refresh(client, cookie, {"X-Keel-Client": "web", "Origin": PUBLIC_HTTPS_URL})
            assert_problem(replayed, 401, "invalid_refresh_token")
            assert_cookie_cleared(replayed, secure=True)

    async def test_secure_when_the_request_is_https(self, app: FastAPI, settings: Settings) -> None:
        account = await create_user(app)
        async with jarless_client(app, base_url="https://testserver") as client:
            response = await web_login_response(
                client, account, {"X-Keel-Client": "web", "Origin": "https://testserver"}
            )
            assert response.status_code == 200, response.text
            assert_cookie_set(response, max_age=settings.session_idle_ttl_seconds, secure=True)


# --- refresh ---------------------------------------------------------------------------------
class TestCookieRefresh:
    @pytest.mark.parametrize(
        "send",
        [
            pytest.param({}, id="no-body"),
            pytest.param({"json": {}}, id="empty-object"),
            pytest.param({"json": {"refresh_token": None}}, id="null-token"),
        ],
    )
    async def test_a_body_without_a_token_uses_the_cookie(
        self, app: FastAPI, web: httpx.AsyncClient, send: dict[str, Any]
    ) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await cookie_refresh(web, tokens.cookie, **send)
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"] is None
        assert refresh_cookie_of(response).value != tokens.cookie

    async def test_max_age_shrinks_to_the_sessions_absolute_end(
        self, app: FastAPI, web: httpx.AsyncClient, settings: Settings, clock: time_machine.Traveller
    ) -> None:
        assert (settings.session_idle_ttl_seconds, settings.session_absolute_ttl_seconds) == (7 * DAY, 30 * DAY)
        _, tokens = await web_signed_in(app, web)
        for _ in range(4):  # days 6, 12, 18 and 24: the idle limit still comes first until day 23
            clock.shift(timedelta(days=6))
            response = await cookie_refresh(web, tokens.cookie)
            assert response.status_code == 200, response.text
            tokens = WebTokens(response.json()["access_token"], refresh_cookie_of(response).value)
        # At day 24 the session has 6 days left, less than the 7-day idle limit.
        max_age = refresh_cookie_of(response).max_age
        assert 6 * DAY - 60 <= max_age <= 6 * DAY

        clock.shift(timedelta(days=5, hours=23))
        response = await cookie_refresh(web, tokens.cookie)
        assert response.status_code == 200, response.text
        assert 3600 - 60 <= refresh_cookie_of(response).max_age <= 3600

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="neither-header"),
            pytest.param({"Origin": ORIGIN}, id="no-client-header"),
            pytest.param({"X-Keel-Client": "web"}, id="no-origin"),
            pytest.param({"X-Keel-Client": "other", "Origin": ORIGIN}, id="other-client"),
            *(
                pytest.param({"X-Keel-Client": "web", "Origin": param.values[0]}, id=str(param.id))
                for param in FOREIGN_ORIGINS
            ),
        ],
    )
    async def test_cross_site_is_refused_even_with_a_valid_cookie(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await cookie_refresh(web, tokens.cookie, headers)
        assert_problem(response, 403, "csrf_rejected")
        assert_no_cookie(response)
        assert "access_token" not in response.text
        # The cookie was not consumed: the real web app can still use it.
        await assert_web_session_alive(web, tokens)

    async def test_the_public_url_origin_is_accepted(
        self, app: FastAPI, web: httpx.AsyncClient, settings: Settings
    ) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await cookie_refresh(web, tokens.cookie, {"X-Keel-Client": "web", "Origin": settings.public_url})
        assert response.status_code == 200, response.text
        assert refresh_cookie_of(response).value != tokens.cookie

    async def test_https_public_url_origin_is_accepted_and_its_host_alone_is_not(
        self, https_public_app: FastAPI
    ) -> None:
        async with jarless_client(https_public_app) as client:
            tokens = await web_login(client, await create_user(https_public_app))
            wrong_scheme = await cookie_refresh(
                client, tokens.cookie, {"X-Keel-Client": "web", "Origin": "http://keel.example.com"}
            )
            assert_problem(wrong_scheme, 403, "csrf_rejected")
            right = await cookie_refresh(client, tokens.cookie, {"X-Keel-Client": "web", "Origin": PUBLIC_HTTPS_URL})
            assert right.status_code == 200, right.text

    @pytest.mark.parametrize("headers", [pytest.param(WEB, id="web"), pytest.param({}, id="plain")])
    async def test_a_token_in_the_body_is_used_and_the_cookie_ignored(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        account, cookie_tokens = await web_signed_in(app, web)
        body_tokens = await login(web, account)

        response = await cookie_refresh(web, cookie_tokens.cookie, headers, json={"refresh_token": body_tokens.refresh})
        assert response.status_code == 200, response.text
        assert isinstance(response.json()["refresh_token"], str)
        assert response.headers["Cache-Control"] == "no-store"
        assert_no_cookie(response)
        # The cookie was neither consumed nor used.
        await assert_web_session_alive(web, cookie_tokens)

    async def test_a_bad_body_token_does_not_clear_or_fall_back_to_the_cookie(
        self, app: FastAPI, web: httpx.AsyncClient
    ) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await cookie_refresh(web, tokens.cookie, json={"refresh_token": "not-a-token-we-ever-issued"})
        assert_problem(response, 401, "invalid_refresh_token")
        assert_no_cookie(response)
        await assert_web_session_alive(web, tokens)

    @pytest.mark.parametrize("headers", [pytest.param(WEB, id="web"), pytest.param({}, id="plain")])
    @pytest.mark.parametrize(
        "send",
        [
            pytest.param({}, id="no-body"),
            pytest.param({"json": {}}, id="empty-object"),
            pytest.param({"json": {"refresh_token": None}}, id="null-token"),
        ],
    )
    async def test_neither_body_token_nor_cookie(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str], send: dict[str, Any]
    ) -> None:
        response = await cookie_refresh(web, None, headers, **send)
        body = assert_problem(response, 401, "invalid_refresh_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_no_cookie(response)
        # The same problem as for a token that does not work.
        unknown = assert_problem(
            await web.post(f"{AUTH}/refresh", json={"refresh_token": "nope"}), 401, "invalid_refresh_token"
        )
        assert (body["title"], body["detail"]) == (unknown["title"], unknown["detail"])


# --- logout ----------------------------------------------------------------------------------
class TestLogoutWithCookie:
    async def test_cookie_and_body_token_both_end_their_sessions(self, app: FastAPI, web: httpx.AsyncClient) -> None:
        account, caller = await web_signed_in(app, web)
        from_cookie = await web_login(web, account)
        from_body = await login(web, account)

        response = await web.post(
            f"{AUTH}/logout",
            headers=caller.headers | with_cookie(from_cookie.cookie),
            json={"refresh_token": from_body.refresh},
        )
        assert response.status_code == 204, response.text
        await assert_web_session_ended(web, caller)
        await assert_web_session_ended(web, from_cookie)
        assert_problem(await me(web, from_body.access), 401, "session_revoked")
        assert await session_count(app, live_only=True) == 0

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({"X-Keel-Client": "web", "Origin": "https://evil.example"}, id="foreign-origin"),
            pytest.param({"X-Keel-Client": "web", "Origin": "null"}, id="null-origin"),
            pytest.param({"X-Keel-Client": "web"}, id="no-origin"),
            pytest.param({"Origin": ORIGIN}, id="no-client-header"),
        ],
    )
    async def test_cross_site_is_refused_and_nothing_ends(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await web.post(f"{AUTH}/logout", headers=tokens.headers | with_cookie(tokens.cookie, headers))
        assert_problem(response, 403, "csrf_rejected")
        assert_no_cookie(response)
        assert await session_count(app, live_only=True) == 1
        await assert_web_session_alive(web, tokens)

    async def test_still_requires_the_bearer_token(self, app: FastAPI, web: httpx.AsyncClient) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await web.post(f"{AUTH}/logout", headers=with_cookie(tokens.cookie))
        assert_problem(response, 401, "not_authenticated")
        await assert_web_session_alive(web, tokens)

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param(WEB, id="web"),
            pytest.param({}, id="no-headers"),
            pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        ],
    )
    async def test_logout_all_clears_the_cookie_without_a_same_origin_check(
        self, app: FastAPI, web: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        account, tokens = await web_signed_in(app, web)
        other = await web_login(web, account)
        response = await web.post(f"{AUTH}/logout-all", headers=tokens.headers | with_cookie(tokens.cookie, headers))
        assert response.status_code == 204, response.text
        assert_cookie_cleared(response)
        await assert_web_session_ended(web, tokens)
        await assert_web_session_ended(web, other)

    async def test_logout_all_without_a_cookie_sets_none(self, app: FastAPI, web: httpx.AsyncClient) -> None:
        _, tokens = await web_signed_in(app, web)
        response = await web.post(f"{AUTH}/logout-all", headers=tokens.headers)
        assert response.status_code == 204, response.text
        assert_no_cookie(response)


# --- as a browser would: a real cookie jar --------------------------------------------------
class TestWithACookieJar:
    async def test_the_jar_sends_the_cookie_to_auth_endpoints_only_and_drops_it_at_logout(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        response = await web_login_response(client, account)
        assert response.status_code == 200, response.text
        access = response.json()["access_token"]

        assert REFRESH_COOKIE in (client.build_request("POST", f"{AUTH}/refresh").headers.get("cookie") or "")
        assert client.build_request("GET", ME).headers.get("cookie") is None
        assert client.build_request("POST", "/api/v1/todos").headers.get("cookie") is None

        first = await client.post(f"{AUTH}/refresh", headers=WEB)
        assert first.status_code == 200, first.text
        second = await client.post(f"{AUTH}/refresh", headers=WEB)  # the jar holds the rotated cookie
        assert second.status_code == 200, second.text
        access = second.json()["access_token"]

        logout = await client.post(f"{AUTH}/logout", headers=WEB | {"Authorization": f"Bearer {access}"})
        assert logout.status_code == 204, logout.text
        # The device cookie stays: it names the browser, not a session (keel.services.device).
        assert [cookie.name for cookie in client.cookies.jar] == ["keel_device"]
        assert_problem(await client.post(f"{AUTH}/refresh", headers=WEB), 401, "invalid_refresh_token")


# --- documentation and wiring ----------------------------------------------------------------
class TestContract:
    def test_the_cookie_path_is_the_auth_routers_prefix(self) -> None:
        assert auth_router.prefix == REFRESH_COOKIE_PATH

    def test_openapi_documents_cookie_mode(self, app: FastAPI) -> None:
        schema = app.openapi()
        token_pair = schema["components"]["schemas"]["TokenPair"]["properties"]["refresh_token"]
        assert {"type": "null"} in token_pair["anyOf"]
        assert "cookie" in token_pair["description"].lower()
        refresh = schema["paths"][f"{AUTH}/refresh"]["post"]
        assert refresh["requestBody"].get("required") is not True
        for path in ("login", "refresh", "logout"):
            operation = schema["paths"][f"{AUTH}/{path}"]["post"]
            assert "403" in operation["responses"], path
            assert "keel_refresh" in operation["description"], path
