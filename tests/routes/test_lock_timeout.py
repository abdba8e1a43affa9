"""A request that waits on a lock held elsewhere gives up at the database's lock timeout: a 503 with
Retry-After, and whatever it had written before is rolled back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlmodel import col, select

from keel.core.config import Settings
from keel.core.security import hash_refresh_token
from keel.main import create_app
from keel.models import EmailKind, EmailOutbox, User, UserSession
from tests.factories import Tokens, assert_problem, create_user, login

# Far longer than the lock timeout below: an answer at all means the request stopped waiting.
PATIENCE_SECONDS = 15


@pytest.fixture
def impatient(settings: Settings) -> Settings:
    return settings.model_copy(update={"db_lock_timeout_seconds": 0.3, "sqlite_busy_timeout_ms": 300})


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


@asynccontextmanager
async def locked(settings: Settings, table: str, column: str, value: str) -> AsyncIterator[None]:
    """Another client holds a lock on that row (PostgreSQL), or SQLite's write lock, for the block."""
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        other = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
        finally:
            other.rollback()
            other.close()
        return
    holder = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with holder.transaction():
            rows = await holder.fetch(f'SELECT 1 FROM "{table}" WHERE {column} = $1 FOR UPDATE', value)
            assert len(rows) == 1
            yield
    finally:
        await holder.close()


async def answer_while_locked(
    settings: Settings, lock: tuple[str, str, str], request: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    async with locked(settings, *lock), asyncio.timeout(PATIENCE_SECONDS):
        return await request()


async def test_a_refresh_that_waits_on_its_token_row_is_a_503_and_consumes_nothing(impatient: Settings) -> None:
    async with running(impatient) as (app, http):
        tokens = await login(http, await create_user(app))
        lock = ("refresh_token", "token_hash", hash_refresh_token(tokens.refresh))

        refused = await answer_while_locked(
            impatient,
            lock,
            lambda: http.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh}),
        )
        # Nothing was consumed: the same token still refreshes once the lock is gone.
        after = await http.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})

    assert_problem(refused, 503, "database_unavailable")
    assert int(refused.headers["retry-after"]) >= 1
    assert after.status_code == 200, after.text


async def test_a_password_change_that_waits_on_a_session_row_is_a_503_and_writes_nothing(
    impatient: Settings,
) -> None:
    async with running(impatient) as (app, http):
        account = await create_user(app)
        current = await login(http, account)
        other: Tokens = await login(http, account, user_agent="other-device/1.0")
        async with app.state.database.session() as session:
            (other_session,) = await session.exec(
                select(UserSession.id).where(
                    UserSession.user_id == account.id, UserSession.user_agent == "other-device/1.0"
                )
            )
            hashed_before = (await session.exec(select(User.hashed_password).where(User.id == account.id))).one()
        assert other.access

        # The user's row is updated first, then the other session's is needed to revoke it.
        refused = await answer_while_locked(
            impatient,
            ("user_session", "id", other_session),
            lambda: http.post(
                "/api/v1/auth/password-change",
                json={"current_password": account.password, "new_password": "a brand new tide 77"},
                headers=current.headers,
            ),
        )

        async with app.state.database.session() as session:
            hashed_after = (await session.exec(select(User.hashed_password).where(User.id == account.id))).one()
            revoked = (await session.exec(select(UserSession.revoked_at).where(UserSession.id == other_session))).one()
            emails = (
                await session.exec(
                    select(func.count())
                    .select_from(EmailOutbox)
                    # The other device's sign-in mailed its notice; the password change mails nothing.
                    .where(col(EmailOutbox.user_id) == account.id, col(EmailOutbox.kind) != EmailKind.NEW_DEVICE)
                )
            ).one()

    assert_problem(refused, 503, "database_unavailable")
    assert int(refused.headers["retry-after"]) >= 1
    assert hashed_after == hashed_before
    assert revoked is None
    assert emails == 0
