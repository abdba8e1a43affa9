"""Signing in and out, token refresh with rotation and reuse detection, password change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, NoRows, Prebuilt, Transaction
from keel.core.errors import (
    InactiveUser,
    InvalidCredentials,
    InvalidCredentialsInput,
    InvalidInput,
    InvalidRefreshToken,
)
from keel.core.lockout import PasswordAttempt
from keel.core.password_policy import normalize
from keel.core.ratelimit import RateLimiter, account_key
from keel.core.security import (
    MAX_REFRESH_TOKEN_CHARS,
    Abandoned,
    hash_refresh_token,
    new_refresh_token,
    password_hasher,
)
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, EmailKind, RefreshToken, Role, User, UserSession, utcnow
from keel.models.base import UTCDateTime
from keel.services import activity as activity_service
from keel.services import lockout as lockout_service
from keel.services import outbox as outbox_service
from keel.services import session as session_service
from keel.services import signin
from keel.services import user as user_service
from keel.services.outbox import Dispatcher
from keel.services.session import Principal
from keel.services.signin import IssuedTokens


class Account(NamedTuple):
    id: int
    hashed_password: str
    is_active: bool
    role: Role
    is_verified: bool


# What a sign-in reads of the account, as plain columns; and what it writes.
_ACCOUNT = Prebuilt(
    sa.select(
        col(User.id), col(User.hashed_password), col(User.is_active), col(User.role), col(User.is_verified)
    ).where(col(User.email) == sa.bindparam("email")),
    Account,
)
_REHASH = Prebuilt(
    sa.update(User).where(col(User.id) == sa.bindparam("user_id")).values(hashed_password=sa.bindparam("rehashed")),
    NoRows,
)


async def login(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    attempt: PasswordAttempt,
    email: str,
    password: str,
    user_agent: str | None,
    ip: str | None,
    client_gone: Abandoned | None = None,
) -> IssuedTokens:
    """Check the credentials; then the sign-in policy opens a session or asks for a second factor.

    Unknown email and wrong password look the same. Nothing is held through the hash: the account
    is read outside any transaction (a connection held through a queue of hashes would drain the
    pool for every other request while sign-ins arrive faster than they can be hashed), then
    keel.services.signin writes the session (or the pending sign-in) in one short transaction,
    with the rehash when there is one.
    With `client_gone`, a sign-in whose client hung up while it waited for the hash is dropped
    before hashing (`ClientClosedRequest`). With Redis, the new session is cached before anything is
    written: a Redis that cannot be reached is a 503 with no session opened (see `SessionCache.admit`).
    `attempt` is this check, already counted against the account (keel.core.lockout).
    """
    hasher = password_hasher(settings)
    address = email.strip().lower()
    account = await database.first(_ACCOUNT, email=address)
    if account is None:
        await hasher.dummy_verify(password, unless=client_gone)
        # Not the submitted address: people sometimes type their password into that field.
        audit.record(SecurityEvent.LOGIN_FAILED, reason="unknown_email", ip=ip)
        await lockout_service.wrong_password(
            session=None, settings=settings, dispatcher=dispatcher, attempt=attempt, user_id=None, email=None
        )
        raise InvalidCredentials
    user_id = account.id
    valid, upgraded_hash = await hasher.verify(password, account.hashed_password, unless=client_gone)
    if not valid:
        audit.record(SecurityEvent.LOGIN_FAILED, reason="wrong_password", user_id=user_id, ip=ip)
        async with database.session() as session:
            await activity_service.record(
                session,
                user_id=user_id,
                type=ActivityType.SIGN_IN_FAILED,
                detail={"method": "password", "reason": "wrong_password"},
                where=activity_service.Where(ip, user_agent),
            )
            await session.commit()
            await lockout_service.wrong_password(
                session=session,
                settings=settings,
                dispatcher=dispatcher,
                attempt=attempt,
                user_id=user_id,
                email=address,
            )
        raise InvalidCredentials
    if not account.is_active:
        await limiter.password_right(attempt)
        audit.record(SecurityEvent.LOGIN_FAILED, reason="inactive", user_id=user_id, ip=ip)
        raise InactiveUser
    identity = signin.Identity(user_id, account.role, account.is_verified)

    async def rehash(transaction: Transaction) -> None:
        if upgraded_hash is not None:  # parameters changed, or a legacy bcrypt hash
            await transaction.rows(_REHASH, user_id=user_id, rehashed=upgraded_hash)

    try:
        issued = await signin.first_factor_passed(
            database=database,
            cache=cache,
            settings=settings,
            identity=identity,
            factor=signin.PASSWORD,
            client=signin.Client(user_agent=user_agent, ip=ip),
            also=rehash,
        )
    except IntegrityError as exc:
        # The account was deleted while its password was being checked.
        audit.record(SecurityEvent.LOGIN_FAILED, reason="account_gone", user_id=user_id, ip=ip)
        raise InvalidCredentials from exc
    # Only a finished sign-in starts the account's count over: for an account with a second factor
    # (MfaRequired above), the right password alone must not buy a fresh run of code guesses.
    await limiter.password_right(attempt)
    return issued


# Refreshing: consume the token (which names its session), or find whose it was.
class TokenSession(NamedTuple):
    session_id: str


class TokenOwner(NamedTuple):
    session_id: str
    user_id: int


_CONSUME = Prebuilt(
    sa.update(RefreshToken)
    # Not "token_hash": in an UPDATE, a column's own name is reserved for its SET value.
    .where(col(RefreshToken.token_hash) == sa.bindparam("hash"), col(RefreshToken.used_at).is_(None))
    .values(used_at=sa.bindparam("now", type_=UTCDateTime()))
    .returning(col(RefreshToken.session_id)),
    TokenSession,
)
_TOKEN_OWNER = Prebuilt(
    sa.select(col(RefreshToken.session_id), col(UserSession.user_id))
    .join_from(RefreshToken, UserSession, col(UserSession.id) == col(RefreshToken.session_id))
    .where(col(RefreshToken.token_hash) == sa.bindparam("token_hash")),
    TokenOwner,
)


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A string presented as a refresh token, hashed once for every look it gets.

    `hash` is None for a string longer than any refresh token: it is no token, and no lookup is made.
    """

    hash: str | None

    @classmethod
    def of(cls, value: str) -> PresentedToken:
        return cls(hash_refresh_token(value) if len(value) <= MAX_REFRESH_TOKEN_CHARS else None)


# Counts a refresh against the rate limit of the session its token belongs to (used or not), or,
# for a token of no session (None), against the client's address; raises RateLimited when full.
CountRefresh = Callable[[str | None], Awaitable[None]]


async def _uncounted(session_id: str | None) -> None:
    return None


async def refresh(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    token: PresentedToken,
    count: CountRefresh = _uncounted,
) -> IssuedTokens:
    """Consume a refresh token and issue a new pair in the same session.

    The consume is one conditional UPDATE, so of two concurrent refreshes only one can win.
    A token that was already consumed revokes its whole session: either a thief or the
    rightful client is replaying it, and the session cannot tell which. The consume, then
    either the session check and the new token or the reuse check and the revocation, are
    one short transaction of prebuilt statements; Redis is told once, before it commits.

    The refresh is counted (`count`) in that transaction, as soon as it knows the token's session,
    before anything else changes: a refusal rolls the consume back, so the token stays usable, and
    finding the session costs no read of its own.
    """
    if token.hash is None:
        await count(None)
        audit.record(SecurityEvent.REFRESH_FAILED, reason="unknown_token")
        raise InvalidRefreshToken
    now = utcnow()
    token_hash = token.hash
    new_token, new_hash = new_refresh_token()
    state: session_service.RefreshState | None = None
    owner: TokenOwner | None = None
    usable = False
    async with database.transaction() as transaction:
        consumed = await transaction.first(_CONSUME, hash=token_hash, now=now)
        if consumed is None:
            # Never issued, or consumed before: a replay ends the session it belongs to.
            owner = await transaction.first(_TOKEN_OWNER, token_hash=token_hash)
            await count(owner.session_id if owner is not None else None)
            if owner is not None:
                await session_service.revoke_in(
                    transaction=transaction, cache=cache, session_id=owner.session_id, now=now
                )
        else:
            session_id = consumed.session_id
            await count(session_id)
            state = await session_service.refresh_state(transaction=transaction, session_id=session_id)
            usable = session_service.usable(state, idle_seconds=settings.session_idle_ttl_seconds, now=now)
            if usable:
                if cache is not None:  # a 503 here rolls back the consume: the token stays usable
                    await cache.admit(
                        session_id,
                        user_id=state.user_id,
                        role=state.role,
                        is_verified=state.is_verified,
                        expires_at=state.expires_at,
                    )
                await session_service.touch(transaction=transaction, session_id=session_id, now=now)
                await transaction.rows(
                    signin.NEW_REFRESH_TOKEN, token_hash=new_hash, session_id=session_id, created_at=now
                )
        # A session that has ended keeps the token consumed: this commits either way.
    if state is None:
        if owner is None:
            audit.record(SecurityEvent.REFRESH_FAILED, reason="unknown_token")
        else:
            audit.record(
                SecurityEvent.REFRESH_TOKEN_REUSE, level="warning", session_id=owner.session_id, user_id=owner.user_id
            )
        raise InvalidRefreshToken
    user_id, expires_at = state.user_id, state.expires_at
    if not usable:
        audit.record(SecurityEvent.REFRESH_FAILED, reason="session_ended", user_id=user_id, session_id=session_id)
        # The session's own holder learns why it ended, so an app can say so rather than just
        # asking them to sign in again (which would fail the same way).
        if not state.is_active:
            raise InactiveUser
        raise InvalidRefreshToken
    audit.record(SecurityEvent.TOKEN_REFRESHED, user_id=user_id, session_id=session_id)
    return signin.pair(
        settings,
        user_id=user_id,
        session_id=session_id,
        expires_at=expires_at,
        refresh_token=new_token,
        amr=state.amr.split(),
        now=now,
    )


async def logout(
    *, database: Database, cache: SessionCache | None, principal: Principal, refresh_tokens: Collection[str] = ()
) -> None:
    """End the caller's session (and the sessions of refresh tokens they hand in, those that are theirs)."""
    async with database.session() as session:
        ids = [principal.session_id]
        refresh_tokens = [token for token in refresh_tokens if len(token) <= MAX_REFRESH_TOKEN_CHARS]
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


async def logout_all(*, database: Database, cache: SessionCache | None, principal: Principal) -> None:
    async with database.session() as session:
        await session_service.revoke_all(session=session, cache=cache, user_id=principal.user_id)
        await activity_service.record(
            session, user_id=principal.user_id, type=ActivityType.SESSION_REVOKED, detail={"sessions": "all"}
        )
        await session.commit()
        audit.record(SecurityEvent.LOGOUT_ALL, user_id=principal.user_id)


async def change_password(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    principal: Principal,
    current_password: str,
    new_password: str,
) -> None:
    """Set a new password after checking the current one; every other session ends.

    The check draws on the account's allowance of wrong passwords, as a sign-in does (429 while locked).
    """
    async with database.session() as session:
        user = await user_service.get_own(session=session, user_id=principal.user_id)
        attempt = await limiter.password_attempt(account_key(user.email))
        hasher = password_hasher(settings)
        valid, _ = await hasher.verify(current_password, user.hashed_password)
        if not valid:
            audit.record(
                SecurityEvent.PASSWORD_CHANGE_FAILED, reason="wrong_current_password", user_id=principal.user_id
            )
            await lockout_service.wrong_password(
                session=session,
                settings=settings,
                dispatcher=dispatcher,
                attempt=attempt,
                user_id=user.id,
                email=user.email,
            )
            raise InvalidCredentialsInput("The current password is incorrect.")
        await limiter.password_right(attempt)
        if normalize(new_password) == normalize(current_password):
            raise InvalidInput(
                loc=["body", "new_password"],
                msg="The new password must differ from the current one.",
                type_="value_error",
            )
        new_password = user_service.check_new_password(user, new_password)
        user.hashed_password = await hasher.hash(new_password)
        user.updated_at = utcnow()
        session.add(user)
        await session_service.revoke_all(
            session=session, cache=cache, user_id=principal.user_id, keep=principal.session_id
        )
        await activity_service.record(session, user_id=principal.user_id, type=ActivityType.PASSWORD_CHANGED)
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
