"""Dependency aliases: one ``Annotated`` name per dependency, used as ``user: CurrentUser``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Form, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.config import Settings
from keel.core.db import Database
from keel.core.errors import Forbidden, InvalidToken, TokenExpired, Unauthorized
from keel.core.security import TokenError, decode_access_token
from keel.services import session as session_service
from keel.services.session import Principal, SessionCache

LOGIN_PATH = "/api/v1/auth/login"

_bearer = OAuth2PasswordBearer(tokenUrl=LOGIN_PATH, auto_error=False)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _db_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        yield session


def _session_cache(request: Request) -> SessionCache | None:
    cache: SessionCache | None = request.app.state.session_cache
    return cache


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[AsyncSession, Depends(_db_session)]
CacheDep = Annotated[SessionCache | None, Depends(_session_cache)]


async def _current_user(
    request: Request,
    token: Annotated[str | None, Depends(_bearer)],
    settings: SettingsDep,
    session: SessionDep,
    cache: CacheDep,
) -> Principal:
    if not token:
        raise Unauthorized
    try:
        claims = decode_access_token(settings, token)
    except TokenError as exc:
        raise (TokenExpired() if exc.expired else InvalidToken()) from None
    principal = await session_service.authenticate(session=session, cache=cache, claims=claims)
    request.state.user_id = principal.user_id
    return principal


CurrentUser = Annotated[Principal, Depends(_current_user)]


async def _verified_user(user: CurrentUser) -> Principal:
    if not user.is_verified:
        raise Forbidden("Verify your email address first.")
    return user


async def _admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        raise Forbidden("This requires the admin role.")
    return user


VerifiedUser = Annotated[Principal, Depends(_verified_user)]
AdminUser = Annotated[Principal, Depends(_admin_user)]


class LoginForm:
    """The OAuth2 password grant form (what /docs' Authorize button sends), with bounded fields."""

    def __init__(
        self,
        username: Annotated[str, Form(max_length=254, description="Your email address.")],
        password: Annotated[str, Form(max_length=1024, json_schema_extra={"format": "password"})],
        grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
        scope: Annotated[str, Form(max_length=1024)] = "",
        client_id: Annotated[str | None, Form(max_length=256)] = None,
        client_secret: Annotated[str | None, Form(max_length=256, json_schema_extra={"format": "password"})] = None,
    ) -> None:
        self.username = username
        self.password = password


LoginFormDep = Annotated[LoginForm, Depends()]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientIP = Annotated[str | None, Depends(client_ip)]
