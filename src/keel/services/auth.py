"""Signing in and out, token refresh with rotation and reuse detection, password change."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.errors import (
    InactiveUser,
    InvalidCredentials,
    InvalidCredentialsInput,
    InvalidInput,
    InvalidRefreshToken,
)
from keel.core.security import (
    create_access_token,
    hash_refresh_token,
    new_refresh_token,
    new_session_id,
    password_hasher,
)
from keel.models import EmailKind, RefreshToken, User, UserSession, utcnow
from keel.schemas.auth import TokenPair
from keel.services import outbox as outbox_service
from keel.services import session as session_service
from keel.services import user as user_service
from keel.services.outbox import Dispatcher
from keel.services.session import Principal, SessionCache


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    pair: TokenPair
    # How long the new refresh token stays usable if it is not used: the idle limit, or less when
    # the session's absolute end comes first. A refresh cookie lives exactly this long.
    refresh_expires_in: int


async def login(
    *,
    session: AsyncSession,
    settings: Settings,
    email: str,
    password: str,
    user_agent: str | None,
    ip: str | None,
) -> IssuedTokens:
    """Check the credentials and open a new session. Unknown email and wrong password look the same."""
    hasher = password_hasher(settings)
    user = await user_service.get_by_email(session=session, email=email.strip())
    # End the read before the hash: a connection held through a queue of hashes would drain the
    # pool for every other request while logins arrive faster than they can be hashed.
    await session.commit()
    if user is None:
        await hasher.dummy_verify(password)
        # Not the submitted address: people sometimes type their password into that field.
        audit.record(SecurityEvent.LOGIN_FAILED, reason="unknown_email", ip=ip)
        raise InvalidCredentials
    valid, upgraded_hash = await hasher.verify(password, user.hashed_password)
    if not valid:
        audit.record(SecurityEvent.LOGIN_FAILED, reason="wrong_password", user_id=user.id, ip=ip)
        raise InvalidCredentials
    if not user.is_active:
        audit.record(SecurityEvent.LOGIN_FAILED, reason="inactive", user_id=user.id, ip=ip)
        raise InactiveUser
    if upgraded_hash is not None:
        user.hashed_password = upgraded_hash  # parameters changed or a legacy bcrypt hash
        session.add(user)
    assert user.id is not None
    now = utcnow()
    user_session = UserSession(
        id=new_session_id(),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(seconds=settings.session_absolute_ttl_seconds),
        user_agent=(user_agent or "")[:255] or None,
        ip=(ip or "")[:45] or None,
    )
    session.add(user_session)
    await session.flush()  # the refresh token row refers to it
    issued = _issue(session, settings, user_id=user.id, user_session=user_session, now=now)
    await session.commit()
    audit.record(
        SecurityEvent.LOGIN_SUCCEEDED,
        user_id=user.id,
        session_id=user_session.id,
        ip=ip,
        rehashed=upgraded_hash is not None,
    )
    return issued


def _issue(
    session: AsyncSession, settings: Settings, *, user_id: int, user_session: UserSession, now: datetime
) -> IssuedTokens:
    """A new pair in a session whose `last_used_at` is `now`."""
    refresh_token, token_hash = new_refresh_token()
    session.add(RefreshToken(token_hash=token_hash, session_id=user_session.id, created_at=now))
    pair = TokenPair(
        access_token=create_access_token(settings, user_id=user_id, session_id=user_session.id, now=now),
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
    )
    remaining = int((user_session.expires_at - now).total_seconds())
    return IssuedTokens(pair=pair, refresh_expires_in=max(min(settings.session_idle_ttl_seconds, remaining), 0))


async def session_of_refresh_token(*, session: AsyncSession, refresh_token: str) -> str | None:
    """The session a refresh token (used or not) belongs to: one primary-key read, changing nothing."""
    statement = select(RefreshToken.session_id).where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
    return (await session.exec(statement)).one_or_none()


async def refresh(
    *, session: AsyncSession, cache: SessionCache | None, settings: Settings, refresh_token: str
) -> IssuedTokens:
    """Consume a refresh token and issue a new pair in the same session.

    The consume is one conditional UPDATE, so of two concurrent refreshes only one can win.
    A token that was already consumed revokes its whole session: either a thief or the
    rightful client is replaying it, and the session cannot tell which.
    """
    now = utcnow()
    token_hash = hash_refresh_token(refresh_token)
    consumed = await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.token_hash) == token_hash, col(RefreshToken.used_at).is_(None))
        .values(used_at=now)
        .returning(col(RefreshToken.session_id))
    )
    session_id = consumed.scalar_one_or_none()
    if session_id is None:
        await _handle_unusable(session, cache, token_hash)
        raise InvalidRefreshToken
    row = (
        await session.exec(
            select(UserSession, User)
            .join(User, col(User.id) == col(UserSession.user_id))
            .where(UserSession.id == session_id)
        )
    ).one()
    user_session, user = row
    if not user.is_active or not session_service.is_live(
        user_session, idle_seconds=settings.session_idle_ttl_seconds, now=now
    ):
        await session.commit()  # the token stays consumed
        audit.record(SecurityEvent.REFRESH_FAILED, reason="session_ended", user_id=user.id, session_id=session_id)
        raise InvalidRefreshToken
    user_session.last_used_at = now
    session.add(user_session)
    assert user.id is not None
    issued = _issue(session, settings, user_id=user.id, user_session=user_session, now=now)
    await session.commit()
    audit.record(SecurityEvent.TOKEN_REFRESHED, user_id=user.id, session_id=user_session.id)
    return issued


async def _handle_unusable(session: AsyncSession, cache: SessionCache | None, token_hash: str) -> None:
    known = (
        await session.exec(select(RefreshToken.session_id).where(RefreshToken.token_hash == token_hash))
    ).one_or_none()
    if known is None:
        audit.record(SecurityEvent.REFRESH_FAILED, reason="unknown_token")
        return
    owner = (await session.exec(select(UserSession.user_id).where(UserSession.id == known))).one()
    await session_service.revoke(session=session, cache=cache, session_ids=[known])
    await session.commit()
    audit.record(SecurityEvent.REFRESH_TOKEN_REUSE, level="warning", session_id=known, user_id=owner)


async def logout(
    *, session: AsyncSession, cache: SessionCache | None, principal: Principal, refresh_tokens: Collection[str] = ()
) -> None:
    """End the caller's session (and the sessions of refresh tokens they hand in, those that are theirs)."""
    ids = [principal.session_id]
    if refresh_tokens:
        others = await session.exec(
            select(RefreshToken.session_id)
            .join(UserSession, col(UserSession.id) == col(RefreshToken.session_id))
            .where(
                col(RefreshToken.token_hash).in_(sorted({hash_refresh_token(token) for token in refresh_tokens})),
                UserSession.user_id == principal.user_id,
            )
        )
        ids.extend(sorted(set(others) - {principal.session_id}))
    await session_service.revoke(session=session, cache=cache, session_ids=ids)
    await session.commit()
    audit.record(SecurityEvent.LOGOUT, user_id=principal.user_id, session_id=principal.session_id)


async def logout_all(*, session: AsyncSession, cache: SessionCache | None, principal: Principal) -> None:
    await session_service.revoke_all(session=session, cache=cache, user_id=principal.user_id)
    await session.commit()
    audit.record(SecurityEvent.LOGOUT_ALL, user_id=principal.user_id)


async def change_password(
    *,
    session: AsyncSession,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    current_password: str,
    new_password: str,
) -> None:
    """Set a new password after checking the current one; every other session ends."""
    user = await user_service.get(session=session, user_id=principal.user_id)
    hasher = password_hasher(settings)
    valid, _ = await hasher.verify(current_password, user.hashed_password)
    if not valid:
        audit.record(SecurityEvent.PASSWORD_CHANGE_FAILED, reason="wrong_current_password", user_id=principal.user_id)
        raise InvalidCredentialsInput("The current password is incorrect.")
    if new_password == current_password:
        raise InvalidInput(
            loc=["body", "new_password"], msg="The new password must differ from the current one.", type_="value_error"
        )
    user_service.check_personal_password(user, new_password)
    user.hashed_password = await hasher.hash(new_password)
    user.updated_at = utcnow()
    session.add(user)
    await session_service.revoke_all(session=session, cache=cache, user_id=principal.user_id, keep=principal.session_id)
    row = await outbox_service.enqueue(
        session=session,
        settings=settings,
        kind=EmailKind.PASSWORD_CHANGED,
        to_address=user.email,
        user_id=principal.user_id,
    )
    await session.commit()
    await outbox_service.dispatch_after_commit(dispatcher, [row])
    audit.record(SecurityEvent.PASSWORD_CHANGED, user_id=principal.user_id, session_id=principal.session_id)
