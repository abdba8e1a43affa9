"""Sessions: who a bearer token belongs to, whether it still counts, and ending sessions.

The database is the source of truth. With Redis configured, the per-request check reads a
cache entry per session instead: filled from the database on a miss (``SET NX``), and
overwritten with a tombstone *before* a revocation is committed, so a concurrent fill can never
put a revoked session back and a Redis that lost its data only causes misses, which read the
database again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, cast

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.db import Database, Prebuilt
from keel.core.errors import ServiceUnavailable, SessionNotFound, SessionRevoked
from keel.core.logging import get_logger
from keel.core.ratelimit import RateLimiter, WindowCount, WindowResult
from keel.core.security import AccessClaims
from keel.models import Role, User, UserSession, utcnow

log = get_logger("keel.sessions")

_REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as the access check established it."""

    user_id: int
    session_id: str
    role: Role
    is_verified: bool

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class _SessionState:
    user_id: int
    role: Role
    is_verified: bool
    expires_at: int  # the session's absolute end, as a Unix timestamp

    def encode(self) -> str:
        return f"{self.user_id}|{self.role.value}|{int(self.is_verified)}|{self.expires_at}"

    @classmethod
    def decode(cls, raw: str) -> _SessionState:
        user_id, role, verified, expires = raw.split("|")
        return cls(int(user_id), Role(role), verified == "1", int(expires))


class SessionCache:
    """The Redis side of the access check. Every Redis failure becomes a 503: fail closed."""

    prefix = "keel:session:"

    def __init__(self, redis: Redis, *, ttl_seconds: int, tombstone_ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        # A tombstone only has to outlive the access tokens of its session.
        self.tombstone_ttl_seconds = tombstone_ttl_seconds

    async def get(self, session_id: str) -> _SessionState | str | None:
        try:
            raw = cast(str | None, await self.redis.get(self.prefix + session_id))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return _decoded(raw)

    async def get_counting(
        self, session_id: str, user_id: int, limiter: RateLimiter, count: WindowCount
    ) -> tuple[_SessionState | str | None, WindowResult]:
        """The entry, read by the script that also counts the request against `count` if it is that
        user's live session: an authenticated write in one round trip (see keel.core.ratelimit)."""
        try:
            result = await limiter.run(count, session_key=self.prefix + session_id, user_prefix=f"{user_id}|")
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return _decoded(result.entry), result

    async def fill(self, session_id: str, state: _SessionState | str, ttl_seconds: int) -> None:
        value = state.encode() if isinstance(state, _SessionState) else state
        try:
            await self.redis.set(self.prefix + session_id, value, ex=max(ttl_seconds, 1), nx=True)
        except RedisError as exc:  # the answer came from the database; only the cache is missed
            log.warning("session_cache_fill_failed", error=type(exc).__name__)

    async def admit(
        self, session_id: str, *, user_id: int, role: Role, is_verified: bool, expires_at: datetime
    ) -> None:
        """Cache a session whose tokens are about to be handed out (sign-in, refresh); 503 if Redis fails.

        While Redis is down every request's access check is refused, so tokens handed out then could
        not be used; and a revocation made then could not leave its tombstone, so a fallback to the
        database could later let a revoked session through. Sign-in and refresh fail closed too.
        """
        state = _SessionState(user_id, role, is_verified, int(expires_at.timestamp()))
        try:
            await self.redis.set(self.prefix + session_id, state.encode(), ex=self.ttl_seconds, nx=True)
        except RedisError as exc:
            raise _unavailable(exc, "Sessions cannot be opened right now; try again shortly.") from exc

    async def tombstone(self, session_ids: Sequence[str]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.set(self.prefix + session_id, _REVOKED, ex=self.tombstone_ttl_seconds)
                await pipe.execute()
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions cannot be changed right now; try again shortly.") from exc

    async def forget(self, session_ids: Sequence[str]) -> None:
        if not session_ids:
            return
        try:
            await self.redis.delete(*(self.prefix + session_id for session_id in session_ids))
        except RedisError as exc:
            log.warning("session_cache_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Sessions cannot be changed right now; try again shortly.") from exc


def _unavailable(
    exc: RedisError, detail: str = "Sessions cannot be checked right now; try again shortly."
) -> ServiceUnavailable:
    log.warning("session_cache_unavailable", error=type(exc).__name__)
    return ServiceUnavailable(detail)


def _decoded(raw: str | None) -> _SessionState | str | None:
    if raw is None or raw == _REVOKED:
        return raw
    return _SessionState.decode(raw)


async def authenticate(
    *, database: Database, cache: SessionCache | None, claims: AccessClaims, writes: RateLimiter | None = None
) -> Principal:
    """Turn verified token claims into a principal, or refuse a session that no longer counts.

    With Redis this is one GET; the database is read (and the cache filled) only on a miss. With
    `writes`, the request is also counted against the caller's write limit (429 when it is used
    up): by that same round trip when the session is in the cache, else on its own once the
    database has found the session live. A refused session is never counted.
    """
    result: WindowResult | None = None
    count = writes.window_count("writes", str(claims.user_id)) if writes is not None and cache is not None else None
    if cache is None:
        state = None
    elif writes is not None and count is not None:
        state, result = await cache.get_counting(claims.session_id, claims.user_id, writes, count)
    else:
        state = await cache.get(claims.session_id)
    if state is None:
        state = await _load_state(database, claims.session_id)
        if cache is not None:
            ttl = cache.tombstone_ttl_seconds if state == _REVOKED else cache.ttl_seconds
            await cache.fill(claims.session_id, state, ttl)
    now = int(datetime.now(UTC).timestamp())
    if not isinstance(state, _SessionState) or state.user_id != claims.user_id or state.expires_at <= now:
        raise SessionRevoked
    if writes is not None:
        if result is not None:
            result.refuse_if_full()
        if result is None or not result.counted:
            await writes.hit("writes", str(claims.user_id))
    return Principal(
        user_id=state.user_id, session_id=claims.session_id, role=state.role, is_verified=state.is_verified
    )


class LiveSession(NamedTuple):
    user_id: int
    expires_at: datetime
    role: Role
    is_verified: bool


# An inactive user counts as revoked: deactivation revokes every session anyway.
_LIVE_SESSION = Prebuilt(
    sa.select(col(UserSession.user_id), col(UserSession.expires_at), col(User.role), col(User.is_verified))
    .join_from(UserSession, User, col(User.id) == col(UserSession.user_id))
    .where(
        col(UserSession.id) == sa.bindparam("session_id"),
        col(UserSession.revoked_at).is_(None),
        col(User.is_active).is_(True),
    ),
    LiveSession,
)


async def _load_state(database: Database, session_id: str) -> _SessionState | str:
    row = await database.first(_LIVE_SESSION, session_id=session_id)
    if row is None:
        return _REVOKED
    return _SessionState(
        user_id=row.user_id, role=row.role, is_verified=row.is_verified, expires_at=int(row.expires_at.timestamp())
    )


def is_live(user_session: UserSession, *, idle_seconds: int, now: datetime) -> bool:
    return is_live_at(
        revoked_at=user_session.revoked_at,
        expires_at=user_session.expires_at,
        last_used_at=user_session.last_used_at,
        idle_seconds=idle_seconds,
        now=now,
    )


def is_live_at(
    *, revoked_at: datetime | None, expires_at: datetime, last_used_at: datetime, idle_seconds: int, now: datetime
) -> bool:
    """Not revoked, not past its absolute end, and used within the idle limit."""
    return revoked_at is None and expires_at > now and (now - last_used_at).total_seconds() < idle_seconds


async def list_active(*, session: AsyncSession, user_id: int, idle_seconds: int) -> list[UserSession]:
    now = utcnow()
    rows = await session.exec(
        select(UserSession)
        .where(UserSession.user_id == user_id, col(UserSession.revoked_at).is_(None), UserSession.expires_at > now)
        .order_by(col(UserSession.last_used_at).desc())
    )
    return [row for row in rows if is_live(row, idle_seconds=idle_seconds, now=now)]


async def unrevoked_ids(*, session: AsyncSession, user_id: int, keep: str | None = None) -> list[str]:
    statement = select(UserSession.id).where(UserSession.user_id == user_id, col(UserSession.revoked_at).is_(None))
    if keep is not None:
        statement = statement.where(UserSession.id != keep)
    return list(await session.exec(statement))


async def revoke(*, session: AsyncSession, cache: SessionCache | None, session_ids: Sequence[str]) -> None:
    """Mark sessions revoked; the caller commits. The cache is told first (see module docstring)."""
    if not session_ids:
        return
    if cache is not None:
        await cache.tombstone(session_ids)
    await session.exec(
        update(UserSession)
        .where(col(UserSession.id).in_(list(session_ids)), col(UserSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_all(
    *, session: AsyncSession, cache: SessionCache | None, user_id: int, keep: str | None = None
) -> None:
    ids = await unrevoked_ids(session=session, user_id=user_id, keep=keep)
    await revoke(session=session, cache=cache, session_ids=ids)


async def revoke_one(
    *, session: AsyncSession, cache: SessionCache | None, principal: Principal, session_id: str
) -> None:
    """End one of the caller's own sessions; another user's session is simply not found."""
    found = await session.exec(
        select(UserSession).where(UserSession.id == session_id, UserSession.user_id == principal.user_id)
    )
    target = found.one_or_none()
    if target is None or target.revoked_at is not None:
        raise SessionNotFound
    await revoke(session=session, cache=cache, session_ids=[session_id])
    await session.commit()
    audit.record(SecurityEvent.SESSION_REVOKED, user_id=principal.user_id, session_id=session_id)


async def forget_cached(*, session: AsyncSession, cache: SessionCache | None, user_id: int) -> None:
    """After a change to a user's role-independent state (verification), drop stale cache entries."""
    if cache is None:
        return
    await cache.forget(await unrevoked_ids(session=session, user_id=user_id))
