"""Factories for test data: users straight into the database, tokens through the real API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.db import Database
from keel.core.security import password_hasher
from keel.models import Activity, Role, User

DEFAULT_PASSWORD = "tidal-Marmot-quarry-42"
_counter = itertools.count(1)


@dataclass
class Account:
    id: int
    email: str
    username: str
    password: str


@dataclass
class Tokens:
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


async def create_user(
    app: FastAPI,
    *,
    email: str | None = None,
    username: str | None = None,
    password: str = DEFAULT_PASSWORD,
    role: Role = Role.USER,
    is_verified: bool = True,
    is_active: bool = True,
    hashed_password: str | None = None,
) -> Account:
    n = next(_counter)
    username = username or f"user_{n}"
    email = (email or f"{username}@example.com").lower()
    database: Database = app.state.database
    hashed = hashed_password or await password_hasher(app.state.settings).hash(password)
    async with database.session() as session:
        user = User(
            email=email,
            username=username,
            hashed_password=hashed,
            role=role,
            is_verified=is_verified,
            is_active=is_active,
        )
        session.add(user)
        await session.commit()
        assert user.id is not None
        return Account(id=user.id, email=email, username=username, password=password)


async def login(client: httpx.AsyncClient, account: Account, *, user_agent: str = "pytest-browser/1.0") -> Tokens:
    response = await client.post(
        "/api/v1/auth/login",
        data={"username": account.email, "password": account.password},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(access=body["access_token"], refresh=body["refresh_token"])


async def signed_in(app: FastAPI, client: httpx.AsyncClient, **kwargs: object) -> tuple[Account, Tokens]:
    account = await create_user(app, **kwargs)  # type: ignore[arg-type]
    return account, await login(client, account)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    """The response is an RFC 9457 problem with this status and stable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:keel:problem:{code}"
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    return body


def utc_timestamp(value: object) -> datetime:
    """An ISO 8601 timestamp from a response, which must carry a UTC offset."""
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def error_locs(problem: dict[str, object]) -> list[object]:
    """The `loc` of every validation error in a 422 problem."""
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [error["loc"] for error in errors]


async def activity_of(app: FastAPI, user_id: int) -> list[Activity]:
    """An account's activity rows, oldest first."""
    database: Database = app.state.database
    async with database.session() as session:
        rows = await session.exec(select(Activity).where(Activity.user_id == user_id).order_by(col(Activity.id)))
        return list(rows)


async def activity_types(app: FastAPI, user_id: int) -> list[str]:
    return [row.type for row in await activity_of(app, user_id)]
