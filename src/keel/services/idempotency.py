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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from keel.core.db import Database, NoRows, Prebuilt, Transaction
from keel.core.errors import IdempotencyKeyReused
from keel.models import IdempotencyRecord, utcnow

KEEP_FOR = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"


class _Record(NamedTuple):
    scope: str
    fingerprint: str
    response_body: str


_THE_RECORD = (
    col(IdempotencyRecord.user_id) == sa.bindparam("user_id"),
    col(IdempotencyRecord.key) == sa.bindparam("key"),
)
_FIND = Prebuilt(
    sa.select(
        col(IdempotencyRecord.scope), col(IdempotencyRecord.fingerprint), col(IdempotencyRecord.response_body)
    ).where(*_THE_RECORD, col(IdempotencyRecord.created_at) > sa.bindparam("cutoff")),
    _Record,
)
# A record past its 24 hours no longer counts; cleared so the key can be used again.
_FORGET_EXPIRED = Prebuilt(
    sa.delete(IdempotencyRecord).where(*_THE_RECORD, col(IdempotencyRecord.created_at) <= sa.bindparam("cutoff")),
    NoRows,
)
_KEEP = Prebuilt(
    sa.insert(IdempotencyRecord),
    NoRows,
    binds=["user_id", "key", "scope", "fingerprint", "status_code", "response_body", "created_at"],
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to send: the created model, or the recorded JSON of the first answer."""

    body: BaseModel | dict[str, Any]
    replayed: bool


@dataclass(slots=True)
class Creation:
    """A create under way: write in `db` unless `outcome` is already set (a replay), then `keep` the answer.

    `db` is the transaction the key's record is written in, so the row and its record commit
    together or not at all; without a key it is the database itself (one INSERT is atomic alone).
    """

    db: Database | Transaction
    outcome: Outcome | None = None
    _answer: BaseModel | None = field(default=None, repr=False)
    _status: int = 201

    def keep(self, answer: BaseModel, *, status_code: int = 201) -> None:
        self._answer, self._status = answer, status_code
        self.outcome = Outcome(body=answer, replayed=False)


def fingerprint(request: BaseModel) -> str:
    """The same request however it was spelled: field order and whitespace do not count."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _earlier(db: Database | Transaction, ids: dict[str, Any], scope: str, fingerprint: str) -> Outcome | None:
    record = await db.first(_FIND, **ids, cutoff=utcnow() - KEEP_FOR)
    if record is None:
        return None
    if (record.scope, record.fingerprint) != (scope, fingerprint):
        raise IdempotencyKeyReused
    return Outcome(body=json.loads(record.response_body), replayed=True)


@asynccontextmanager
async def creating(
    database: Database, *, user_id: int, key: str | None, scope: str, request: BaseModel
) -> AsyncIterator[Creation]:
    """One create per (user, key): a repeat within 24 hours gets the first answer back.

    The block writes in `creation.db` and calls `creation.keep(answer)`, unless `creation.outcome`
    is already set: then this is a repeat, and the block must write nothing. Without a key no
    transaction is opened at all: most creates carry none. Two requests racing with one key meet
    at the record's primary key; the loser's transaction is rolled back and it replays the winner's.
    """
    if key is None:
        yield Creation(database)
        return
    ids = {"user_id": user_id, "key": key}
    digest = fingerprint(request)
    creation = Creation(database)
    try:
        async with database.transaction() as transaction:
            creation.db = transaction
            creation.outcome = await _earlier(transaction, ids, scope, digest)
            if creation.outcome is None:
                await transaction.rows(_FORGET_EXPIRED, **ids, cutoff=utcnow() - KEEP_FOR)
            yield creation
            if creation._answer is not None:
                await transaction.rows(
                    _KEEP,
                    **ids,
                    scope=scope,
                    fingerprint=digest,
                    status_code=creation._status,
                    response_body=creation._answer.model_dump_json(),
                    created_at=utcnow(),
                )
    except IntegrityError:
        # Another request with this key committed first: answer as it did (or refuse, if it was a
        # different request). Anything else that broke a constraint is not ours to explain.
        creation.outcome = await _earlier(database, ids, scope, digest)
        if creation.outcome is None:
            raise
