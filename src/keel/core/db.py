"""Async engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.config import Settings

_T = TypeVar("_T")


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000})
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    asyncpg = url.get_driver_name() == "asyncpg"
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=not asyncpg,  # another driver cannot say whether the server hung up
    )
    if asyncpg:
        event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip per checkout (which pool_pre_ping costs).

    asyncpg marks a connection closed as soon as the server hangs up on it (a restart, a failover,
    pg_terminate_backend), because the pooled socket is still watched by the event loop. Raising
    DisconnectionError here makes the pool discard it and hand out another, so the request never
    sees the dead one. A peer that vanished without closing the socket is caught by the request's
    own statement failing: SQLAlchemy then invalidates the pool.
    """
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


SQLITE_LOWER = "keel_lower"


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite's lower() folds ASCII only; searches use this one so "CRÈME" finds "crème".
        dbapi_connection.create_function(SQLITE_LOWER, 1, _unicode_lower, deterministic=True)


class Database:
    """The engine and its session factory, owned by the application's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        # The same pool, for statements that need no transaction around them: no BEGIN and no
        # COMMIT/ROLLBACK round trip. A single statement still sees one snapshot and is atomic.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits on its own (see ``_autocommit``).

        For reads, and for a write that is one statement; anything that must be atomic across
        statements belongs in a session's transaction.
        """
        async with self._autocommit.connect() as connection:
            yield connection

    async def read(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run read-only `work` on an autocommit connection; again on a fresh one if that one had died.

        The checkout check above catches a connection the server closed a moment ago only once the
        event loop has seen the hang-up. When a statement finds it first, SQLAlchemy invalidates
        the pool, and a read is safe to repeat; a write is not, so writes never come through here.
        """
        try:
            async with self.autocommit() as connection:
                return await work(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with self.autocommit() as connection:
            return await work(connection)

    async def dispose(self) -> None:
        await self.engine.dispose()
