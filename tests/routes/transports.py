"""The two ways a client holds its refresh token: in JSON bodies, or as the web app's HttpOnly cookie.

Rotation, reuse detection, logout and the 401s follow the same rules either way, so those tests take
the `transport` fixture (tests/routes/conftest.py) and run once per mode; each mode checks where it
expects the token to travel. The Set-Cookie parsing here is independent of how the app writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.client import HTTPResponse
from http.cookiejar import CookieJar
from typing import Any, ClassVar
from urllib.request import Request as UrllibRequest

import httpx
from fastapi import FastAPI

from keel.core.config import Settings
from keel.http.web_session import DEVICE_COOKIE, REFRESH_COOKIE
from tests.factories import Account, Tokens, assert_problem, create_user

AUTH = "/api/v1/auth"
ME = "/api/v1/users/me"
ORIGIN = "http://testserver"  # the test client's own origin, as the app sees it
WEB = {"X-Keel-Client": "web", "Origin": ORIGIN}


# --- clients -----------------------------------------------------------------------------------
class NoCookieJar(CookieJar):
    """Keeps nothing, so each request carries exactly the cookie its test gives it."""

    def extract_cookies(self, response: HTTPResponse, request: UrllibRequest) -> None:
        return None


def jarless_client(app: FastAPI, base_url: str = ORIGIN) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
    return httpx.AsyncClient(
        transport=transport, base_url=base_url, cookies=NoCookieJar(), headers={"User-Agent": "pytest-browser/1.0"}
    )


# --- Set-Cookie --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: dict[str, str | bool]  # lower-cased names; flags map to True

    @property
    def max_age(self) -> int:
        value = self.attributes["max-age"]
        assert isinstance(value, str)
        return int(value)


def parse_set_cookie(header: str) -> SetCookie:
    pair, *rest = (part.strip() for part in header.split(";"))
    name, _, value = pair.partition("=")
    attributes: dict[str, str | bool] = {}
    for item in rest:
        key, sep, val = item.partition("=")
        assert key.lower() not in attributes, header
        attributes[key.lower()] = val if sep else True
    return SetCookie(name=name, value=value, attributes=attributes)


def refresh_cookie_of(response: httpx.Response) -> SetCookie:
    """The response sets exactly one cookie, the refresh cookie (besides a new browser's device cookie)."""
    headers = [value for value in response.headers.get_list("set-cookie") if not value.startswith(f"{DEVICE_COOKIE}=")]
    assert len(headers) == 1, headers
    cookie = parse_set_cookie(headers[0])
    assert cookie.name == REFRESH_COOKIE
    return cookie


def assert_cookie_set(response: httpx.Response, *, max_age: int | None, secure: bool = False) -> str:
    """The refresh cookie is set with exactly the promised attributes; returns its value.

    `max_age=None` when the test cannot know it (it shrinks towards the session's absolute end).
    """
    cookie = refresh_cookie_of(response)
    expected = {"httponly", "samesite", "path", "max-age"} | ({"secure"} if secure else set())
    assert set(cookie.attributes) == expected, cookie.attributes
    assert cookie.attributes["httponly"] is True
    assert str(cookie.attributes["samesite"]).lower() == "strict"
    assert cookie.attributes["path"] == "/api/v1/auth"
    if max_age is None:
        assert cookie.max_age > 0
    else:
        assert cookie.max_age == max_age
    assert len(cookie.value) >= 40  # 256 random bits, URL-safe base64
    return cookie.value


def assert_cookie_cleared(response: httpx.Response, *, secure: bool = False) -> None:
    cookie = refresh_cookie_of(response)
    assert cookie.max_age == 0
    assert cookie.value in {"", '""'}
    assert cookie.attributes["path"] == "/api/v1/auth"
    assert cookie.attributes["httponly"] is True
    assert ("secure" in cookie.attributes) is secure


def assert_no_cookie(response: httpx.Response) -> None:
    assert response.headers.get_list("set-cookie") == []


def with_cookie(cookie: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The web app's headers (or `headers`), carrying `cookie` as the refresh cookie if given."""
    merged = dict(WEB if headers is None else headers)
    if cookie is not None:
        merged["Cookie"] = f"{REFRESH_COOKIE}={cookie}"
    return merged


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


# --- the transports ----------------------------------------------------------------------------
class Transport:
    """Signs in, refreshes and logs out in one mode; `Tokens.refresh` is the body token or the cookie."""

    mode: ClassVar[str]

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    # What differs between the modes.
    def sign_in_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def presenting(self, refresh: str) -> dict[str, Any]:
        """The request arguments that present `refresh` to /refresh or /logout."""
        raise NotImplementedError

    def handed_over(self, response: httpx.Response, *, max_age: int | None = None) -> str:
        """The new refresh token from a 200, checked to travel only where this mode keeps it.

        `max_age` is the cookie's expected lifetime, when the test knows it.
        """
        raise NotImplementedError

    def assert_dropped(self, response: httpx.Response, *, presented: bool) -> None:
        """A refused refresh, or a logout, tells the client to forget what it presented."""
        raise NotImplementedError

    # The same in both.
    async def login_response(self, account: Account) -> httpx.Response:
        return await self.client.post(
            f"{AUTH}/login",
            data={"username": account.email, "password": account.password},
            headers=self.sign_in_headers(),
        )

    async def login(self, account: Account) -> Tokens:
        response = await self.login_response(account)
        assert response.status_code == 200, response.text
        # A new session's refresh token lasts the idle limit: the absolute one is further off.
        refresh = self.handed_over(response, max_age=self.settings.session_idle_ttl_seconds)
        return Tokens(access=response.json()["access_token"], refresh=refresh)

    async def signed_in(self, app: FastAPI) -> tuple[Account, Tokens]:
        account = await create_user(app)
        return account, await self.login(account)

    async def refresh_response(self, refresh: str) -> httpx.Response:
        return await self.client.post(f"{AUTH}/refresh", **self.presenting(refresh))

    async def rotate(self, tokens: Tokens) -> Tokens:
        """Refresh successfully; the new access token works at once."""
        response = await self.refresh_response(tokens.refresh)
        assert response.status_code == 200, response.text
        rotated = Tokens(access=response.json()["access_token"], refresh=self.handed_over(response))
        assert (await self.me(rotated.access)).status_code == 200
        return rotated

    def assert_refused(self, response: httpx.Response) -> dict[str, object]:
        """The refresh got the one 401 for any token that does not work."""
        problem = assert_problem(response, 401, "invalid_refresh_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        self.assert_dropped(response, presented=True)
        return problem

    async def refused(self, refresh: str) -> dict[str, object]:
        return self.assert_refused(await self.refresh_response(refresh))

    async def logout(self, tokens: Tokens, *, presenting: str | None = None) -> httpx.Response:
        """Log out with `tokens`' access token, also handing in a refresh token if given."""
        if presenting is None:
            return await self.client.post(f"{AUTH}/logout", headers=bearer(tokens.access))
        arguments = self.presenting(presenting)
        arguments["headers"] = bearer(tokens.access) | arguments.get("headers", {})
        return await self.client.post(f"{AUTH}/logout", **arguments)

    async def me(self, access_token: str) -> httpx.Response:
        return await self.client.get(ME, headers=bearer(access_token))

    async def assert_session_alive(self, tokens: Tokens) -> Tokens:
        """Both halves of the session still work; returns the rotated pair."""
        response = await self.me(tokens.access)
        assert response.status_code == 200, response.text
        return await self.rotate(tokens)

    async def assert_session_ended(self, tokens: Tokens) -> None:
        """Neither the access token nor the refresh token of the session is accepted any more."""
        response = await self.me(tokens.access)
        assert_problem(response, 401, "session_revoked")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        await self.refused(tokens.refresh)


class BodyTransport(Transport):
    """Mobile apps and scripts: the refresh token goes back and forth in JSON bodies; no cookie ever."""

    mode = "body"

    def sign_in_headers(self) -> dict[str, str]:
        return {}

    def presenting(self, refresh: str) -> dict[str, Any]:
        return {"json": {"refresh_token": refresh}}

    def handed_over(self, response: httpx.Response, *, max_age: int | None = None) -> str:
        token = response.json()["refresh_token"]
        assert isinstance(token, str)
        assert_no_cookie(response)
        return token

    def assert_dropped(self, response: httpx.Response, *, presented: bool) -> None:
        assert_no_cookie(response)


class CookieTransport(Transport):
    """The web app: opted in by its header and same-origin, the token lives in the HttpOnly cookie."""

    mode = "cookie"

    def sign_in_headers(self) -> dict[str, str]:
        return WEB

    def presenting(self, refresh: str) -> dict[str, Any]:
        return {"headers": with_cookie(refresh)}

    def handed_over(self, response: httpx.Response, *, max_age: int | None = None) -> str:
        assert response.json()["refresh_token"] is None
        cookie = assert_cookie_set(response, max_age=max_age)
        assert cookie not in response.text  # page scripts never see it
        return cookie

    def assert_dropped(self, response: httpx.Response, *, presented: bool) -> None:
        if presented:
            assert_cookie_cleared(response)
        else:
            assert_no_cookie(response)


TRANSPORTS: tuple[type[Transport], ...] = (BodyTransport, CookieTransport)
