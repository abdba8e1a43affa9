"""The migrations build exactly the schema the models describe, and come down cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import keel.models  # noqa: F401 - registers the tables
from keel.migrations import downgrade, upgrade
from tests.conftest import base_settings


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
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
