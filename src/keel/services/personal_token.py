"""Personal access tokens: made, listed and revoked by their owner; checked on every request that sends one.

The database is the source of truth. With Redis the per-request check reads one cache entry per
token (keel.core.session_cache), overwritten with a tombstone before any revocation commits, so a
revoked token is refused at once in every worker, and a Redis that lost its data only causes
misses, which read the database again. A malformed token, or one whose checksum does not match, is
refused before either is read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, NoRows, Prebuilt
from keel.core.errors import AccessTokenNotFound, InvalidInput, InvalidToken, TokenExpired
from keel.core.personal_token import format_scopes, new_token, parse_scopes, token_hash, well_formed
from keel.core.session_cache import REVOKED, SessionCache, TokenState
from keel.models import ActivityType, PersonalAccessToken, Role, User, utcnow
from keel.models.base import UTCDateTime
from keel.schemas.personal_token import AccessTokenCreate, AccessTokenCreated, AccessTokenRead
from keel.services import activity as activity_service
from keel.services import events
from keel.services.session import Principal

# `last_used_at` is written at most this often per token.
TOUCH_EVERY_SECONDS = 60


def _read(row: PersonalAccessToken) -> AccessTokenRead:
    assert row.id is not None
    return AccessTokenRead(
        id=row.id,
        name=row.name,
        scopes=sorted(parse_scopes(row.scopes)),  # type: ignore[arg-type]
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


async def create(
    *, database: Database, settings: Settings, user_id: int, data: AccessTokenCreate
) -> AccessTokenCreated:
    """Make a token; its secret is in this answer only, and only its SHA-256 is kept."""
    if data.expires_in_days is None and not settings.personal_tokens_allow_no_expiry:
        raise InvalidInput(
            loc=["body", "expires_in_days"],
            msg="Tokens must expire on this server: give 1-365 days.",
            type_="expiry_required",
        )
    token = new_token()
    now = utcnow()
    row = PersonalAccessToken(
        user_id=user_id,
        name=data.name,
        token_hash=token_hash(token),
        scopes=format_scopes([scope.value for scope in data.scopes]),
        created_at=now,
        expires_at=None if data.expires_in_days is None else now + timedelta(days=data.expires_in_days),
    )
    async with database.session() as session:
        session.add(row)
        await activity_service.record(
            session,
            user_id=user_id,
            type=ActivityType.TOKEN_CREATED,
            detail={"name": data.name, "scopes": sorted(scope.value for scope in data.scopes)},
        )
        await session.commit()
    audit.record(SecurityEvent.TOKEN_CREATED, user_id=user_id, token_id=row.id, scopes=row.scopes)
    return AccessTokenCreated(**_read(row).model_dump(), token=token)


async def list_for_user(*, database: Database, user_id: int) -> list[AccessTokenRead]:
    """The user's tokens that are not revoked (expired ones too, until revoked), newest first."""
    async with database.session() as session:
        rows = await session.exec(
            select(PersonalAccessToken)
            .where(PersonalAccessToken.user_id == user_id, col(PersonalAccessToken.revoked_at).is_(None))
            .order_by(col(PersonalAccessToken.created_at).desc(), col(PersonalAccessToken.id).desc())
        )
        return [_read(row) for row in rows]


async def revoke(*, database: Database, cache: SessionCache | None, user_id: int, token_id: int) -> None:
    """Revoke one of the caller's own tokens; anyone else's (or a revoked one) is simply not found."""
    async with database.session() as session:
        found = await session.exec(
            select(PersonalAccessToken.token_hash).where(
                PersonalAccessToken.id == token_id,
                PersonalAccessToken.user_id == user_id,
                col(PersonalAccessToken.revoked_at).is_(None),
            )
        )
        digest = found.one_or_none()
        if digest is None:
            raise AccessTokenNotFound
        await _revoke(session, cache, [digest])
        await activity_service.record(
            session, user_id=user_id, type=ActivityType.TOKEN_REVOKED, detail={"token_id": token_id}
        )
        await session.commit()
    audit.record(SecurityEvent.TOKEN_REVOKED, user_id=user_id, token_id=token_id)


async def revoke_all(*, session: AsyncSession, cache: SessionCache | None, user_id: int) -> None:
    """Revoke every token of the user inside the caller's transaction (the caller commits).

    For account changes after which no old credential may act: a password reset, a deactivation, a
    role change, the account's deletion (whose cascade removes the rows; the cache is told first all the same).
    """
    digests = list(
        await session.exec(
            select(PersonalAccessToken.token_hash).where(
                PersonalAccessToken.user_id == user_id, col(PersonalAccessToken.revoked_at).is_(None)
            )
        )
    )
    await _revoke(session, cache, digests)


async def _revoke(session: AsyncSession, cache: SessionCache | None, digests: list[str]) -> None:
    if not digests:
        return
    if cache is not None:
        await cache.tombstone_tokens(digests)  # before the commit: see keel.core.session_cache
    await session.exec(
        update(PersonalAccessToken)
        .where(col(PersonalAccessToken.token_hash).in_(digests), col(PersonalAccessToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    events.revoked(session, token_digests=digests)  # their live streams end once this commits


async def forget_cached(*, session: AsyncSession, cache: SessionCache | None, user_id: int) -> None:
    """After the user's verification changed: cached entries hold the old state, so drop them."""
    if cache is None:
        return
    digests = await session.exec(
        select(PersonalAccessToken.token_hash).where(
            PersonalAccessToken.user_id == user_id, col(PersonalAccessToken.revoked_at).is_(None)
        )
    )
    await cache.forget_tokens(list(digests))


# --- the per-request check -----------------------------------------------------------------------
class LiveToken(NamedTuple):
    id: int
    user_id: int
    expires_at: datetime | None
    last_used_at: datetime | None
    scopes: str
    role: Role
    is_verified: bool


# An inactive user's tokens count as revoked (a deactivation revokes them anyway).
_LIVE_TOKEN = Prebuilt(
    sa.select(
        col(PersonalAccessToken.id),
        col(PersonalAccessToken.user_id),
        col(PersonalAccessToken.expires_at),
        col(PersonalAccessToken.last_used_at),
        col(PersonalAccessToken.scopes),
        col(User.role),
        col(User.is_verified),
    )
    .join_from(PersonalAccessToken, User, col(User.id) == col(PersonalAccessToken.user_id))
    .where(
        col(PersonalAccessToken.token_hash) == sa.bindparam("digest"),
        col(PersonalAccessToken.revoked_at).is_(None),
        col(User.is_active).is_(True),
    ),
    LiveToken,
)
_NOW = sa.bindparam("now", type_=UTCDateTime())
# Conditional, so workers that each think it is the minute's first use still write once.
_TOUCH = Prebuilt(
    sa.update(PersonalAccessToken)
    .where(
        col(PersonalAccessToken.id) == sa.bindparam("token"),
        sa.or_(
            col(PersonalAccessToken.last_used_at).is_(None),
            col(PersonalAccessToken.last_used_at) <= sa.bindparam("stale_before", type_=UTCDateTime()),
        ),
    )
    .values(last_used_at=_NOW),
    NoRows,
)


async def authenticate(*, database: Database, cache: SessionCache | None, token: str) -> Principal:
    """The caller a personal access token stands for, or 401 for a malformed, unknown, revoked or expired one."""
    if not well_formed(token):
        raise InvalidToken  # a typo or a made-up token: neither the cache nor the database is asked
    digest = token_hash(token)
    now = datetime.now(UTC)
    state: TokenState | str | None = None
    first_use = False
    if cache is not None:
        state, first_use = await cache.get_token(digest)
    if state is None:
        row = await database.first(_LIVE_TOKEN, digest=digest)
        state = REVOKED if row is None else _state(row)
        if cache is not None:
            await cache.fill_token(digest, state)
        else:
            first_use = row is not None and (
                row.last_used_at is None or (now - row.last_used_at).total_seconds() >= TOUCH_EVERY_SECONDS
            )
    if not isinstance(state, TokenState):
        raise InvalidToken
    if state.expires_at and state.expires_at <= now.timestamp():
        raise TokenExpired("This personal access token has expired.")
    if first_use:
        await database.rows(
            _TOUCH, token=state.token_id, now=now, stale_before=now - timedelta(seconds=TOUCH_EVERY_SECONDS)
        )
    return Principal(
        user_id=state.user_id,
        session_id="",
        role=Role(state.role),
        is_verified=state.is_verified,
        token_id=state.token_id,
        scopes=parse_scopes(state.scopes),
    )


async def is_live(*, database: Database, cache: SessionCache | None, digest: str) -> bool:
    """Whether the token (by its digest) still counts: not revoked, not expired, its account active."""
    state: TokenState | str | None = None
    if cache is not None:
        state, _ = await cache.get_token(digest)
    if state is None:
        row = await database.first(_LIVE_TOKEN, digest=digest)
        state = REVOKED if row is None else _state(row)
    if not isinstance(state, TokenState):
        return False
    return not state.expires_at or state.expires_at > datetime.now(UTC).timestamp()


def _state(row: LiveToken) -> TokenState:
    return TokenState(
        token_id=row.id,
        user_id=row.user_id,
        role=str(row.role),
        is_verified=row.is_verified,
        expires_at=int(row.expires_at.timestamp()) if row.expires_at is not None else 0,
        scopes=row.scopes,
    )
