"""WebAuthn challenges: single use, five minutes, and usable only by what asked for them.

A registration's challenge is bound to the signed-in session that asked; a second factor's to the
pending sign-in (its token's hash); a passkey-first sign-in's to nothing, since nobody is known
yet. With Redis configured a challenge is a key that expires by itself and is consumed with
GETDEL; else a `webauthn_challenge` row consumed by a DELETE ... RETURNING. Either way, of two
requests presenting one challenge exactly one gets it, and a challenge presented by the wrong
party is used up all the same.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Literal, NamedTuple

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel import col

from keel.core.db import Database, NoRows, Prebuilt
from keel.core.errors import InvalidCredential, ServiceUnavailable
from keel.core.logging import get_logger
from keel.core.webauthn import CHALLENGE_TTL_SECONDS
from keel.models import WebauthnChallenge, utcnow
from keel.models.base import UTCDateTime

log = get_logger("keel.webauthn")

Purpose = Literal["register", "authenticate"]
REDIS_PREFIX = "keel:webauthn:"
TTL = timedelta(seconds=CHALLENGE_TTL_SECONDS)
# Longer than any challenge this service makes: such a string is not looked up at all.
_MAX_CHALLENGE_CHARS = 128


@dataclass(frozen=True, slots=True)
class Binding:
    """What a challenge was issued to; only the same may use it."""

    purpose: Purpose
    session_id: str | None = None
    pending_hash: str | None = None
    user_id: int | None = None

    @classmethod
    def registration(cls, *, session_id: str, user_id: int) -> Binding:
        return cls("register", session_id=session_id, user_id=user_id)

    @classmethod
    def second_factor(cls, *, pending_hash: str, user_id: int) -> Binding:
        return cls("authenticate", pending_hash=pending_hash, user_id=user_id)

    @classmethod
    def reauthentication(cls, *, session_id: str, user_id: int) -> Binding:
        """A signed-in session proving its user again (/auth/passkeys/reauthenticate)."""
        return cls("authenticate", session_id=session_id, user_id=user_id)

    @classmethod
    def sign_in(cls) -> Binding:
        """A passkey-first sign-in: whoever asked may answer, with any discoverable passkey."""
        return cls("authenticate")


class _Row(NamedTuple):
    purpose: Purpose
    session_id: str | None
    pending_hash: str | None
    user_id: int | None


_NOW = sa.bindparam("now", type_=UTCDateTime())
_PRUNE = Prebuilt(sa.delete(WebauthnChallenge).where(col(WebauthnChallenge.expires_at) <= _NOW), NoRows)
_INSERT = Prebuilt(
    sa.insert(WebauthnChallenge),
    NoRows,
    binds=["challenge", "purpose", "session_id", "pending_hash", "user_id", "expires_at"],
)
_CONSUME = Prebuilt(
    sa.delete(WebauthnChallenge)
    .where(col(WebauthnChallenge.challenge) == sa.bindparam("value"), col(WebauthnChallenge.expires_at) > _NOW)
    .returning(
        col(WebauthnChallenge.purpose),
        col(WebauthnChallenge.session_id),
        col(WebauthnChallenge.pending_hash),
        col(WebauthnChallenge.user_id),
    ),
    _Row,
)


async def issue(*, database: Database, redis: Redis | None, challenge: str, binding: Binding) -> None:
    """Keep a challenge just handed out, for five minutes, for `binding`."""
    if redis is not None:
        try:
            await redis.set(REDIS_PREFIX + challenge, json.dumps(asdict(binding)), ex=CHALLENGE_TTL_SECONDS, nx=True)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return
    now = utcnow()
    async with database.transaction() as transaction:
        # Each new challenge clears the expired ones: nothing else has to.
        await transaction.rows(_PRUNE, now=now)
        await transaction.rows(_INSERT, challenge=challenge, expires_at=now + TTL, **asdict(binding))


async def consume(*, database: Database, redis: Redis | None, challenge: str, binding: Binding) -> None:
    """Use a challenge up; 400 `invalid_credential` unless it was issued to `binding`, unused, unexpired."""
    if not challenge or len(challenge) > _MAX_CHALLENGE_CHARS:
        raise InvalidCredential
    found: Binding | None
    if redis is not None:
        try:
            raw = await redis.getdel(REDIS_PREFIX + challenge)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        found = None if raw is None else Binding(**json.loads(raw))
    else:
        row = await database.first(_CONSUME, value=challenge, now=utcnow())
        found = None if row is None else Binding(row.purpose, row.session_id, row.pending_hash, row.user_id)
    if found != binding:
        log.info("webauthn_challenge_refused", known=found is not None, purpose=binding.purpose)
        raise InvalidCredential


def _unavailable(exc: RedisError) -> ServiceUnavailable:
    log.warning("webauthn_challenges_unavailable", error=type(exc).__name__)
    return ServiceUnavailable("Passkeys cannot be used right now; try again shortly.")
