"""Async engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import Dialect, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_, greenlet_spawn
from sqlalchemy.util.queue import Empty, Full, QueueCommon
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.config import Settings
from keel.core.files import create_private_file
from keel.core.logging import get_logger

_T = TypeVar("_T")

log = get_logger("keel.db")


class FairQueue(QueueCommon[ConnectionPoolEntry]):
    """The pool's idle connections, each returned one handed straight to the checkout waiting longest.

    SQLAlchemy's asyncio pool keeps them in an `asyncio.Queue`, where a checkout that arrives just
    as a connection comes back takes it ahead of those already waiting, and a waiter that was woken
    but lost that race queues again at the back. With more requests in flight than connections
    (64 client connections against a pool of 20 in the benchmark), the median stayed at 35 ms while 1%
    of requests waited 1.5-6 s, some of them passed over again and again. Here nobody waits
    behind a newcomer: a connection is only idle when no checkout is waiting.
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
        connect_args["server_settings"] = server_timeouts(settings)
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


def server_timeouts(settings: Settings) -> dict[str, str]:
    """PostgreSQL's own limits for each connection (in milliseconds, 0 for none); see Settings.

    Without them a request queued behind a row lock waited as long as the lock was held (24 s
    in one probe), keeping its pooled connection and its client all that time.
    """
    return {
        "statement_timeout": str(round(settings.db_statement_timeout_seconds * 1000)),
        "lock_timeout": str(round(settings.db_lock_timeout_seconds * 1000)),
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


Convert = Callable[[Any], Any]
_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """A prebuilt statement compiled for asyncpg once: its SQL, its values in `$n` order, its conversions.

    The conversions are the ones SQLAlchemy itself would apply (the column types' bind and result
    processors, so `PriorityRank` and `UTCDateTime` behave exactly as through the ORM).
    """

    statement: Executable  # the cache is keyed by its id(): keep it alive with its plan
    sql: str
    names: tuple[str, ...]
    # The value a literal in the statement carries (`func.f(1)`, `.limit(20)`), else _REQUIRED
    defaults: tuple[Any, ...]
    binds: tuple[Convert | None, ...]
    # (column position, conversion) for only the result columns that have one
    results: tuple[tuple[int, Convert], ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> _Plan:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        assert isinstance(compiled, SQLCompiler)
        assert compiled.positiontup is not None
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("statements with expanding (IN) parameters are not prebuilt")
        names = tuple(compiled.positiontup)
        parameters = [compiled.binds[name] for name in names]
        defaults = tuple(_REQUIRED if bind.required else bind.effective_value for bind in parameters)
        binds = tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in parameters)
        columns = statement.exported_columns if hasattr(statement, "exported_columns") else ()
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        results = tuple((index, convert) for index, convert in enumerate(processors) if convert is not None)
        return cls(statement, str(compiled), names, defaults, binds, results)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = [params.get(name, default) for name, default in zip(self.names, self.defaults, strict=True)]
        for name, value in zip(self.names, values, strict=True):
            if value is _REQUIRED:
                raise InvalidRequestError(f"A value is required for bind parameter {name!r}")
        return [value if bind is None else bind(value) for bind, value in zip(self.binds, values, strict=True)]

    def rows(self, records: list[asyncpg.Record]) -> list[list[Any]]:
        rows = [list(record) for record in records]
        for row in rows:
            for index, convert in self.results:
                row[index] = convert(row[index])
        return rows


# What asyncpg raises when the connection, not the statement, is the problem; but its InterfaceError
# also covers a value it cannot encode (a ValueError), which leaves the connection as good as it was.
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


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


class Database:
    """The engine and its session factory, owned by the application's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.outage = Outage()
        event.listen(self.engine.sync_engine, "connect", self.outage.connected)
        event.listen(self.engine.sync_engine, "checkout", self.outage.checked_out)
        self.sessionmaker = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        # The same pool, for statements that need no transaction around them: no BEGIN and no
        # COMMIT/ROLLBACK round trip. A single statement still sees one snapshot and is atomic.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # With asyncpg, `read_rows`, `write_rows` and `transaction` run prebuilt statements on the driver itself.
        self._direct = self.engine.dialect.driver == "asyncpg"
        self._plans: dict[tuple[int, frozenset[str]], _Plan] = {}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection on which each statement commits on its own (see ``_autocommit``).

        For reads, and for a write that is one statement; anything that must be atomic across
        statements belongs in a transaction (`transaction`, or a session's).
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

    async def read_rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one prebuilt read-only statement, in column order; repeated once if its connection died.

        For the hot paths (a page of todos, the feed). With asyncpg the statement runs on the
        driver connection: SQLAlchemy's per-execution work (execution context, cursor adapter,
        result objects) was about a tenth of a whole `GET /todos`. The SQL is SQLAlchemy's own,
        compiled once; the values and columns go through the same type conversions; errors come
        out as the same SQLAlchemy exceptions. Build the statement once with bound parameters.
        """
        if not self._direct:
            return await self.read(lambda connection: _all_rows(connection, statement, params))
        plan = self._plan(statement, params)
        try:
            return await self._run(plan, params)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return await self._run(plan, params)

    async def write_rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """Run one prebuilt write statement as its own transaction (never repeated); its RETURNING rows."""
        if not self._direct:
            async with self.autocommit() as connection:
                return await _all_rows(connection, statement, params)
        return await self._run(self._plan(statement, params), params)

    async def write_together(self, steps: Sequence[tuple[Executable, Mapping[str, Any]]]) -> None:
        """Run prebuilt write statements in order, in one transaction (never repeated)."""
        async with self.transaction() as transaction:
            for statement, params in steps:
                await transaction.rows(statement, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction for prebuilt statements, committed when the block ends, else rolled back.

        For a short piece of work of a few statements, where a session's unit of work would cost
        more than the statements themselves (a sign-in, a token refresh). With asyncpg it runs on
        the pooled driver connection as `read_rows` does; elsewhere in an ordinary transaction.
        A statement that failed spoils the transaction on every backend: even if the block caught
        the error, nothing is committed and the block's end raises `InvalidRequestError`.
        """
        if not self._direct:
            async with self.engine.begin() as connection:
                work = Transaction(self, connection=connection)
                yield work
                work.refuse_if_failed()
            return
        pooled = await self._checkout()
        try:
            driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]  # never None here
            transaction = driver.transaction()
            await self._on_driver(pooled, driver, "BEGIN", transaction.start())
            try:
                work = Transaction(self, driver=(pooled, driver))
                yield work
                work.refuse_if_failed()
            except Exception:
                if not driver.is_closed():
                    try:
                        await self._on_driver(pooled, driver, "ROLLBACK", transaction.rollback())
                    except Exception:  # the error that got here is the one to report
                        # The pool knows nothing of this transaction: never hand it out still open.
                        if pooled.is_valid:
                            await greenlet_spawn(pooled.invalidate)
                raise
            except BaseException:
                # Cancelled inside the block: the pool knows nothing of this transaction and would
                # hand the connection out with it still open, so the connection is not reused
                # (a statement cancelled midway has dropped it already).
                if pooled.is_valid:
                    await greenlet_spawn(pooled.invalidate)
                raise
            await self._on_driver(pooled, driver, "COMMIT", transaction.commit())
        finally:
            await greenlet_spawn(pooled.close)

    async def _checkout(self) -> PoolProxiedConnection:
        """A pooled connection for the driver paths; a failed connect raised as SQLAlchemy's error.

        `engine.connect()` wraps the driver's error in SQLAlchemy's own; the raw pool does not.
        """
        try:
            return await self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(None, None, exc, self.engine.dialect.loaded_dbapi.Error) from exc

    def _plan(self, statement: Executable, params: Mapping[str, Any]) -> _Plan:
        # An INSERT without explicit values compiles to the columns it is given: key by those too.
        keys = frozenset(params) if getattr(statement, "is_dml", False) else frozenset()
        plan = self._plans.get((id(statement), keys))
        if plan is None:
            plan = _Plan.compile(statement, self.engine.dialect, sorted(keys))
            self._plans[(id(statement), keys)] = plan
        return plan

    async def _run(self, plan: _Plan, params: Mapping[str, Any]) -> list[list[Any]]:
        args = plan.args(params)  # a missing value fails before any I/O
        # Checked out and returned through the pool as any connection is (its checkout check included);
        # outside a transaction, as the autocommit connections are.
        pooled = await self._checkout()
        try:
            driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]  # never None here
            records = await self._on_driver(pooled, driver, plan.sql, driver.fetch(plan.sql, *args))
        finally:
            await greenlet_spawn(pooled.close)
        return plan.rows(records)

    @staticmethod
    async def _on_driver(
        pooled: PoolProxiedConnection, driver: asyncpg.Connection, sql: str, work: Awaitable[_T]
    ) -> _T:
        """Await driver work, with asyncpg's errors as SQLAlchemy's and a dead connection dropped."""
        try:
            return await work
        except Exception as exc:
            raise await _translated(pooled, driver, sql, exc) from exc
        except BaseException:
            # Cancelled mid-statement: the connection's state is unknown, so it is not reused.
            await greenlet_spawn(pooled.invalidate)
            raise

    async def dispose(self) -> None:
        await self.engine.dispose()


class Transaction:
    """Prebuilt statements inside `Database.transaction`: on the driver connection, or through SQLAlchemy."""

    def __init__(
        self,
        database: Database,
        *,
        connection: AsyncConnection | None = None,
        driver: tuple[PoolProxiedConnection, asyncpg.Connection] | None = None,
    ) -> None:
        self._database = database
        self._connection = connection
        self._driver = driver
        self._failed = False

    def refuse_if_failed(self) -> None:
        if self._failed:
            raise InvalidRequestError("a statement in this transaction failed; nothing was committed")

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The rows of one prebuilt statement (its RETURNING rows for a write), in column order."""
        try:
            if self._driver is None:
                assert self._connection is not None
                return await _all_rows(self._connection, statement, params)
            pooled, driver = self._driver
            plan = self._database._plan(statement, params)
            args = plan.args(params)
            return plan.rows(await Database._on_driver(pooled, driver, plan.sql, driver.fetch(plan.sql, *args)))
        except Exception:
            self._failed = True
            raise


async def _all_rows(connection: AsyncConnection, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any]:
    result = await connection.execute(statement, dict(params))
    return result.all() if result.returns_rows else []  # a write without RETURNING has none


async def _translated(
    pooled: PoolProxiedConnection, driver: asyncpg.Connection, sql: str, exc: Exception
) -> DBAPIError:
    """asyncpg's error as the SQLAlchemy exception the error handlers know; a dead connection is dropped."""
    refused_value = isinstance(exc, (asyncpg.DataError, ValueError))
    lost = (isinstance(exc, _CONNECTION_ERRORS) and not refused_value) or driver.is_closed()
    if lost:
        await greenlet_spawn(pooled.invalidate, exc)
    kind: type[DBAPIError]
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        kind = IntegrityError
    elif refused_value and not lost:
        kind = DataError
    elif lost or isinstance(exc, asyncpg.QueryCanceledError):
        kind = OperationalError
    else:
        kind = DBAPIError
    return kind(sql, None, exc, connection_invalidated=lost)
