"""Two transactions counting the same tag at once, on PostgreSQL: the second waits, and both count."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.db import Database
from keel.models import PUBLISHED_POSTS, Counter, Tag
from keel.services import tag as tag_service

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite has one writer at a time


async def kept(database: Database, tag: str) -> tuple[int | None, int | None]:
    async with database.session() as session:
        tagged = (await session.exec(select(Tag.published_posts).where(col(Tag.name) == tag))).one_or_none()
        total = (await session.exec(select(Counter.value).where(col(Counter.name) == PUBLISHED_POSTS))).one_or_none()
    return tagged, total


async def test_two_publishers_of_one_tag_take_turns_and_both_count(app: FastAPI) -> None:
    database: Database = app.state.database
    # The first round creates the rows (both writers meet at the insert), the second adds to them.
    for expected in (2, 4):
        async with database.session() as first, database.session() as second:
            await tag_service.count_published(first, added=[["race"]])
            waiting = asyncio.create_task(tag_service.count_published(second, added=[["race"]]))
            await asyncio.sleep(0.3)
            # The first writer's row lock holds the second until it commits: that is the turn taking.
            assert not waiting.done()
            await first.commit()
            await asyncio.wait_for(waiting, timeout=10)
            await second.commit()

        assert await kept(database, "race") == (expected, expected)


async def test_a_writer_that_rolls_back_leaves_the_counts_as_they_were(app: FastAPI) -> None:
    database: Database = app.state.database
    async with database.session() as session:
        await tag_service.count_published(session, added=[["kept"]])
        await session.commit()
    async with database.session() as session:
        await tag_service.count_published(session, removed=[["kept"]], added=[["other"]])
        await session.rollback()

    assert await kept(database, "kept") == (1, 1)
    assert await kept(database, "other") == (None, 1)
