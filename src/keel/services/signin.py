"""The one sign-in policy: a first factor either opens a session or asks for the second.

Every way to prove who one is (a password, an emailed code, a social account) ends in
`first_factor_passed`, and only there is it decided whether tokens are handed out: an account with
a second factor (an authenticator app or a passkey) gets 403 `mfa_required` with an `mfa_token`
instead, and the sign-in finishes only through `finish_pending` (called by /mfa/verify and by
/passkeys/authenticate). A passkey sign-in with user verification is complete on its own and
calls `open_session` directly, as nothing else may.

Each session keeps how it was made (`amr`, RFC 8176 values) and when its user last proved who they
are (`authenticated_at`), which sensitive operations require to be recent.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import col

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, NoRows, Prebuilt, Transaction
from keel.core.errors import InactiveUser, InvalidMfaToken, MfaRequired
from keel.core.ratelimit import RateLimiter, account_key
from keel.core.security import create_access_token, new_refresh_token, new_session_id
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, PendingSignIn, RefreshToken, Role, User, UserSession, utcnow
from keel.models.base import UTCDateTime
from keel.models.mfa import Passkey, RecoveryCode, TotpCredential
from keel.schemas.auth import TokenPair
from keel.services import activity as activity_service
from keel.services import device as device_service

# How long a first factor waits for its second, and how many wrong codes it survives.
PENDING_TTL = timedelta(minutes=5)
PENDING_MAX_FAILURES = 5

# RFC 8176 method references.
PASSWORD = "pwd"
ONE_TIME_CODE = "otp"
FEDERATED = "fed"
HARDWARE_KEY = "hwk"
USER_VERIFIED = "user"
MULTI_FACTOR = "mfa"

# How a sign-in began, by its first factor, as the activity log names it.
METHODS = {PASSWORD: "password", ONE_TIME_CODE: "email_code", FEDERATED: "provider", HARDWARE_KEY: "passkey"}

# The second factors a pending sign-in can be finished with, as `methods` names them.
TOTP_METHOD = "totp"
PASSKEY_METHOD = "passkey"
RECOVERY_CODE_METHOD = "recovery_code"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    pair: TokenPair
    # How long the new refresh token stays usable if it is not used: the idle limit, or less when
    # the session's absolute end comes first. A refresh cookie lives exactly this long.
    refresh_expires_in: int
    session_id: str
    # A new browser's device cookie to set (keel.services.device), else None.
    device_cookie: str | None = None
    # The new-device notice this sign-in queued, to hand to the dispatcher once committed.
    notice_id: int | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """Where a sign-in comes from, as its session records it."""

    user_agent: str | None
    ip: str | None
    identity_id: int | None = None  # a provider sign-in's linked identity

    def columns(self) -> dict[str, str | int | None]:
        return {
            "user_agent": (self.user_agent or "")[:255] or None,
            "ip": (self.ip or "")[:45] or None,
            "identity_id": self.identity_id,
        }


class Identity(NamedTuple):
    """The account a first factor proved, as much of it as a session needs."""

    id: int
    role: Role
    is_verified: bool


# Runs inside the sign-in's transaction, before anything else (a password rehash, say).
Also = Callable[[Transaction], Awaitable[None]]


def pair(
    settings: Settings,
    *,
    user_id: int,
    session_id: str,
    expires_at: datetime,
    refresh_token: str,
    amr: Sequence[str],
    now: datetime,
) -> IssuedTokens:
    """The token pair of a session that ends at `expires_at`, issued `now`."""
    tokens = TokenPair(
        access_token=create_access_token(settings, user_id=user_id, session_id=session_id, amr=amr, now=now),
        refresh_token=refresh_token,
        expires_in=settings.access_token_ttl_seconds,
    )
    remaining = int((expires_at - now).total_seconds())
    idle = max(min(settings.session_idle_ttl_seconds, remaining), 0)
    return IssuedTokens(pair=tokens, refresh_expires_in=idle, session_id=session_id)


class SecondFactors(NamedTuple):
    totp: bool
    passkeys: int
    recovery_codes: int

    @property
    def required(self) -> bool:
        """Recovery codes alone are no second factor: they stand in for one that was lost."""
        return self.totp or self.passkeys > 0

    @property
    def methods(self) -> list[str]:
        methods = [TOTP_METHOD] if self.totp else []
        if self.passkeys:
            methods.append(PASSKEY_METHOD)
        if self.recovery_codes:
            methods.append(RECOVERY_CODE_METHOD)
        return methods


_USER: sa.BindParameter[int] = sa.bindparam("user_id")
SECOND_FACTORS = Prebuilt(
    sa.select(
        sa.exists()
        .where(col(TotpCredential.user_id) == _USER, col(TotpCredential.confirmed_at).is_not(None))
        .label("totp"),
        sa.select(sa.func.count()).where(col(Passkey.user_id) == _USER).scalar_subquery().label("passkeys"),
        sa.select(sa.func.count())
        .where(col(RecoveryCode.user_id) == _USER, col(RecoveryCode.used_at).is_(None))
        .scalar_subquery()
        .label("recovery_codes"),
    ),
    SecondFactors,
)
_NEW_SESSION = Prebuilt(
    sa.insert(UserSession),
    NoRows,
    binds=[
        "id",
        "user_id",
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "ip",
        "amr",
        "authenticated_at",
        "identity_id",
    ],
)
NEW_REFRESH_TOKEN = Prebuilt(sa.insert(RefreshToken), NoRows, binds=["token_hash", "session_id", "created_at"])
_NEW_PENDING = Prebuilt(
    sa.insert(PendingSignIn),
    NoRows,
    binds=[
        "token_hash",
        "user_id",
        "first_factor",
        "failures",
        "created_at",
        "expires_at",
        "user_agent",
        "ip",
        "identity_id",
    ],
)


async def second_factors(*, database: Database, user_id: int) -> SecondFactors:
    found = await database.first(SECOND_FACTORS, user_id=user_id)
    assert found is not None  # a SELECT of aggregates has its one row
    return found


async def has_second_factor(*, database: Database, user_id: int) -> bool:
    return (await second_factors(database=database, user_id=user_id)).required


def hash_mfa_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def first_factor_passed(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    identity: Identity,
    factor: str,
    client: Client,
    also: Also | None = None,
) -> IssuedTokens:
    """The policy: open a session, or (the account has a second factor) raise `MfaRequired`.

    The second factors are read in the transaction that writes the session, so a factor enabled
    before it commits is seen by the next sign-in at the latest. `also` runs first in that
    transaction (and is committed either way).
    """
    now = utcnow()
    pending_token: str | None = None
    async with database.transaction() as transaction:
        if also is not None:
            await also(transaction)
        factors = await transaction.first(SECOND_FACTORS, user_id=identity.id)
        assert factors is not None  # a SELECT of aggregates has its one row
        if factors.required:
            pending_token = secrets.token_urlsafe(32)
            await transaction.rows(
                _NEW_PENDING,
                token_hash=hash_mfa_token(pending_token),
                user_id=identity.id,
                first_factor=factor,
                failures=0,
                created_at=now,
                expires_at=now + PENDING_TTL,
                **client.columns(),
            )
        else:
            issued = await _open(transaction, cache, settings, identity=identity, amr=[factor], client=client, now=now)
    if pending_token is not None:
        audit.record(SecurityEvent.MFA_REQUIRED, user_id=identity.id, first_factor=factor, ip=client.ip)
        raise MfaRequired(mfa_token=pending_token, methods=factors.methods, expires_in=int(PENDING_TTL.total_seconds()))
    await device_service.send_notice(issued.notice_id)
    audit.record(
        SecurityEvent.LOGIN_SUCCEEDED, user_id=identity.id, session_id=issued.session_id, amr=factor, ip=client.ip
    )
    return issued


async def open_session(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    identity: Identity,
    amr: Sequence[str],
    client: Client,
    also: Also | None = None,
) -> IssuedTokens:
    """A new session for a sign-in that is already complete (a passkey with user verification)."""
    now = utcnow()
    async with database.transaction() as transaction:
        if also is not None:
            await also(transaction)
        issued = await _open(transaction, cache, settings, identity=identity, amr=amr, client=client, now=now)
    await device_service.send_notice(issued.notice_id)
    audit.record(
        SecurityEvent.LOGIN_SUCCEEDED,
        user_id=identity.id,
        session_id=issued.session_id,
        amr=" ".join(amr),
        ip=client.ip,
    )
    return issued


async def _open(
    transaction: Transaction,
    cache: SessionCache | None,
    settings: Settings,
    *,
    identity: Identity,
    amr: Sequence[str],
    client: Client,
    now: datetime,
) -> IssuedTokens:
    session_id = new_session_id()
    expires_at = now + timedelta(seconds=settings.session_absolute_ttl_seconds)
    refresh_token, token_hash = new_refresh_token()
    if cache is not None:
        # Should the writes fail, this entry names a session that never existed and expires unused.
        await cache.admit(
            session_id, user_id=identity.id, role=identity.role, is_verified=identity.is_verified, expires_at=expires_at
        )
    await transaction.rows(
        _NEW_SESSION,
        id=session_id,
        user_id=identity.id,
        created_at=now,
        last_used_at=now,
        expires_at=expires_at,
        amr=" ".join(amr),
        authenticated_at=now,
        **client.columns(),
    )
    await transaction.rows(NEW_REFRESH_TOKEN, token_hash=token_hash, session_id=session_id, created_at=now)
    method = METHODS.get(amr[0], amr[0])
    where = activity_service.Where(client.ip, client.user_agent)
    await activity_service.record(
        transaction,
        user_id=identity.id,
        type=ActivityType.SIGN_IN,
        detail={"method": method, "amr": list(amr)},
        where=where,
        now=now,
    )
    device = device_service.identify(user_id=identity.id, ip=client.ip, user_agent=client.user_agent)
    notice_id = await device_service.seen(
        transaction, settings, user_id=identity.id, device=device, method=method, where=where, now=now
    )
    issued = pair(
        settings,
        user_id=identity.id,
        session_id=session_id,
        expires_at=expires_at,
        refresh_token=refresh_token,
        amr=amr,
        now=now,
    )
    return replace(issued, device_cookie=device.new_cookie, notice_id=notice_id)


# --- finishing a pending sign-in --------------------------------------------------------------
class Pending(NamedTuple):
    token_hash: str
    user_id: int
    first_factor: str
    failures: int
    user_agent: str | None
    ip: str | None
    identity_id: int | None
    email: str
    role: Role
    is_verified: bool
    is_active: bool


_PENDING_COLUMNS = (
    col(PendingSignIn.token_hash),
    col(PendingSignIn.user_id),
    col(PendingSignIn.first_factor),
    col(PendingSignIn.failures),
    col(PendingSignIn.user_agent),
    col(PendingSignIn.ip),
    col(PendingSignIn.identity_id),
    col(User.email),
    col(User.role),
    col(User.is_verified),
    col(User.is_active),
)
_NOW = sa.bindparam("now", type_=UTCDateTime())


class _Consumed(NamedTuple):
    token_hash: str


class _Failures(NamedTuple):
    failures: int


_PENDING = Prebuilt(
    sa.select(*_PENDING_COLUMNS)
    .join_from(PendingSignIn, User, col(User.id) == col(PendingSignIn.user_id))
    .where(col(PendingSignIn.token_hash) == sa.bindparam("token_hash"), col(PendingSignIn.expires_at) > _NOW),
    Pending,
)
# Finishing consumes the row: of two concurrent finishes only one deletes it.
_CONSUME_PENDING = Prebuilt(
    sa.delete(PendingSignIn)
    .where(col(PendingSignIn.token_hash) == sa.bindparam("token_hash"), col(PendingSignIn.expires_at) > _NOW)
    .returning(col(PendingSignIn.token_hash)),
    _Consumed,
)
# A try is taken before its answer is checked, so concurrent wrong answers cannot outrun the limit.
_TAKE_TRY = Prebuilt(
    sa.update(PendingSignIn)
    .where(
        col(PendingSignIn.token_hash) == sa.bindparam("hash"),
        col(PendingSignIn.failures) < PENDING_MAX_FAILURES,
        col(PendingSignIn.expires_at) > _NOW,
    )
    .values(failures=col(PendingSignIn.failures) + 1)
    .returning(col(PendingSignIn.failures)),
    _Failures,
)
_DROP_SPENT = Prebuilt(
    sa.delete(PendingSignIn).where(
        col(PendingSignIn.token_hash) == sa.bindparam("token_hash"),
        col(PendingSignIn.failures) >= PENDING_MAX_FAILURES,
    ),
    NoRows,
)
_DROP_PENDING = Prebuilt(
    sa.delete(PendingSignIn).where(col(PendingSignIn.token_hash) == sa.bindparam("token_hash")), NoRows
)
_DROP_EXPIRED = Prebuilt(sa.delete(PendingSignIn).where(col(PendingSignIn.expires_at) <= _NOW), NoRows)


async def pending(*, database: Database, mfa_token: str) -> Pending:
    """The live pending sign-in an `mfa_token` names, with its account; else 401 `invalid_mfa_token`."""
    if not mfa_token or len(mfa_token) > 128:
        raise InvalidMfaToken
    found = await database.first(_PENDING, token_hash=hash_mfa_token(mfa_token), now=utcnow())
    if found is None:
        raise InvalidMfaToken
    return found


async def take_try(*, database: Database, sign_in: Pending) -> None:
    """Take one of the pending sign-in's five tries, before its answer is checked (401 when none is left).

    Taken first, so that many answers sent at once cannot all be checked: the sixth is refused
    whatever it holds. The try that finishes the sign-in is spent with the whole row.
    """
    taken = await database.first(_TAKE_TRY, hash=sign_in.token_hash, now=utcnow())
    if taken is None:
        raise InvalidMfaToken


async def second_factor_failed(*, database: Database, sign_in: Pending) -> None:
    """A wrong second factor (its try already taken): the last try's failure ends the pending sign-in."""
    async with database.transaction() as transaction:
        await transaction.rows(_DROP_SPENT, token_hash=sign_in.token_hash)
        # Expired rows of anyone go with a failure: cheap, and rare.
        await transaction.rows(_DROP_EXPIRED, now=utcnow())
    audit.record(SecurityEvent.MFA_FAILED, level="warning", user_id=sign_in.user_id, ip=sign_in.ip)


async def finish_pending(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    limiter: RateLimiter,
    sign_in: Pending,
    second: Sequence[str],
    also: Also | None = None,
) -> IssuedTokens:
    """Finish a pending sign-in whose second factor was just checked: consume it, open the session.

    `also` runs in the same transaction after the consume (marking a recovery code used, say), so
    a second factor is spent only by the sign-in that it finishes. Once it is committed, the
    account's count of sign-in checks starts over: the first factor left it counted (keel.core.lockout).
    """
    if not sign_in.is_active:
        raise InactiveUser
    now = utcnow()
    amr = [sign_in.first_factor, *(value for value in second if value != sign_in.first_factor), MULTI_FACTOR]
    async with database.transaction() as transaction:
        consumed = await transaction.first(_CONSUME_PENDING, token_hash=sign_in.token_hash, now=now)
        if consumed is None:
            raise InvalidMfaToken
        if also is not None:
            await also(transaction)
        issued = await _open(
            transaction,
            cache,
            settings,
            identity=Identity(sign_in.user_id, sign_in.role, sign_in.is_verified),
            amr=amr,
            client=Client(user_agent=sign_in.user_agent, ip=sign_in.ip, identity_id=sign_in.identity_id),
            now=now,
        )
    await device_service.send_notice(issued.notice_id)
    await limiter.clear_account(account_key(sign_in.email))
    audit.record(
        SecurityEvent.LOGIN_SUCCEEDED,
        user_id=sign_in.user_id,
        session_id=issued.session_id,
        amr=" ".join(amr),
        ip=sign_in.ip,
    )
    return issued
