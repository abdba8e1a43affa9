"""Edits of versioned rows (todos, posts, users): checked against If-Match, and safe against a race.

Each versioned table's writes are conditioned on the `version` they read (see keel.core.conditional),
so a write that raced another matches no row and SQLAlchemy raises `StaleDataError` instead of
overwriting it. With `If-Match` the client asked for exactly that: 412. Without it the client
asked for its change to be made, so the edit runs again on what is there now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.db import Database
from keel.core.errors import EditConflict, PreconditionFailed

_T = TypeVar("_T")

ATTEMPTS = 3


async def edit(database: Database, work: Callable[[AsyncSession], Awaitable[_T]], *, if_match: IfMatch | None) -> _T:
    """Run `work` in a fresh session and commit; `work` reads, checks `if_match`, changes and flushes."""
    for _ in range(ATTEMPTS):
        async with database.session() as session:
            try:
                result = await work(session)
                await session.commit()
                return result
            except StaleDataError:
                if if_match is not None:
                    raise PreconditionFailed from None
    raise EditConflict
