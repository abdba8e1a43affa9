"""Engines and their pools for SQLite (embedded) and PostgreSQL (production), and outage tracking."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_
from sqlalchemy.util.queue import Empty, Full, QueueCommon

from keel.core.config import Settings
from keel.core.files import create_private_file
from keel.core.logging import get_logger

log = get_logger("keel.db")


class FairQueue(QueueCommon[ConnectionPoolEntry]):
    """The pool's idle connections, each returned one handed straight to the checkout waiting longest.

    SQLAlchemy's asyncio pool keeps them in an `asyncio.Queue`, where a checkout that arrives just
    as a connection comes back takes it ahead of those already waiting, and a waiter that was woken
    but lost that race queues again at the back. With more requests in flight than connections, a
    few requests were passed over again and again and waited seconds while the median stayed low.
    Here nobody waits behind a newcomer: a connection is only idle when no checkout is waiting.
    Upstream, the same barging in the threaded pool is https://github.com/sqlalchemy/sqlalchemy/issues/7679
    (open); the asyncio pool's queue has no fix either, so this replaces it through the pool's own
    `_queue_class` hook (present in the 2.1 series pinned in pyproject.toml).
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        self.maxsize = maxsize
        self.use_lifo = use_lifo
        self._idle: deque[ConnectionPoolEntry] = deque()
        self._waiters: deque[asyncio.Future[ConnectionPoolEntry]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def put_nowait(self, item: ConnectionPoolEntry) -> None:
        if self._hand_over(item):
            return
        if self.full():
            raise Full
        self._idle.append(item)

    def _hand_over(self, item: ConnectionPoolEntry) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # else it timed out or was cancelled
                waiter.set_result(item)
                return True
        return False

    def put(self, item: ConnectionPoolEntry, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # the pool never waits to put: a connection beyond its size is closed

    def get_nowait(self) -> ConnectionPoolEntry:
        if not self._idle:
            raise Empty
        return self._idle.pop() if self.use_lifo else self._idle.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        if self._idle or not block:
            return self.get_nowait()
        waiter: asyncio.Future[ConnectionPoolEntry] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await_(self._wait(waiter, timeout))

    async def _wait(self, waiter: asyncio.Future[ConnectionPoolEntry], seconds: float | None) -> ConnectionPoolEntry:
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except BaseException as exc:
            handed = waiter.done() and not waiter.cancelled()
            if handed and isinstance(exc, TimeoutError):
                return waiter.result()  # it came as the time ran out: take it
            if handed:
                # Cancelled just as one was handed over: pass it on. It is checked out in the pool's
                # count, so it goes back even past `maxsize`; the pool closes the surplus on return.
                item = waiter.result()
                if not self._hand_over(item):
                    self._idle.append(item)
            else:
                with suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise Empty from exc  # the pool turns this into its own TimeoutError
            raise


class FairAsyncPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio pool with `FairQueue` for its idle connections (its own hook for the queue)."""

    _queue_class = FairQueue


def create_engine(settings: Settings, *, request_timeouts: bool = True) -> AsyncEngine:
    """The engine for these settings; `request_timeouts=False` for work that may rightly run long (migrations)."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            # Created before SQLite opens it: SQLite gives its -wal and -shm files the database's mode.
            create_private_file(Path(url.database))
        engine = create_async_engine(url, connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000})
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    asyncpg = url.get_driver_name() == "asyncpg"
    connect_args: dict[str, Any] = {}
    if asyncpg and request_timeouts:
        connect_args["server_settings"] = request_server_settings(settings)
    engine = create_async_engine(
        url,
        poolclass=FairAsyncPool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=not asyncpg,  # another driver cannot say whether the server hung up
        connect_args=connect_args,
    )
    if asyncpg:
        event.listen(engine.sync_engine, "do_connect", _connect_or_refuse)
        event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def request_server_settings(settings: Settings) -> dict[str, str]:
    """PostgreSQL settings for each connection that serves requests (timeouts in milliseconds, 0 for none).

    The timeouts are PostgreSQL's own limits (see Settings): without them a request queued behind
    a row lock waited as long as the lock was held (24 s in one probe), keeping its pooled
    connection and its client all that time.

    JIT is off: every request statement reads a page of rows by index, where compiling never pays,
    and a generic plan (asyncpg keeps statements prepared) cannot see its `LIMIT`, so PostgreSQL
    estimated the whole feed and spent 242 of a 280 ms feed statement compiling (bench/REPORT.md,
    "Generic plans"); with JIT off the same plan took 1.9 ms.
    """
    return {
        "statement_timeout": str(round(settings.db_statement_timeout_seconds * 1000)),
        "lock_timeout": str(round(settings.db_lock_timeout_seconds * 1000)),
        "jit": "off",
    }


def _connect_or_refuse(dialect: Dialect, record: Any, cargs: Any, cparams: Any) -> Any:
    """Make a connection; whatever stops it is raised as the driver's OperationalError.

    asyncpg reports a refused or reset socket as a bare OSError, and a server that is starting up
    or shutting down as a PostgresError (CannotConnectNowError, AdminShutdownError) that SQLAlchemy
    hands on as a plain DBAPIError: neither told the error handlers that the database cannot be
    reached, so every request was a 500. As an OperationalError, SQLAlchemy raises it as its own
    and the handlers answer 503.
    """
    dbapi: Any = dialect.loaded_dbapi
    try:
        return dialect.connect(*cargs, **cparams)
    except dbapi.OperationalError:
        raise
    except Exception as exc:
        raise dbapi.OperationalError(f"cannot connect: {type(exc).__name__}: {exc}", exc) from exc


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


class Outage:
    """While the database cannot serve requests: one warning as that starts, one line when it ends.

    Every request in between is answered 503 (see keel.http.problems); a line with a traceback for
    each of them buried the log. A lost database (refused, restarting, dropped connections) is back
    when a new connection has been made; an exhausted pool, when a checkout succeeds again.
    """

    def __init__(self) -> None:
        self._started: float | None = None
        self._exhausted = False
        self._refused = 0

    def refused(self, exc: BaseException, *, exhausted: bool = False) -> None:
        self._refused += 1
        if self._started is not None:
            return
        self._started = time.monotonic()
        self._exhausted = exhausted
        cause = getattr(exc, "orig", None) or exc
        log.warning("database_unavailable", error=type(cause).__name__, message=str(exc)[:200])

    def connected(self, *_: Any) -> None:
        if self._started is not None:
            self._end()

    def checked_out(self, *_: Any) -> None:
        if self._started is not None and self._exhausted:
            self._end()

    def _end(self) -> None:
        assert self._started is not None
        seconds = round(time.monotonic() - self._started, 1)
        log.info("database_available", refused_requests=self._refused, seconds=seconds)
        self._started = None
        self._refused = 0
