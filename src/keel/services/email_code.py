"""Signing in with a code sent by email: the address is the first factor.

`request` mails an 8-digit code and a link to the web UI that carries it; `verify` checks it and
hands over to the one sign-in policy (keel.services.signin), so an account with a second factor
gets 403 `mfa_required` here as after a password.

The session records the factor as RFC 8176 `otp` (`signin.ONE_TIME_CODE`): RFC 8176 has no value
for an emailed code, and `otp` is the one for a one-time code whatever carries it. What else
tells it apart from an authenticator app's code: an authenticator app is only ever a second
factor (its `otp` comes with `pwd` or `mfa` in a session's `amr`), so a session whose `amr` is
exactly `otp` was opened by an emailed code.

Nothing answers differently for an address with no account: the request is 202 with the same body
(and stores nothing: there is no account to tie a code to), and a code for it is 400 `invalid_code`
like a wrong, expired or used one. A code is single use, lives 10 minutes and survives 5 tries,
the 6th is refused even when right; a new request replaces the account's unused codes. Each try
counts against the sign-in limits of the client and of the account, as a password does, and the
request against the per-client limit of the email requests and the per-address email throttle
(keel.services.outbox). A right code also proves the address: on an account not yet verified it
is a claim (keel.services.account.claim, as a password reset's link): whoever registered the
address may be someone else, so their sessions, identities, second factors and password go.
"""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col

from keel.core import audit, email_codes
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, Prebuilt
from keel.core.errors import InactiveUser, InvalidCode
from keel.core.lockout import PasswordAttempt
from keel.core.ratelimit import RateLimiter
from keel.core.security import has_usable_password, unusable_password
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, EmailKind, EmailSignInCode, Role, User, utcnow
from keel.models.base import UTCDateTime
from keel.services import account as account_service
from keel.services import activity as activity_service
from keel.services import lockout as lockout_service
from keel.services import outbox as outbox_service
from keel.services import signin
from keel.services import user as user_service
from keel.services.outbox import Dispatcher
from keel.services.signin import IssuedTokens

CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5

_NOW = sa.bindparam("now", type_=UTCDateTime())
_OF_ADDRESS = sa.select(col(User.id)).where(col(User.email) == sa.bindparam("email")).scalar_subquery()


class CodeSignIn(NamedTuple):
    issued: IssuedTokens
    password_removed: bool  # the code claimed an unconfirmed account, whose password then went


class _Tried(NamedTuple):
    id: int
    user_id: int
    code_hash: str


class _Used(NamedTuple):
    id: int


class _Account(NamedTuple):
    id: int
    email: str
    role: Role
    is_active: bool
    is_verified: bool


# One try: counted on the live code(s) of the address's account before the code is compared, so
# two concurrent tries are both counted. An address with no account runs the same statement.
_TRY = Prebuilt(
    sa.update(EmailSignInCode)
    .where(
        col(EmailSignInCode.user_id) == _OF_ADDRESS,
        col(EmailSignInCode.used_at).is_(None),
        col(EmailSignInCode.expires_at) > _NOW,
        col(EmailSignInCode.attempts) < MAX_ATTEMPTS,
    )
    .values(attempts=col(EmailSignInCode.attempts) + 1)
    .returning(col(EmailSignInCode.id), col(EmailSignInCode.user_id), col(EmailSignInCode.code_hash)),
    _Tried,
)
# Of two concurrent right tries only one marks the code used.
_USE = Prebuilt(
    sa.update(EmailSignInCode)
    .where(col(EmailSignInCode.id) == sa.bindparam("code_id"), col(EmailSignInCode.used_at).is_(None))
    .values(used_at=_NOW)
    .returning(col(EmailSignInCode.id)),
    _Used,
)
# A new code replaces the account's unused ones.
_REPLACE = sa.delete(EmailSignInCode).where(
    col(EmailSignInCode.user_id) == _OF_ADDRESS, col(EmailSignInCode.used_at).is_(None)
)
_ACCOUNT = Prebuilt(
    sa.select(col(User.id), col(User.email), col(User.role), col(User.is_active), col(User.is_verified)).where(
        col(User.id) == sa.bindparam("user_id")
    ),
    _Account,
)


async def request(*, database: Database, settings: Settings, dispatcher: Dispatcher, email: str) -> None:
    """Mail a new code to the account of `email`, replacing its unused ones; for no account, nothing.

    Throttled (the address had its share of emails this hour), nothing changes: earlier codes stay.
    """
    address = email.strip().lower()
    async with database.session() as session:
        user = await user_service.get_by_email(session=session, email=address)
        if user is None or user.id is None:
            # The same reads and the same (empty) delete as for an account, so the answer takes as long.
            await outbox_service.throttled(session=session, settings=settings, to_address=address)
            await session.exec(_REPLACE, params={"email": address})
            await session.commit()
            audit.record(SecurityEvent.SIGN_IN_CODE_REQUESTED, user_id=None)
            return
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.SIGN_IN_CODE, to_address=user.email, user_id=user.id
        )
        if row is not None:
            await session.flush()  # the row's id, from which the code is derived
            assert row.id is not None
            code = email_codes.derive(settings, outbox_id=row.id, created_at=row.created_at, to_address=row.to_address)
            now = utcnow()
            await session.exec(_REPLACE, params={"email": address})
            session.add(
                EmailSignInCode(
                    user_id=user.id,
                    code_hash=email_codes.hash_code(settings, user_id=user.id, code=code),
                    created_at=now,
                    expires_at=now + CODE_TTL,
                )
            )
        await session.commit()
        await outbox_service.dispatch_after_commit(dispatcher, [row])
        audit.record(SecurityEvent.SIGN_IN_CODE_REQUESTED, user_id=user.id, throttled=row is None)


async def verify(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    attempt: PasswordAttempt,
    email: str,
    code: str,
    user_agent: str | None,
    ip: str | None,
) -> CodeSignIn:
    """Check the code; then the sign-in policy opens a session or asks for the second factor.

    `attempt` is this try, already counted against the account and the client (keel.core.lockout).
    """
    address = email.strip().lower()
    now = utcnow()
    used: _Tried | None = None
    async with database.transaction() as transaction:
        tried = await transaction.rows(_TRY, email=address, now=now)
        for candidate in tried:
            if email_codes.matches(settings, user_id=candidate.user_id, code=code, code_hash=candidate.code_hash):
                if await transaction.first(_USE, code_id=candidate.id, now=now) is not None:
                    used = candidate
                break
        if not tried:
            # No live code: the same keyed hash is computed, so the answer takes as long.
            email_codes.matches(settings, user_id=0, code=code, code_hash="")
    if used is None:
        await _wrong(
            database, settings, dispatcher, attempt, tried[0].user_id if tried else None, address, ip, user_agent
        )
        raise InvalidCode
    account = await database.first(_ACCOUNT, user_id=used.user_id)
    if account is None:  # deleted since: its codes went with it
        raise InvalidCode
    if not account.is_active:
        await limiter.password_right(attempt)
        audit.record(SecurityEvent.LOGIN_FAILED, reason="inactive", user_id=account.id, ip=ip)
        raise InactiveUser

    password_removed = False
    if not account.is_verified:
        password_removed = await _claim(database, cache, account.id)
    issued = await signin.first_factor_passed(
        database=database,
        cache=cache,
        settings=settings,
        identity=signin.Identity(account.id, account.role, True),
        factor=signin.ONE_TIME_CODE,
        client=signin.Client(user_agent=user_agent, ip=ip),
    )
    await limiter.password_right(attempt)
    return CodeSignIn(issued, password_removed)


async def spend_own(*, database: Database, settings: Settings, user_id: int, email: str, code: str) -> bool:
    """Use a live code of the account `user_id` (address `email`); False if it is not one.

    How a signed-in account proves it is still its owner without a password (/auth/reauthenticate):
    the same count of tries and the same single use as a sign-in by code.
    """
    now = utcnow()
    async with database.transaction() as transaction:
        for candidate in await transaction.rows(_TRY, email=email, now=now):
            if candidate.user_id == user_id and email_codes.matches(
                settings, user_id=user_id, code=code, code_hash=candidate.code_hash
            ):
                return await transaction.first(_USE, code_id=candidate.id, now=now) is not None
    return False


async def _claim(database: Database, cache: SessionCache | None, user_id: int) -> bool:
    """The code proved the address of a never-confirmed account: its owner claims it (`account.claim`).

    Committed before the sign-in policy runs, so a second factor the registrant set up cannot
    stand between the owner and the account; the registrant's password stops working too.
    True when that removed a password (the owner is told: `password_removed`).
    """
    async with database.session() as session:
        user = await session.get(User, user_id)
        if user is None or user.is_verified:  # deleted, or claimed by a concurrent right code
            return False
        had_password = has_usable_password(user.hashed_password)
        await account_service.claim(session=session, cache=cache, user=user)
        user.hashed_password = unusable_password()
        await session.commit()
    audit.record(SecurityEvent.EMAIL_VERIFIED, user_id=user_id)
    audit.record(SecurityEvent.ACCOUNT_CLAIMED, user_id=user_id, password_removed=had_password)
    return had_password


async def _wrong(
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    attempt: PasswordAttempt,
    user_id: int | None,
    email: str,
    ip: str | None,
    user_agent: str | None,
) -> None:
    audit.record(SecurityEvent.LOGIN_FAILED, reason="wrong_code", user_id=user_id, ip=ip)
    if user_id is None:
        await lockout_service.wrong_password(
            session=None, settings=settings, dispatcher=dispatcher, attempt=attempt, user_id=None, email=None
        )
        return
    async with database.session() as session:
        await activity_service.record(
            session,
            user_id=user_id,
            type=ActivityType.SIGN_IN_FAILED,
            detail={"method": "email_code", "reason": "wrong_code"},
            where=activity_service.Where(ip, user_agent),
        )
        await session.commit()
        await lockout_service.wrong_password(
            session=session, settings=settings, dispatcher=dispatcher, attempt=attempt, user_id=user_id, email=email
        )
