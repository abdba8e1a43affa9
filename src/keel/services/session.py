"""Sessions: who a bearer token belongs to, whether it still counts, and ending sessions.

The database is the source of truth. With Redis configured, the per-request check reads a
cache entry per session instead (keel.core.session_cache), which a revocation overwrites with a
tombstone before it is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.db import Database, NoRows, Prebuilt, Transaction
from keel.core.errors import ReauthenticationRequired, SessionNotFound, SessionRevoked
from keel.core.logging import get_logger
from keel.core.ratelimit import RateLimiter, WindowResult
from keel.core.security import AccessClaims
from keel.core.session_cache import REVOKED, SessionCache, SessionState
from keel.models import ActivityType, Role, User, UserSession, utcnow
from keel.models.base import UTCDateTime
from keel.services import activity as activity_service
from keel.services import events

log = get_logger("keel.sessions")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as the access check established it.

    A personal access token's caller has no session (`session_id` is empty, so nothing that needs a
    recent sign-in accepts it), its `token_id`, and the `scopes` it may use; a session's has None.
    """

    user_id: int
    session_id: str
    role: Role
    is_verified: bool
    token_id: int | None = None
    scopes: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


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
            ttl = cache.tombstone_ttl_seconds if state == REVOKED else cache.ttl_seconds
            await cache.fill(claims.session_id, state, ttl)
    now = int(datetime.now(UTC).timestamp())
    if not isinstance(state, SessionState) or state.user_id != claims.user_id or state.expires_at <= now:
        raise SessionRevoked
    if writes is not None:
        if result is not None:
            result.refuse_if_full()
        if result is None or not result.counted:
            await writes.hit("writes", str(claims.user_id))
    return Principal(
        user_id=state.user_id, session_id=claims.session_id, role=Role(state.role), is_verified=state.is_verified
    )


async def is_live(*, database: Database, cache: SessionCache | None, session_id: str, user_id: int) -> bool:
    """Whether the session still counts, as the per-request check would decide (for a long-lived
    stream, whose access token may have expired meanwhile: only the session's own state matters)."""
    state = await cache.get(session_id) if cache is not None else None
    if state is None:
        state = await _load_state(database, session_id)
    now = int(datetime.now(UTC).timestamp())
    return isinstance(state, SessionState) and state.user_id == user_id and state.expires_at > now


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


async def _load_state(database: Database, session_id: str) -> SessionState | str:
    row = await database.first(_LIVE_SESSION, session_id=session_id)
    if row is None:
        return REVOKED
    return SessionState(
        user_id=row.user_id, role=row.role, is_verified=row.is_verified, expires_at=int(row.expires_at.timestamp())
    )


def is_live_at(
    *, revoked_at: datetime | None, expires_at: datetime, last_used_at: datetime, idle_seconds: int, now: datetime
) -> bool:
    """Not revoked, not past its absolute end, and used within the idle limit: the one rule for a live session."""
    return revoked_at is None and expires_at > now and (now - last_used_at).total_seconds() < idle_seconds


async def list_active(*, database: Database, user_id: int, idle_seconds: int) -> list[UserSession]:
    async with database.session() as session:
        now = utcnow()
        rows = await session.exec(
            select(UserSession)
            .where(UserSession.user_id == user_id, col(UserSession.revoked_at).is_(None), UserSession.expires_at > now)
            .order_by(col(UserSession.last_used_at).desc())
        )
        return [
            row
            for row in rows
            if is_live_at(
                revoked_at=row.revoked_at,
                expires_at=row.expires_at,
                last_used_at=row.last_used_at,
                idle_seconds=idle_seconds,
                now=now,
            )
        ]


# A token refresh's view of its session, in the refresh's own transaction (keel.services.auth).
class RefreshState(NamedTuple):
    user_id: int
    expires_at: datetime
    last_used_at: datetime
    revoked_at: datetime | None
    is_active: bool
    role: Role
    is_verified: bool
    amr: str  # how the session was signed in, space-separated: each refreshed access token carries it


_NOW = sa.bindparam("now", type_=UTCDateTime())
_REFRESH_STATE = Prebuilt(
    sa.select(
        col(UserSession.user_id),
        col(UserSession.expires_at),
        col(UserSession.last_used_at),
        col(UserSession.revoked_at),
        col(User.is_active),
        col(User.role),
        col(User.is_verified),
        col(UserSession.amr),
    )
    .join_from(UserSession, User, col(User.id) == col(UserSession.user_id))
    .where(col(UserSession.id) == sa.bindparam("session_id")),
    RefreshState,
)
# Not "id": in an UPDATE, a column's own name is reserved for its SET value.
_TOUCH = Prebuilt(
    sa.update(UserSession).where(col(UserSession.id) == sa.bindparam("session")).values(last_used_at=_NOW),
    NoRows,
)
_REVOKE_ONE = Prebuilt(
    sa.update(UserSession)
    .where(col(UserSession.id) == sa.bindparam("session"), col(UserSession.revoked_at).is_(None))
    .values(revoked_at=_NOW),
    NoRows,
)


async def refresh_state(*, transaction: Transaction, session_id: str) -> RefreshState:
    state = await transaction.first(_REFRESH_STATE, session_id=session_id)
    assert state is not None, "a refresh token's session is kept while the token is (foreign key)"
    return state


def usable(state: RefreshState, *, idle_seconds: int, now: datetime) -> bool:
    """Whether a session may still be refreshed: live, and its user active."""
    return bool(state.is_active) and is_live_at(
        revoked_at=state.revoked_at,
        expires_at=state.expires_at,
        last_used_at=state.last_used_at,
        idle_seconds=idle_seconds,
        now=now,
    )


async def touch(*, transaction: Transaction, session_id: str, now: datetime) -> None:
    """Note the session used `now` (the idle limit counts from here)."""
    await transaction.rows(_TOUCH, session=session_id, now=now)


async def revoke_in(*, transaction: Transaction, cache: SessionCache | None, session_id: str, now: datetime) -> None:
    """`revoke` for one session inside `transaction`; the cache is told first, as there."""
    if cache is not None:
        await cache.tombstone([session_id])
    await transaction.rows(_REVOKE_ONE, session=session_id, now=now)
    events.revoked(transaction, session_ids=[session_id])


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
    events.revoked(session, session_ids=session_ids)  # their live streams end once this commits


async def revoke_all(
    *, session: AsyncSession, cache: SessionCache | None, user_id: int, keep: str | None = None
) -> None:
    ids = await unrevoked_ids(session=session, user_id=user_id, keep=keep)
    await revoke(session=session, cache=cache, session_ids=ids)


async def revoke_one(*, database: Database, cache: SessionCache | None, principal: Principal, session_id: str) -> None:
    """End one of the caller's own sessions; another user's session is simply not found."""
    async with database.session() as session:
        found = await session.exec(
            select(UserSession).where(UserSession.id == session_id, UserSession.user_id == principal.user_id)
        )
        target = found.one_or_none()
        if target is None or target.revoked_at is not None:
            raise SessionNotFound
        await revoke(session=session, cache=cache, session_ids=[session_id])
        await activity_service.record(
            session,
            user_id=principal.user_id,
            type=ActivityType.SESSION_REVOKED,
            detail={"device": activity_service.describe(target.user_agent)},
        )
        await session.commit()
        audit.record(SecurityEvent.SESSION_REVOKED, user_id=principal.user_id, session_id=session_id)


async def forget_cached(*, session: AsyncSession, cache: SessionCache | None, user_id: int) -> None:
    """After a change to a user's role-independent state (verification), drop stale cache entries."""
    if cache is None:
        return
    await cache.forget(await unrevoked_ids(session=session, user_id=user_id))


# --- recent authentication ----------------------------------------------------------------------
class Authenticated(NamedTuple):
    authenticated_at: datetime | None


_AUTHENTICATED_AT = Prebuilt(
    sa.select(col(UserSession.authenticated_at)).where(col(UserSession.id) == sa.bindparam("session_id")),
    Authenticated,
)
_MARK_AUTHENTICATED = Prebuilt(
    sa.update(UserSession)
    .where(col(UserSession.id) == sa.bindparam("session_id"))
    .values(authenticated_at=sa.bindparam("now", type_=UTCDateTime())),
    NoRows,
)


async def require_recent_authentication(*, database: Database, principal: Principal, within_seconds: int) -> None:
    """403 `reauthentication_required` unless the caller's session proved who they are lately."""
    found = await database.first(_AUTHENTICATED_AT, session_id=principal.session_id)
    at = found.authenticated_at if found is not None else None
    if at is None or (utcnow() - at).total_seconds() > within_seconds:
        raise ReauthenticationRequired


async def mark_authenticated(*, database: Database, principal: Principal) -> None:
    """The caller just proved who they are again (/auth/reauthenticate)."""
    await database.rows(_MARK_AUTHENTICATED, session_id=principal.session_id, now=utcnow())
