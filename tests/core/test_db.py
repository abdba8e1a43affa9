"""Database.read: a read that met a connection the server had closed is run again on a fresh one."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from keel.core.db import Database
from tests.conftest import base_settings


def _disconnect(*, invalidated: bool) -> DBAPIError:
    return DBAPIError(
        "SELECT 1", None, ConnectionError("server closed the connection"), connection_invalidated=invalidated
    )


async def test_a_read_is_repeated_once_after_its_connection_died(tmp_path: Path) -> None:
    database = Database(base_settings(tmp_path))
    calls = 0

    async def work(connection: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise _disconnect(invalidated=True)
        return int((await connection.execute(text("SELECT 41 + 1"))).scalar_one())

    try:
        assert await database.read(work) == 42
    finally:
        await database.dispose()
    assert calls == 2


@pytest.mark.parametrize("invalidated", [False, True])
async def test_other_errors_and_a_second_failure_are_not_hidden(tmp_path: Path, invalidated: bool) -> None:
    database = Database(base_settings(tmp_path))
    calls = 0

    async def work(connection: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        raise _disconnect(invalidated=invalidated)

    try:
        with pytest.raises(DBAPIError):
            await database.read(work)
    finally:
        await database.dispose()
    assert calls == (2 if invalidated else 1)
