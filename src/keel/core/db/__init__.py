"""The database as the services see it: an ORM session, prebuilt statements, short transactions.

`keel.core.db.engine` makes the engines and pools; this module runs statements on them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.config import Settings
from keel.core.db.engine import (
    SQLITE_LOWER,
    FairAsyncPool,
    FairQueue,
    Outage,
    create_engine,
    request_server_settings,
)
from keel.core.db.prebuilt import NoRows, Prebuilt, RowT
from keel.core.logging import get_logger

__all__ = [
    "SQLITE_LOWER",
    "CommitHook",
    "Database",
    "FairAsyncPool",
    "FairQueue",
    "NoRows",
    "Outage",
    "Prebuilt",
    "StatementHook",
    "Transaction",
    "after_commit",
    "create_engine",
    "request_server_settings",
]

_T = TypeVar("_T")

# Called with the SQL of each statement the driver path runs, before it runs (see `Database.statement_hooks`).
StatementHook = Callable[[str], None]
# Called with what a committed transaction left for after its commit (see `after_commit`).
CommitHook = Callable[[Sequence[object]], None]

log = get_logger("keel.db")

# Where a session keeps what waits for its commit, and the Database it belongs to.
_DEFERRED = "keel_after_commit"
_DATABASE = "keel_database"


# What asyncpg raises when the connection, not the statement, is the problem; but its InterfaceError
# also covers a value it cannot encode (a ValueError), which leaves the connection as good as it was.
# Where a pooled connection notes the last `Database._schema_generation` its prepared statements match.
_SCHEMA_GENERATION = "keel_schema_generation"

_CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


class Database:
    """The engine and its session factory, owned by the application's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self.outage = Outage()
        event.listen(self.engine.sync_engine, "connect", self.outage.connected)
        event.listen(self.engine.sync_engine, "checkout", self.outage.checked_out)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False, info={_DATABASE: self}
        )
        # The same pool, for statements that need no transaction around them: no BEGIN and no
        # COMMIT/ROLLBACK round trip. A single statement still sees one snapshot and is atomic.
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # With asyncpg, `rows`, `first` and `transaction` run prebuilt statements on the driver itself.
        self._direct = self.engine.dialect.driver == "asyncpg"
        # Told the SQL of every statement the driver path runs, before it runs. SQLAlchemy's cursor
        # events never see those statements, so this is where tests (and tracing) can see them;
        # everything else (the ORM, and every statement on SQLite) fires the cursor events as usual.
        self.statement_hooks: list[StatementHook] = []
        # Counts the schema changes the driver path has met (see `_schema_changed`).
        self._schema_generation = 0
        # Told, once a transaction has committed, what its work left for then (see `after_commit`):
        # the live update events of its changes, the revocations it made.
        self.commit_hooks: list[CommitHook] = []

    def committed(self, items: Sequence[object]) -> None:
        """Hand what a committed change left to the commit hooks; a failing hook fails nothing else."""
        if not items:
            return
        for hook in self.commit_hooks:
            try:
                hook(items)
            except Exception:  # the change is committed: its request must still succeed
                log.exception("commit_hook_failed")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            yield session

    async def rows(self, prebuilt: Prebuilt[RowT], /, **params: Any) -> list[RowT]:
        """The rows of one prebuilt statement (a write's RETURNING rows), run on its own.

        A read runs again, once, on a fresh connection if its connection turns out to have died (the
        checkout check sees a hang-up only once the event loop has); a write never runs twice. A
        write is its own transaction: for several statements together, use `transaction`.
        With asyncpg the statement runs on the driver connection: SQLAlchemy's per-execution work
        (execution context, cursor adapter, result objects) was about a tenth of a whole
        `GET /todos`. The SQL is SQLAlchemy's own, compiled once; the values and columns go through
        the same type conversions; errors come out as the same SQLAlchemy exceptions.
        """
        try:
            return await self._rows_once(prebuilt, params)
        except DBAPIError as exc:
            if not (prebuilt.is_read and exc.connection_invalidated):
                raise
        return await self._rows_once(prebuilt, params)

    async def first(self, prebuilt: Prebuilt[RowT], /, **params: Any) -> RowT | None:
        """The first row of one prebuilt statement, or None (see `rows`)."""
        found = await self.rows(prebuilt, **params)
        return found[0] if found else None

    async def _rows_once(self, prebuilt: Prebuilt[RowT], params: Mapping[str, Any]) -> list[RowT]:
        if not self._direct:
            # AUTOCOMMIT: no BEGIN and no COMMIT/ROLLBACK round trip; one statement is atomic anyway.
            async with self._autocommit.connect() as connection:
                return await _orm_rows(connection, prebuilt, params)
        plan = prebuilt.plan(self.engine.dialect)
        args = plan.args(params)  # a missing value fails before any I/O
        # Checked out and returned through the pool as any connection is (its checkout check included);
        # outside a transaction, as the autocommit connections are.
        pooled = await self._checkout()
        try:
            driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]  # never None here
            self._announce(plan.sql)
            fetching = _driver_fetch(driver, plan.sql, args, with_values=prebuilt.plan_with_values)
            records = await self._on_driver(pooled, driver, plan.sql, fetching)
        finally:
            await greenlet_spawn(pooled.close)
        return [prebuilt.shape(values) for values in plan.values(records)]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One transaction for prebuilt statements, committed when the block ends, else rolled back.

        For a short piece of work of a few statements, where a session's unit of work would cost
        more than the statements themselves (a sign-in, a token refresh). With asyncpg it runs on
        the pooled driver connection as `rows` does; elsewhere in an ordinary transaction.
        A statement that failed spoils the transaction on every backend: even if the block caught
        the error, nothing is committed and the block's end raises `InvalidRequestError`.
        """
        if not self._direct:
            async with self.engine.begin() as connection:
                work = Transaction(self, connection=connection)
                yield work
                work.refuse_if_failed()
            self.committed(work.deferred)
            return
        pooled = await self._checkout()
        try:
            driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]  # never None here
            began = driver.transaction()
            await self._on_driver(pooled, driver, "BEGIN", began.start())
            work = Transaction(self, driver=(pooled, driver), began=began)
            try:
                yield work
                work.refuse_if_failed()
            except Exception:
                if not driver.is_closed():
                    try:
                        await self._on_driver(pooled, driver, "ROLLBACK", work.began.rollback())
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
            await self._on_driver(pooled, driver, "COMMIT", work.began.commit())
        finally:
            await greenlet_spawn(pooled.close)
        self.committed(work.deferred)

    async def _checkout(self) -> PoolProxiedConnection:
        """A pooled connection for the driver paths; a failed connect raised as SQLAlchemy's error.

        `engine.connect()` wraps the driver's error in SQLAlchemy's own; the raw pool does not.
        """
        try:
            pooled = await self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(None, None, exc, self.engine.dialect.loaded_dbapi.Error) from exc
        if pooled.info.get(_SCHEMA_GENERATION, 0) != self._schema_generation:
            # Another connection found the schema changed: this one's prepared statements are as old.
            driver: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]  # never None here
            await driver.reload_schema_state()
            pooled.info[_SCHEMA_GENERATION] = self._schema_generation
        return pooled

    async def _schema_changed(self, pooled: PoolProxiedConnection, driver: asyncpg.Connection) -> None:
        """A statement prepared on `driver` no longer matches its tables (a migration ran meanwhile).

        asyncpg prepares each statement once per connection and, outside a transaction, prepares
        it again itself when PostgreSQL refuses the old plan. Inside one the refusal spoils the
        transaction, so each connection's statements are dropped as soon as any connection meets
        it: SQLAlchemy's asyncpg dialect does the same for the statements it prepares.
        """
        await driver.reload_schema_state()
        self._schema_generation += 1
        pooled.info[_SCHEMA_GENERATION] = self._schema_generation

    def _announce(self, sql: str) -> None:
        for hook in self.statement_hooks:
            hook(sql)

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
        began: asyncpg.transaction.Transaction | None = None,
    ) -> None:
        self._database = database
        self._connection = connection
        self._driver = driver
        self._began = began
        self._ran = False
        self._failed = False
        self.deferred: list[object] = []

    @property
    def began(self) -> asyncpg.transaction.Transaction:
        """The driver's transaction, which `_fetch` may have begun again."""
        assert self._began is not None
        return self._began

    def refuse_if_failed(self) -> None:
        if self._failed:
            raise InvalidRequestError("a statement in this transaction failed; nothing was committed")

    async def rows(self, prebuilt: Prebuilt[RowT], /, **params: Any) -> list[RowT]:
        """The rows of one prebuilt statement in this transaction (a write's RETURNING rows)."""
        try:
            if self._driver is None:
                assert self._connection is not None
                return await _orm_rows(self._connection, prebuilt, params)
            pooled, driver = self._driver
            plan = prebuilt.plan(self._database.engine.dialect)
            args = plan.args(params)
            records = await self._fetch(pooled, driver, plan.sql, args, with_values=prebuilt.plan_with_values)
            return [prebuilt.shape(values) for values in plan.values(records)]
        except Exception:
            self._failed = True
            raise

    async def first(self, prebuilt: Prebuilt[RowT], /, **params: Any) -> RowT | None:
        """The first row of one prebuilt statement in this transaction, or None."""
        found = await self.rows(prebuilt, **params)
        return found[0] if found else None

    async def _fetch(
        self, pooled: PoolProxiedConnection, driver: asyncpg.Connection, sql: str, args: list[Any], *, with_values: bool
    ) -> list[asyncpg.Record]:
        self._database._announce(sql)
        try:
            records = await Database._on_driver(pooled, driver, sql, _driver_fetch(driver, sql, args, with_values))
        except DBAPIError as exc:
            if not isinstance(exc.orig, asyncpg.InvalidCachedStatementError):
                raise
            await self._database._schema_changed(pooled, driver)
            if self._ran:
                # What ran before is lost with the transaction, and its block cannot be run again from
                # here. As after a lost connection, this one is dropped and the answer is 503 "try again".
                await greenlet_spawn(pooled.invalidate, exc.orig)
                raise OperationalError(sql, None, exc.orig, connection_invalidated=True) from exc
            # Nothing has happened in this transaction yet: begin it again, and prepare the statement anew.
            await Database._on_driver(pooled, driver, "ROLLBACK", self.began.rollback())
            self._began = driver.transaction()
            await Database._on_driver(pooled, driver, "BEGIN", self._began.start())
            self._database._announce(sql)
            records = await Database._on_driver(pooled, driver, sql, _driver_fetch(driver, sql, args, with_values))
        self._ran = True
        return records


async def _driver_fetch(
    driver: asyncpg.Connection, sql: str, args: list[Any], with_values: bool
) -> list[asyncpg.Record]:
    """Run a statement on asyncpg: from its statement cache, or (`with_values`, see `Prebuilt`)
    prepared afresh, which PostgreSQL plans with these values (a statement's first calls always are)."""
    if not with_values:
        return await driver.fetch(sql, *args)
    statement = await driver.prepare(sql)
    return await statement.fetch(*args)


def after_commit(target: AsyncSession | Transaction, item: object) -> None:
    """Keep `item` until `target` commits, then give it to its database's commit hooks.

    For what must happen only once a change is durable (announcing it to live streams): nothing is
    given for a transaction that rolls back or is never committed (a retried edit's first try).
    """
    if isinstance(target, Transaction):
        target.deferred.append(item)
    else:
        target.sync_session.info.setdefault(_DEFERRED, []).append(item)


@event.listens_for(Session, "after_commit")
def _session_committed(session: Session) -> None:
    items = session.info.pop(_DEFERRED, None)
    database = session.info.get(_DATABASE)
    if items and isinstance(database, Database):
        database.committed(items)


@event.listens_for(Session, "after_rollback")
def _session_rolled_back(session: Session) -> None:
    session.info.pop(_DEFERRED, None)


async def _orm_rows(connection: AsyncConnection, prebuilt: Prebuilt[RowT], params: Mapping[str, Any]) -> list[RowT]:
    result = await connection.execute(prebuilt.statement, dict(params))
    return [prebuilt.shape(tuple(row)) for row in result.all()] if result.returns_rows else []


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
