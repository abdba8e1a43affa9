"""`Idempotency-Key` on creates: the same key and body within 24 hours replays the first answer.

A client that lost the answer to a POST (a timeout, a dropped connection) can send it again
with the same key and get the same todo or post back, not a second one. The record of the
first answer is written in the same transaction as the row it created, so either both exist
or neither does; two requests racing with one key meet at the record's primary key, and the
loser replays the winner's answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import Database
from keel.core.errors import IdempotencyKeyReused
from keel.models import IdempotencyRecord, utcnow

KEEP_FOR = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request may use: the create it guards writes in `session` and records its answer."""

    session: AsyncSession
    user_id: int
    key: str
    scope: str
    fingerprint: str

    def record(self, answer: BaseModel, *, status_code: int) -> None:
        """Add the record of `answer` to the claim's session, to commit with the created row."""
        self.session.add(
            IdempotencyRecord(
                user_id=self.user_id,
                key=self.key,
                scope=self.scope,
                fingerprint=self.fingerprint,
                status_code=status_code,
                response_body=answer.model_dump_json(),
            )
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to send: the created model, or the recorded JSON of the first answer."""

    body: BaseModel | dict[str, Any]
    replayed: bool


def fingerprint(request: BaseModel) -> str:
    """The same request however it was spelled: field order and whitespace do not count."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _replay(session: AsyncSession, claim: Claim) -> Outcome | None:
    cutoff = utcnow() - KEEP_FOR
    record = (
        await session.exec(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == claim.user_id,
                IdempotencyRecord.key == claim.key,
                col(IdempotencyRecord.created_at) > cutoff,
            )
        )
    ).one_or_none()
    if record is None:
        return None
    if record.scope != claim.scope or record.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused
    return Outcome(body=json.loads(record.response_body), replayed=True)


@asynccontextmanager
async def session_for(database: Database, claim: Claim | None) -> AsyncIterator[AsyncSession]:
    """The claim's session, so the row and its record commit together; without a claim, a new one."""
    if claim is not None:
        yield claim.session
        return
    async with database.session() as session:
        yield session


async def once(
    *,
    database: Database,
    user_id: int,
    key: str | None,
    scope: str,
    request: BaseModel,
    create: Callable[[Claim | None], Awaitable[BaseModel]],
) -> Outcome:
    """Run `create` once per (user, key): a repeat within 24 hours gets the first answer back.

    `create` must write in `claim.session` and call `claim.record(...)` before its commit when it
    is given a claim. Without a key no session is opened here at all: most creates carry none.
    """
    if key is None:
        return Outcome(body=await create(None), replayed=False)
    async with database.session() as session:
        claim = Claim(session=session, user_id=user_id, key=key, scope=scope, fingerprint=fingerprint(request))
        return await _once(claim, create)


async def _once(claim: Claim, create: Callable[[Claim | None], Awaitable[BaseModel]]) -> Outcome:
    session, user_id, key = claim.session, claim.user_id, claim.key
    earlier = await _replay(session, claim)
    if earlier is not None:
        return earlier
    # A record past its 24 hours no longer counts; clear it so the key can be used again.
    await session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.created_at) <= utcnow() - KEEP_FOR,
        )
    )
    try:
        answer = await create(claim)
    except IntegrityError:
        # Another request with this key committed first: answer as it did (or refuse, if it
        # was a different request).
        await session.rollback()
        earlier = await _replay(session, claim)
        if earlier is None:
            raise
        return earlier
    return Outcome(body=answer, replayed=False)
