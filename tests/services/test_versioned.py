"""An edit that keeps losing its race: 412 when the client asked for If-Match, else a few tries, then 409."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.errors import EditConflict, PreconditionFailed
from keel.services import versioned


async def test_a_lost_race_with_if_match_is_412_at_once(app: FastAPI) -> None:
    tries: list[AsyncSession] = []

    async def work(session: AsyncSession) -> None:
        tries.append(session)
        raise StaleDataError("another write got there first")

    with pytest.raises(PreconditionFailed):
        await versioned.edit(app.state.database, work, if_match=IfMatch('"seen"'))
    assert len(tries) == 1


async def test_without_if_match_it_tries_again_then_gives_up_with_409(app: FastAPI) -> None:
    tries: list[AsyncSession] = []

    async def work(session: AsyncSession) -> None:
        tries.append(session)
        raise StaleDataError("another write got there first")

    with pytest.raises(EditConflict):
        await versioned.edit(app.state.database, work, if_match=None)
    assert len(tries) == versioned.ATTEMPTS
    assert len(set(map(id, tries))) == versioned.ATTEMPTS  # each try in a fresh session


async def test_a_try_that_wins_ends_it(app: FastAPI) -> None:
    tries: list[AsyncSession] = []

    async def work(session: AsyncSession) -> str:
        tries.append(session)
        if len(tries) == 1:
            raise StaleDataError("lost")
        return "applied"

    assert await versioned.edit(app.state.database, work, if_match=None) == "applied"
    assert len(tries) == 2
