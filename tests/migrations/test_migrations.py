"""The migrations build exactly the schema the models describe, and come down cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import keel.models  # noqa: F401 - registers the tables
from keel.migrations import downgrade, include_object, upgrade
from tests.conftest import base_settings


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
    return list(compare_metadata(context, SQLModel.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(url: str) -> tuple[list[Any], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_diff), await connection.run_sync(_tables)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    # The session fixture leaves the test database at head; this test takes it down and back up.
    return str(request.getfixturevalue("postgres_url"))


def test_upgrade_matches_models_and_downgrade_removes_everything(database_url: str, tmp_path: Path) -> None:
    import asyncio

    settings = base_settings(tmp_path, database_url=database_url)
    downgrade(settings, "base")
    _, tables = asyncio.run(_inspect(database_url))
    assert tables <= {"alembic_version"}

    upgrade(settings)
    diff, tables = asyncio.run(_inspect(database_url))
    assert diff == [], f"migrations and models differ: {diff}"
    assert {"user", "user_session", "refresh_token", "todo", "post", "vote"} <= tables

    downgrade(settings, "base")
    _, tables = asyncio.run(_inspect(database_url))
    assert tables <= {"alembic_version"}
    upgrade(settings)  # leave the shared test database usable for the tests after this one


def test_the_email_kinds_the_models_name_are_the_ones_the_database_accepts(database_url: str, tmp_path: Path) -> None:
    import asyncio

    from keel.models import EmailKind

    async def accepted() -> set[str]:
        engine = create_async_engine(database_url)
        kinds = set()
        try:
            for kind in EmailKind:
                try:
                    async with engine.begin() as connection:
                        await connection.execute(
                            text(
                                "INSERT INTO email_outbox (kind, to_address, status, attempts, created_at, "
                                "next_attempt_at) VALUES (:kind, 'a@example.com', 'pending', 0, CURRENT_TIMESTAMP, "
                                "CURRENT_TIMESTAMP)"
                            ),
                            {"kind": kind.value},
                        )
                        kinds.add(kind.value)
                        await connection.rollback()
                except IntegrityError:
                    pass
        finally:
            await engine.dispose()
        return kinds

    upgrade(base_settings(tmp_path, database_url=database_url))

    assert asyncio.run(accepted()) == {kind.value for kind in EmailKind}


def test_sqlite_keeps_handing_out_outbox_ids_only_once(tmp_path: Path) -> None:
    # A migration that rebuilds the table on SQLite must keep AUTOINCREMENT, or a deleted row's id
    # could come back while a delivery task still names it.
    import sqlite3

    path = tmp_path / "keel.db"
    upgrade(base_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{path}"))

    with sqlite3.connect(path) as connection:
        (sql,) = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'email_outbox'").fetchone()
    assert "AUTOINCREMENT" in sql


def test_a_migration_waits_for_one_already_running(postgres_url: str, tmp_path: Path) -> None:
    """Hosts that start together queue on one lock: the second migrates only after the first."""
    import asyncio
    import os
    import sys

    import asyncpg
    from sqlalchemy import make_url

    from keel.migrations import MIGRATION_LOCK_KEY

    settings = base_settings(tmp_path, database_url=postgres_url)
    downgrade(settings, "base")
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEEL_")},
        "KEEL_DATABASE_URL": postgres_url,
        "KEEL_DATA_DIR": str(tmp_path),
        "KEEL_SECRET_KEY": settings.secret.decode(),
    }
    target = make_url(postgres_url)

    async def hold_lock_while_migrate_starts() -> tuple[int | None, int]:
        # Stand in for a first host mid-migration: hold its lock, start a second host's migrate.
        holder = await asyncpg.connect(
            host=target.host, port=target.port or 5432, user=target.username, database=target.database
        )
        try:
            async with holder.transaction():
                await holder.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                process = await asyncio.create_subprocess_exec(sys.executable, "-m", "keel", "migrate", env=env)
                await asyncio.sleep(4)
                while_held = process.returncode
        finally:
            await holder.close()
        return while_held, await asyncio.wait_for(process.wait(), timeout=60)

    try:
        while_held, returncode = asyncio.run(hold_lock_while_migrate_starts())
    finally:
        upgrade(settings)  # leave the shared test database usable whatever happened

    assert while_held is None, "migrate must wait while another migration holds the lock"
    assert returncode == 0
    diff, _ = asyncio.run(_inspect(postgres_url))
    assert diff == []


# The revision before the kept tag and post counts, and the rows a database had when it arrived.
BEFORE_COUNTS = "2e8c4a6f1d97"
_EXISTING_ROWS = [
    """INSERT INTO "user" (id, email, username, hashed_password, role, is_active, is_verified, created_at, updated_at)
       VALUES (1, 'a@example.com', 'a', 'x', 'user', true, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
              (2, 'b@example.com', 'b', 'x', 'user', true, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)""",
    """INSERT INTO post (id, author_id, title, content, published, tags, created_at, updated_at)
       VALUES (1, 1, 't', 'c', true, ',go,web,', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
              (2, 2, 't', 'c', true, ',go,', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
              (3, 2, 't', 'c', false, ',go,rust,', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
              (4, 1, 't', 'c', true, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)""",
    """INSERT INTO post_tag (post_id, tag, published, votes_count)
       VALUES (1, 'go', true, 0), (1, 'web', true, 0), (2, 'go', true, 0),
              (3, 'go', false, 0), (3, 'rust', false, 0)""",
]


def test_the_kept_counts_start_from_the_posts_already_there(database_url: str, tmp_path: Path) -> None:
    import asyncio

    async def run(statements: list[str]) -> list[list[tuple[Any, ...]]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as connection:
                results = [await connection.execute(text(statement)) for statement in statements]
                return [[tuple(row) for row in result] if result.returns_rows else [] for result in results]
        finally:
            await engine.dispose()

    settings = base_settings(tmp_path, database_url=database_url)
    downgrade(settings, "base")
    upgrade(settings, BEFORE_COUNTS)
    asyncio.run(run(_EXISTING_ROWS))
    try:
        upgrade(settings)
        tags, counters = asyncio.run(
            run(["SELECT name, published_posts FROM tag ORDER BY name", "SELECT name, value FROM counter"])
        )
        assert tags == [("go", 2), ("web", 1)]  # the draft's tags count nothing
        assert counters == [("published_posts", 3)]

        downgrade(settings, BEFORE_COUNTS)  # and back, with the rows still there
        _, tables = asyncio.run(_inspect(database_url))
        assert not {"tag", "counter"} & tables
    finally:
        downgrade(settings, "base")
        upgrade(settings)  # leave the shared test database empty and at head for the tests after this one


def test_the_todo_search_index_leads_with_the_owner(postgres_url: str, tmp_path: Path) -> None:
    """q= keeps the owner's matches inside the index, rather than every owner's matches of the term."""
    import asyncio

    async def definition() -> str | None:
        engine = create_async_engine(postgres_url)
        try:
            async with engine.connect() as connection:
                found = await connection.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_todo_search'")
                )
                return found.scalar()
        finally:
            await engine.dispose()

    settings = base_settings(tmp_path, database_url=postgres_url)
    upgrade(settings)
    assert asyncio.run(definition()) == (
        "CREATE INDEX ix_todo_search ON public.todo USING gin (owner_id, lower((title)::text) gin_trgm_ops,"
        " lower((description)::text) gin_trgm_ops)"
    )
    try:
        downgrade(settings, "8dd1d13c5b78")
        assert asyncio.run(definition()) == (
            "CREATE INDEX ix_todo_search ON public.todo USING gin (lower((title)::text) gin_trgm_ops,"
            " lower((description)::text) gin_trgm_ops)"
        )
    finally:
        upgrade(settings)


def test_without_pg_trgm_the_migration_goes_on_without_the_search_index(postgres_url: str, tmp_path: Path) -> None:
    """A server that refuses CREATE EXTENSION (no privilege) still migrates; q= then works unindexed."""
    import asyncio

    from structlog.testing import capture_logs

    async def run(*statements: str) -> list[Any]:
        engine = create_async_engine(postgres_url)
        try:
            async with engine.begin() as connection:
                results = [await connection.execute(text(statement)) for statement in statements]
                return [result.scalar() if result.returns_rows else None for result in results]
        finally:
            await engine.dispose()

    settings = base_settings(tmp_path, database_url=postgres_url)
    downgrade(settings, BEFORE_COUNTS)
    # Stand in for a role without the privilege: this database refuses every CREATE EXTENSION.
    asyncio.run(
        run(
            "DROP EXTENSION IF EXISTS pg_trgm",
            "DROP EXTENSION IF EXISTS btree_gin",
            """CREATE FUNCTION refuse_extensions() RETURNS event_trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'permission denied to create extension' USING ERRCODE = '42501'; END $$""",
            "CREATE EVENT TRIGGER refuse_extensions ON ddl_command_start WHEN TAG IN ('CREATE EXTENSION')"
            " EXECUTE FUNCTION refuse_extensions()",
        )
    )
    try:
        with capture_logs() as logs:
            upgrade(settings)
        search_index, extension = asyncio.run(
            run(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_todo_search'",
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'",
            )
        )
        assert (search_index, extension) == (0, 0)
        # Each migration that would build the index says it did not (the first one, and the one that
        # made it lead with owner_id).
        warnings = [log["event"] for log in logs if log["log_level"] == "warning"]
        assert warnings == ["todo_search_index_skipped", "todo_search_index_skipped"]
        diff, tables = asyncio.run(_inspect(postgres_url))
        assert diff == []
        assert {"tag", "counter"} <= tables
    finally:
        asyncio.run(
            run("DROP EVENT TRIGGER IF EXISTS refuse_extensions", "DROP FUNCTION IF EXISTS refuse_extensions()")
        )
        downgrade(settings, BEFORE_COUNTS)
        upgrade(settings)  # with the extension and its index, as the other tests expect
