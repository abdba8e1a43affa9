"""Database: reads that met a dead connection are repeated, and prebuilt statements run the same on
every backend (on asyncpg straight on the driver connection, with SQLAlchemy's conversions and errors)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple, cast
from unittest import mock

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InvalidRequestError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty
from sqlmodel import col

from keel.core.db import Database, FairAsyncPool, FairQueue, NoRows, Prebuilt, create_engine
from keel.main import create_app
from keel.models import Priority, Todo
from tests.conftest import base_settings, reset_postgres
from tests.factories import create_user, login


def _disconnect(*, invalidated: bool) -> DBAPIError:
    return DBAPIError(
        "SELECT 1", None, ConnectionError("server closed the connection"), connection_invalidated=invalidated
    )


async def test_a_read_is_repeated_once_after_its_connection_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(base_settings(tmp_path))
    calls = 0
    run_once = database._rows_once

    async def dying_once(prebuilt: Any, params: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise _disconnect(invalidated=True)
        return await run_once(prebuilt, params)

    monkeypatch.setattr(database, "_rows_once", dying_once)
    try:
        assert await database.first(q(sa.select(sa.literal(41) + 1))) == (42,)
    finally:
        await database.dispose()
    assert calls == 2


@pytest.mark.parametrize(("invalidated", "read", "calls_made"), [(False, True, 1), (True, True, 2), (True, False, 1)])
async def test_other_errors_a_second_failure_and_a_failed_write_are_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, invalidated: bool, read: bool, calls_made: int
) -> None:
    database = Database(base_settings(tmp_path))
    calls = 0

    async def failing(prebuilt: Any, params: Any) -> Any:
        nonlocal calls
        calls += 1
        raise _disconnect(invalidated=invalidated)

    monkeypatch.setattr(database, "_rows_once", failing)
    try:
        with pytest.raises(DBAPIError):
            await database.rows(Prebuilt(sa.select(sa.literal(1)), tuple, read=read))
    finally:
        await database.dispose()
    assert calls == calls_made


# --- rows / first / transaction: prebuilt statements, on asyncpg run on the driver connection --------
_TODO_NAMES = ("title", "description", "priority", "due_date", "owner_id", "completed", "created_at", "updated_at")


def _todo_values(owner_id: int, **changes: object) -> dict[str, object]:
    now = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone(timedelta(hours=2)))
    values: dict[str, object] = {
        "title": "Water the plants",
        "description": None,
        "priority": Priority.HIGH,
        "due_date": date(2026, 6, 1),
        "owner_id": owner_id,
        "completed": False,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "labels": [],
    }
    return {**values, **changes}


_INSERT = Prebuilt(
    sa.insert(Todo).returning(*(col(getattr(Todo, name)) for name in ("id", *_TODO_NAMES))),
    tuple,
    binds=[*_TODO_NAMES, "version", "labels"],
)
_BY_OWNER = Prebuilt(
    sa.select(col(Todo.title), col(Todo.priority), col(Todo.created_at))
    .where(col(Todo.owner_id) == sa.bindparam("owner_id"))
    .order_by(col(Todo.id)),
    tuple,
)


def q(statement: Any) -> Prebuilt[tuple[Any, ...]]:
    """A statement of this test's own, prebuilt where it is used (the module's are prebuilt already)."""
    return statement if isinstance(statement, Prebuilt) else Prebuilt(statement, tuple)


async def test_rows_come_back_converted_the_way_the_orm_converts_them(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)
    ((todo_id, *inserted),) = await database.rows(_INSERT, **_todo_values(owner.id))
    rows = await database.rows(_BY_OWNER, owner_id=owner.id, unused="ignored")

    assert dict(zip(_TODO_NAMES, inserted, strict=True))["priority"] is Priority.HIGH
    assert [tuple(row) for row in rows] == [
        ("Water the plants", Priority.HIGH, datetime(2026, 5, 4, 1, 2, 1, tzinfo=UTC))
    ]
    created = rows[0][2]
    assert created.tzinfo is UTC  # normalised by UTCDateTime, as on every other path
    # A literal in a statement is bound with its own value, as SQLAlchemy binds it.
    assert [list(row) for row in await database.rows(q(sa.select(sa.literal(41) + 1)))] == [[42]]
    async with database.session() as session:
        stored = await session.get(Todo, todo_id)
    assert stored is not None
    assert (stored.title, stored.priority, stored.created_at) == tuple(rows[0])


async def test_the_errors_are_the_ones_the_error_handlers_know(app: FastAPI) -> None:
    database: Database = app.state.database
    with pytest.raises(IntegrityError):
        await database.rows(_INSERT, **_todo_values(owner_id=999_999))  # no such user
    if database.engine.dialect.name == "postgresql":  # SQLite stores any integer
        with pytest.raises(DataError):
            await database.rows(_BY_OWNER, owner_id=2**40)  # wider than the column
    with pytest.raises(SQLAlchemyError, match="A value is required for bind parameter 'owner_id'"):
        await database.rows(_BY_OWNER)
    # None of that cost the pool its connections: the next statement just works.
    assert await database.rows(_BY_OWNER, owner_id=1) == []


async def test_statements_written_together_land_together_or_not_at_all(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)

    async def together(*bodies: dict[str, object], read_after: bool = False) -> None:
        async with database.transaction() as transaction:
            for body in bodies:
                await transaction.rows(_INSERT, **body)
            if read_after:
                await transaction.rows(_BY_OWNER)  # its owner_id is missing

    await together(_todo_values(owner.id, title="First"), _todo_values(owner.id, title="Second"))
    with pytest.raises(IntegrityError):  # the second refers to no user: the first goes with it
        await together(_todo_values(owner.id, title="Third"), _todo_values(owner_id=999_999))
    with pytest.raises(SQLAlchemyError, match="A value is required for bind parameter 'owner_id'"):
        await together(_todo_values(owner.id, title="Fourth"), read_after=True)

    rows = await database.rows(_BY_OWNER, owner_id=owner.id)
    assert [row[0] for row in rows] == ["First", "Second"]


async def test_a_transaction_commits_when_its_block_ends_and_rolls_back_when_it_raises(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)

    async with database.transaction() as transaction:
        ((_, title, *_),) = await transaction.rows(_INSERT, **_todo_values(owner.id, title="Kept"))
        # Inside the block the transaction sees its own write.
        assert [row[0] for row in await transaction.rows(_BY_OWNER, owner_id=owner.id)] == ["Kept"]

    async def change_of_mind() -> None:
        async with database.transaction() as transaction:
            await transaction.rows(_INSERT, **_todo_values(owner.id, title="Undone"))
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await change_of_mind()

    assert title == "Kept"
    assert [row[0] for row in await database.rows(_BY_OWNER, owner_id=owner.id)] == ["Kept"]


async def test_a_statement_that_failed_inside_a_transaction_spoils_it_even_if_caught(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)

    async def carry_on_after_an_error() -> None:
        async with database.transaction() as transaction:
            await transaction.rows(_INSERT, **_todo_values(owner.id, title="Before the error"))
            with pytest.raises(IntegrityError):
                await transaction.rows(_INSERT, **_todo_values(owner_id=999_999))

    # PostgreSQL would discard everything at COMMIT anyway and SQLite would keep the first row:
    # on both, the block's end says so and nothing is kept.
    with pytest.raises(InvalidRequestError, match="nothing was committed"):
        await carry_on_after_an_error()
    assert await database.rows(_BY_OWNER, owner_id=owner.id) == []


async def test_a_naive_datetime_is_refused_before_it_is_sent(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)
    with pytest.raises((ValueError, StatementError)):  # StatementError: SQLAlchemy wraps it
        await database.rows(_INSERT, **_todo_values(owner.id, created_at=datetime(2026, 1, 1)))
    assert await database.rows(_BY_OWNER, owner_id=owner.id) == []


async def _kill_pooled_connections(database: Database) -> None:
    """Terminate the server side of every connection in the pool, the way a restart would."""
    async with database.engine.connect() as connection:
        pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    killer = await asyncpg.connect(_plain_dsn(str(database.engine.url.render_as_string(hide_password=False))))
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()


def _plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_a_read_on_a_connection_the_server_dropped_is_repeated(postgres_url: str, tmp_path: Path) -> None:
    await reset_postgres(postgres_url)
    # One pooled connection, whose socket the event loop has not yet seen closed when the read starts:
    # the checkout check cannot catch it, the statement fails, and the read runs again on a new one.
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    try:
        assert await database.rows(_BY_OWNER, owner_id=1) == []
        await _kill_pooled_connections(database)
        assert await database.rows(_BY_OWNER, owner_id=1) == []
    finally:
        await database.dispose()


async def test_a_write_on_a_dropped_connection_is_not_repeated(postgres_url: str, tmp_path: Path) -> None:
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    try:
        await database.rows(_BY_OWNER, owner_id=1)
        await _kill_pooled_connections(database)
        outcomes: list[object] = []
        try:
            await database.rows(_INSERT, **_todo_values(owner_id=1))
        except OperationalError as exc:
            outcomes.append(exc.connection_invalidated)
        # Either the checkout check saw the hang-up first (a fresh connection; the user does not
        # exist, so the write fails on its own terms), or the statement did and nothing is retried.
        except IntegrityError:
            outcomes.append("fresh connection")
        assert outcomes in ([True], ["fresh connection"])
        assert await database.rows(_BY_OWNER, owner_id=1) == []  # and the pool recovered
    finally:
        await database.dispose()


async def test_a_statement_cancelled_midway_does_not_return_its_connection(postgres_url: str, tmp_path: Path) -> None:
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    slow = sa.select(sa.func.pg_sleep(sa.bindparam("seconds", type_=sa.Float)))
    try:
        task = asyncio.create_task(database.rows(q(slow), seconds=5))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = asyncio.get_running_loop().time()
        assert await database.rows(_BY_OWNER, owner_id=1) == []
        assert asyncio.get_running_loop().time() - started < 2  # not stuck behind the cancelled sleep
    finally:
        await database.dispose()


async def test_a_connection_error_invalidates_and_the_read_runs_on_a_new_connection(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deterministic form of the race above: the statement itself reports the lost connection.
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    pid = sa.select(sa.func.pg_backend_pid())
    real_fetch = asyncpg.Connection.fetch
    failures = iter([asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")])

    async def flaky_fetch(self: asyncpg.Connection, query: str, *args: object) -> object:
        for failure in failures:
            raise failure
        return await real_fetch(self, query, *args)

    try:
        ((before,),) = await database.rows(q(pid))
        monkeypatch.setattr(asyncpg.Connection, "fetch", flaky_fetch)
        ((after,),) = await database.rows(q(pid))  # failed once, invalidated, repeated
        failures = iter([asyncpg.ConnectionDoesNotExistError("gone")])
        with pytest.raises(OperationalError) as raised:
            await database.rows(Prebuilt(pid, tuple, read=False))  # a write is never repeated
    finally:
        await database.dispose()
    assert after != before
    assert raised.value.connection_invalidated


async def test_a_timed_out_or_failing_statement_keeps_its_connection(postgres_url: str, tmp_path: Path) -> None:
    # Errors of the statement, not of the connection: mapped for the handlers (503 for a timeout,
    # 500 for anything else), and the one pooled connection goes on serving.
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    pid = sa.select(sa.func.pg_backend_pid())
    try:
        ((before,),) = await database.rows(q(pid))
        await database.rows(q(sa.select(sa.func.set_config("statement_timeout", "50", False))))
        with pytest.raises(OperationalError) as timed_out:
            await database.rows(q(sa.select(sa.func.pg_sleep(1))))
        with pytest.raises(DBAPIError) as failed:
            await database.rows(q(sa.select(sa.func.keel_no_such_function())))
        ((after,),) = await database.rows(q(pid))
    finally:
        await database.dispose()
    assert isinstance(timed_out.value.orig, asyncpg.QueryCanceledError)
    assert not timed_out.value.connection_invalidated
    assert type(failed.value) is DBAPIError
    assert isinstance(failed.value.orig, asyncpg.UndefinedFunctionError)
    assert not failed.value.connection_invalidated
    assert after == before


async def test_a_transaction_cancelled_inside_its_block_leaves_nothing_open_in_the_pool(
    postgres_url: str, tmp_path: Path
) -> None:
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    setting = sa.select(sa.func.current_setting("statement_timeout"))
    entered = asyncio.Event()

    async def interrupted() -> None:
        async with database.transaction() as transaction:
            # Lasts until the transaction ends: seen afterwards, the transaction was left open.
            await transaction.rows(q(sa.select(sa.func.set_config("statement_timeout", "1234", True))))
            entered.set()
            await asyncio.sleep(10)

    try:
        before = await database.rows(q(setting))
        task = asyncio.create_task(interrupted())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await database.rows(q(setting)) == before
        assert before != [("1234ms",)]
    finally:
        await database.dispose()


# --- the pool's queue: connections go to the checkouts in the order they began waiting ----------------
async def _checkout(queue: FairQueue, seconds: float = 5) -> Any:
    return await greenlet_spawn(queue.get, True, seconds)


async def test_a_returned_connection_goes_to_the_oldest_waiter_and_never_to_a_newcomer() -> None:
    queue = FairQueue(3)
    waiters = []
    for _ in range(3):
        waiters.append(asyncio.create_task(_checkout(queue)))
        await asyncio.sleep(0)  # each one waiting before the next arrives
    first, second, third = (cast(ConnectionPoolEntry, object()) for _ in range(3))

    queue.put_nowait(first)
    # Handed over, not left idle: a checkout arriving before the oldest waiter runs finds nothing.
    with pytest.raises(Empty):
        queue.get_nowait()
    queue.put_nowait(second)
    queue.put_nowait(third)

    assert [await waiter for waiter in waiters] == [first, second, third]
    assert queue.qsize() == 0


async def test_a_checkout_that_times_out_loses_nothing() -> None:
    queue = FairQueue(2)
    with pytest.raises(Empty):
        await _checkout(queue, seconds=0.05)
    connection = cast(ConnectionPoolEntry, object())
    queue.put_nowait(connection)
    assert queue.qsize() == 1  # idle for the next checkout, not handed to the one that gave up
    assert await _checkout(queue) is connection


async def test_a_connection_handed_to_a_cancelled_checkout_is_passed_on() -> None:
    queue = FairQueue(2)
    cancelled = asyncio.create_task(_checkout(queue))
    await asyncio.sleep(0)
    later = asyncio.create_task(_checkout(queue))
    await asyncio.sleep(0)
    connection = cast(ConnectionPoolEntry, object())
    queue.put_nowait(connection)  # goes to the first waiter...
    cancelled.cancel()  # ...which is cancelled before it could take it
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await later is connection


async def test_postgres_engines_use_the_fair_queue(postgres_url: str, tmp_path: Path) -> None:
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=2, db_max_overflow=0))
    try:
        assert isinstance(database.engine.pool, FairAsyncPool)
        assert isinstance(database.engine.pool._pool, FairQueue)  # SQLAlchemy's own hook for the queue
        # Five statements at once on two connections: each waits its turn and none fails.
        rows = await asyncio.gather(*(database.rows(q(sa.select(sa.literal(n)))) for n in range(5)))
        assert [row[0][0] for row in rows] == list(range(5))
        assert database.engine.pool.checkedout() == 0
    finally:
        await database.dispose()


async def test_a_connection_handed_to_a_cancelled_checkout_goes_back_even_to_a_full_queue() -> None:
    queue = FairQueue(1)
    cancelled = asyncio.create_task(_checkout(queue))
    await asyncio.sleep(0)
    handed, returned = (cast(ConnectionPoolEntry, object()) for _ in range(2))
    queue.put_nowait(handed)  # to the waiter...
    queue.put_nowait(returned)  # ...and, nobody else waiting, the queue is full
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    # Neither is lost: the pool closes the surplus when the next one comes back.
    assert queue.qsize() == 2
    assert {queue.get_nowait(), queue.get_nowait()} == {handed, returned}


async def test_a_checkout_whose_connection_came_as_its_time_ran_out_takes_it() -> None:
    queue = FairQueue(1)
    connection = cast(ConnectionPoolEntry, object())
    waiting = asyncio.create_task(_checkout(queue, seconds=0.05))
    await asyncio.sleep(0)
    queue._waiters[0].set_result(connection)
    await asyncio.sleep(0.06)  # the timeout fires before the waiter runs again
    assert await waiting is connection
    assert queue.qsize() == 0


# --- a migration on a live system: statements prepared before it are prepared again ---------------
_PROBE = sa.table("keel_probe_schema_change", sa.column("id", sa.Integer), sa.column("label", sa.String))
_PROBE_LABEL = Prebuilt(sa.select(_PROBE.c.label).where(_PROBE.c.id == sa.bindparam("id")), tuple)


async def test_a_statement_prepared_before_a_column_changed_type_is_prepared_again(
    postgres_url: str, tmp_path: Path
) -> None:
    # One pooled connection, so the second transaction meets the plan the first one prepared.
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    other = await asyncpg.connect(_plain_dsn(postgres_url))
    try:
        await other.execute(
            "DROP TABLE IF EXISTS keel_probe_schema_change;"
            "CREATE TABLE keel_probe_schema_change (id integer PRIMARY KEY, label varchar(20));"
            "INSERT INTO keel_probe_schema_change VALUES (1, 'before')"
        )
        async with database.transaction() as transaction:
            assert [tuple(row) for row in await transaction.rows(_PROBE_LABEL, id=1)] == [("before",)]

        # What `keel migrate` may do while the application runs: the result type changes under the plan.
        await other.execute("ALTER TABLE keel_probe_schema_change ALTER COLUMN label TYPE text")

        # Inside a transaction PostgreSQL refuses the old plan and asyncpg cannot prepare it again by itself.
        async with database.transaction() as transaction:
            assert [tuple(row) for row in await transaction.rows(_PROBE_LABEL, id=1)] == [("before",)]
        await other.execute("ALTER TABLE keel_probe_schema_change ALTER COLUMN label TYPE varchar(30)")
        assert [tuple(row) for row in await database.rows(_PROBE_LABEL, id=1)] == [("before",)]
    finally:
        await other.execute("DROP TABLE IF EXISTS keel_probe_schema_change")
        await other.close()
        await database.dispose()


async def test_a_stale_plan_after_the_first_statement_of_a_transaction_is_a_lost_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    other = await asyncpg.connect(_plain_dsn(postgres_url))
    try:
        await other.execute(
            "DROP TABLE IF EXISTS keel_probe_schema_change;"
            "CREATE TABLE keel_probe_schema_change (id integer PRIMARY KEY, label varchar(20));"
            "INSERT INTO keel_probe_schema_change VALUES (1, 'before')"
        )
        async with database.transaction() as transaction:
            await transaction.rows(_PROBE_LABEL, id=1)
        await other.execute("ALTER TABLE keel_probe_schema_change ALTER COLUMN label TYPE text")

        # The first statement has run: the transaction cannot be begun again, so it fails as a lost
        # connection does (the handlers answer 503, try again), and the connection is not reused.
        async def two_statements() -> None:
            async with database.transaction() as transaction:
                await transaction.rows(q(sa.select(sa.literal(1))))
                await transaction.rows(_PROBE_LABEL, id=1)

        with pytest.raises(OperationalError) as failed:
            await two_statements()
        assert failed.value.connection_invalidated
        async with database.transaction() as transaction:
            assert [tuple(row) for row in await transaction.rows(_PROBE_LABEL, id=1)] == [("before",)]
    finally:
        await other.execute("DROP TABLE IF EXISTS keel_probe_schema_change")
        await other.close()
        await database.dispose()


async def test_a_refresh_after_a_migration_changed_a_column_it_reads_is_never_a_500(
    postgres_url: str, tmp_path: Path
) -> None:
    await reset_postgres(postgres_url)
    # One pooled connection: the next refresh meets the plans the first one prepared.
    app = create_app(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    other = await asyncpg.connect(_plain_dsn(postgres_url))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                tokens = await login(client, await create_user(app))
                first = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens.refresh})
                assert first.status_code == 200, first.text
                # `keel migrate` on the live system changes a column the refresh transaction's second
                # statement reads: that transaction cannot be begun again, so it is a 503 (try again)
                # and nothing of it is kept; the next attempt, with the same token, goes through.
                await other.execute("ALTER TABLE user_session ALTER COLUMN user_id TYPE bigint")
                token = {"refresh_token": first.json()["refresh_token"]}
                during = await client.post("/api/v1/auth/refresh", json=token)
                assert during.status_code == 503, during.text
                after = await client.post("/api/v1/auth/refresh", json=token)
                assert after.status_code == 200, after.text
    finally:
        await other.execute("ALTER TABLE user_session ALTER COLUMN user_id TYPE integer")
        await other.close()


class _Titled(NamedTuple):
    title: str
    priority: Priority
    created_at: datetime


async def test_rows_come_back_as_the_prebuilt_statements_named_tuple(app: FastAPI) -> None:
    database: Database = app.state.database
    owner = await create_user(app)
    by_owner = Prebuilt(_BY_OWNER.statement, _Titled)
    await database.rows(_INSERT, **_todo_values(owner.id, title="Named"))

    row = await database.first(by_owner, owner_id=owner.id)
    missing = await database.first(by_owner, owner_id=owner.id + 1)

    assert isinstance(row, _Titled)
    assert (row.title, row.priority) == ("Named", Priority.HIGH)
    assert missing is None


def test_a_prebuilt_statement_keeps_its_own_plan_per_dialect(app: FastAPI) -> None:
    # The plan lives on the statement: nothing is cached by identity, so a statement built per
    # call is compiled per call and leaves nothing behind.
    dialect = app.state.database.engine.dialect
    assert _BY_OWNER.plan(dialect) is _BY_OWNER.plan(dialect)
    assert _BY_OWNER.plan(dialect) is not Prebuilt(_BY_OWNER.statement, tuple).plan(dialect)
    assert not hasattr(app.state.database, "_plans")


def test_a_prebuilt_insert_must_bind_each_column_whose_default_python_makes() -> None:
    # The driver path has no execution context to run such a default in: the row would get NULL.
    from sqlalchemy.dialects import postgresql

    lacking = Prebuilt(sa.insert(Todo), NoRows, binds=["owner_id", "title", "completed", "priority"])
    with pytest.raises(ValueError, match=r"\['created_at', 'labels', 'updated_at', 'version'\]"):
        lacking.plan(postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]


async def test_request_connections_run_without_jit_and_with_the_timeouts(postgres_url: str, tmp_path: Path) -> None:
    # JIT compiled a generic feed plan for 242 of its 280 ms (bench/REPORT.md); request statements
    # read pages by index, so their connections turn it off. A migration's connection keeps the
    # server's defaults, timeouts included, since its work may rightly run long.
    await reset_postgres(postgres_url)
    settings = base_settings(tmp_path, database_url=postgres_url, db_statement_timeout_seconds=7)
    shown = sa.select(
        sa.func.current_setting("jit"),
        sa.func.current_setting("statement_timeout"),
        sa.func.current_setting("lock_timeout"),
    )
    database = Database(settings)
    try:
        assert await database.rows(q(shown)) == [("off", "7s", mock.ANY)]
    finally:
        await database.dispose()
    migrations = create_engine(settings, request_timeouts=False)
    try:
        async with migrations.connect() as connection:
            jit, statement_timeout, _ = (await connection.execute(shown)).one()
    finally:
        await migrations.dispose()
    server = await asyncpg.connect(_plain_dsn(postgres_url))
    try:
        assert jit == await server.fetchval("SHOW jit")
        assert statement_timeout == await server.fetchval("SHOW statement_timeout")
    finally:
        await server.close()


async def test_a_statement_planned_with_values_never_gets_a_generic_plan(postgres_url: str, tmp_path: Path) -> None:
    # A prepared statement gets a generic plan after five calls, and a generic plan cannot see the
    # search term that decides whether the trigram index serves (q= on todos: 14 ms against 3 ms at
    # 10,000 todos). A statement that says `plan_with_values` is prepared afresh each call instead.
    await reset_postgres(postgres_url)
    database = Database(base_settings(tmp_path, database_url=postgres_url, db_pool_size=1, db_max_overflow=0))
    matching = col(Todo.owner_id) == sa.bindparam("owner_id"), col(Todo.title).like(sa.bindparam("pattern"))
    searched = Prebuilt(sa.select(col(Todo.id).label("searched")).where(*matching), tuple, plan_with_values=True)
    cached = Prebuilt(sa.select(col(Todo.id).label("cached")).where(*matching), tuple)
    statements = q(
        sa.select(sa.column("statement"), sa.column("generic_plans"), sa.column("custom_plans")).select_from(
            sa.table("pg_prepared_statements")
        )
    )
    try:
        for _ in range(8):
            assert await database.rows(searched, owner_id=1, pattern="%milk%") == []
            assert await database.rows(cached, owner_id=1, pattern="%milk%") == []
        prepared = await database.rows(statements)
    finally:
        await database.dispose()
    plans = {
        "searched": [row[1:] for row in prepared if "AS searched" in row[0]],
        "cached": [row[1:] for row in prepared if "AS cached" in row[0]],
    }
    assert [sum(row) for row in plans["cached"]] == [8]  # one statement, called eight times
    # Each searched statement was planned once, with its values, and asyncpg closes each it lets go:
    # none is kept to be called again (the same statement without the flag fails here with 8 calls).
    assert all(generic == 0 and custom <= 1 for generic, custom in plans["searched"])
