"""Authenticator-app codes (TOTP) and recovery codes: setting them up, and proving one.

A code is good once: the time step of the last accepted code is kept, and a code of that step or
an earlier one is refused; the step is written by a conditional UPDATE, so two requests racing
with the same code cannot both win. Recovery codes are kept as keyed hashes and marked used the
same way. Turning a factor on or off ends every other session, mails the owner and is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit, recovery_codes, secret_box, totp
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import (
    EditConflict,
    InvalidCode,
    InvalidCredentialsInput,
    MfaNotEnabled,
    TotpAlreadyEnabled,
    TotpNotEnabled,
    UserNotFound,
)
from keel.core.lockout import PasswordAttempt
from keel.core.logging import get_logger
from keel.core.ratelimit import RateLimiter, account_key
from keel.core.security import password_hasher
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, EmailKind, User, utcnow
from keel.models.base import UTCDateTime
from keel.models.mfa import Passkey, PendingSignIn, RecoveryCode, TotpCredential, WebauthnChallenge
from keel.schemas.mfa import MfaStatus, RecoveryCodes, TotpSetup
from keel.services import activity as activity_service
from keel.services import email_code as email_code_service
from keel.services import lockout as lockout_service
from keel.services import outbox as outbox_service
from keel.services import session as session_service
from keel.services import signin
from keel.services import user as user_service
from keel.services.outbox import Dispatcher
from keel.services.session import Principal
from keel.services.signin import IssuedTokens

TOTP_PURPOSE = "totp"
log = get_logger("keel.mfa")


async def status(*, database: Database, principal: Principal) -> MfaStatus:
    factors = await signin.second_factors(database=database, user_id=principal.user_id)
    return MfaStatus(totp=factors.totp, passkeys=factors.passkeys, recovery_codes_left=factors.recovery_codes)


# --- setting up an authenticator app -------------------------------------------------------------
async def totp_setup(*, database: Database, settings: Settings, principal: Principal) -> TotpSetup:
    """A new secret, pending until `totp_confirm`; setting up again before that replaces it."""
    async with database.session() as session:
        user = await user_service.get_own(session=session, user_id=principal.user_id)
        credential = await session.get(TotpCredential, principal.user_id)
        if credential is not None and credential.confirmed_at is not None:
            raise TotpAlreadyEnabled
        secret = totp.new_secret()
        sealed = secret_box.seal(settings.secret, secret, purpose=TOTP_PURPOSE, user_id=principal.user_id)
        if credential is None:
            credential = TotpCredential(user_id=principal.user_id, secret=sealed)
        else:
            credential.secret, credential.last_used_step, credential.created_at = sealed, None, utcnow()
        session.add(credential)
        try:
            await session.commit()
        except IntegrityError as exc:  # two setups at once, both inserting: the other one's secret stands
            raise EditConflict("Another setup of an authenticator app started at the same moment.") from exc
    uri = totp.provisioning_uri(secret, user.email)
    return TotpSetup(secret=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))


async def totp_confirm(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    code: str,
) -> RecoveryCodes:
    """Turn the pending secret on with a first code from the app; a fresh set of recovery codes."""
    async with database.session() as session:
        credential = await session.get(TotpCredential, principal.user_id, with_for_update=True)
        if credential is None or credential.confirmed_at is not None:
            raise InvalidCode("There is no authenticator app setup waiting to be confirmed; start the setup again.")
        secret = _unseal(settings, credential.secret, principal.user_id)
        step = None if secret is None else totp.matching_step(secret, code, now=utcnow(), last_used_step=None)
        if step is None:
            raise InvalidCode
        credential.confirmed_at, credential.last_used_step = utcnow(), step
        session.add(credential)
        codes = await _replace_recovery_codes(session, settings, principal.user_id)
        await activity_service.record(
            session, user_id=principal.user_id, type=ActivityType.MFA_ENABLED, detail={"method": "totp"}
        )
        await _factor_changed(session, cache, settings, dispatcher, principal, EmailKind.SECOND_FACTOR_ADDED)
    audit.record(SecurityEvent.TOTP_ENABLED, user_id=principal.user_id, session_id=principal.session_id)
    return RecoveryCodes(recovery_codes=codes)


async def totp_disable(
    *, database: Database, cache: SessionCache | None, settings: Settings, dispatcher: Dispatcher, principal: Principal
) -> None:
    async with database.session() as session:
        credential = await session.get(TotpCredential, principal.user_id)
        if credential is None or credential.confirmed_at is None:
            raise TotpNotEnabled
        await session.delete(credential)
        await session.flush()
        await activity_service.record(
            session, user_id=principal.user_id, type=ActivityType.MFA_DISABLED, detail={"method": "totp"}
        )
        await _factor_changed(session, cache, settings, dispatcher, principal, EmailKind.SECOND_FACTOR_REMOVED)
    audit.record(SecurityEvent.TOTP_DISABLED, user_id=principal.user_id, session_id=principal.session_id)


async def regenerate_recovery_codes(*, database: Database, settings: Settings, principal: Principal) -> RecoveryCodes:
    """A new set of codes, replacing the old; 409 `mfa_not_enabled` without a second factor to stand in for."""
    async with database.session() as session:
        await user_service.get_own(session=session, user_id=principal.user_id)
        if not await _has_second_factor(session, principal.user_id):
            raise MfaNotEnabled
        codes = await _replace_recovery_codes(session, settings, principal.user_id)
        await session.commit()
    audit.record(SecurityEvent.RECOVERY_CODES_GENERATED, user_id=principal.user_id, session_id=principal.session_id)
    return RecoveryCodes(recovery_codes=codes)


async def _replace_recovery_codes(session: AsyncSession, settings: Settings, user_id: int) -> list[str]:
    await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
    codes = recovery_codes.generate()
    now = utcnow()
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=recovery_codes.hash_code(settings.secret, code), created_at=now)
        for code in codes
    )
    return codes


async def _has_second_factor(session: AsyncSession, user_id: int) -> bool:
    totp = await session.get(TotpCredential, user_id)
    if totp is not None and totp.confirmed_at is not None:
        return True
    return (await session.exec(select(sa.func.count()).where(col(Passkey.user_id) == user_id))).one() > 0


async def _factor_changed(
    session: AsyncSession,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    kind: EmailKind,
) -> None:
    """Every other session ends and the owner is told; commits the caller's transaction."""
    await factor_changed(
        session, cache, settings, dispatcher, user_id=principal.user_id, keep=principal.session_id, kind=kind
    )


async def factor_changed(
    session: AsyncSession,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    *,
    user_id: int,
    keep: str | None,
    kind: EmailKind,
) -> None:
    """A second factor was added or removed (already flushed): end the user's sessions but `keep`,
    mail them, commit. When the last factor went, the recovery codes go too: they stand in for a
    lost factor, and with none left they would only be one more way in."""
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound
    if kind is EmailKind.SECOND_FACTOR_REMOVED and not await _has_second_factor(session, user_id):
        await session.exec(delete(RecoveryCode).where(col(RecoveryCode.user_id) == user_id))
    await session_service.revoke_all(session=session, cache=cache, user_id=user_id, keep=keep)
    row = await outbox_service.enqueue(
        session=session, settings=settings, kind=kind, to_address=user.email, user_id=user_id
    )
    await session.commit()
    await outbox_service.dispatch_after_commit(dispatcher, [row])


def _unseal(settings: Settings, sealed: str, user_id: int) -> str | None:
    """The app's secret, or None when it cannot be opened (the secret key changed since it was
    sealed): no code can match it then, and the owner signs in with a recovery code or a passkey."""
    try:
        return secret_box.unseal(settings.secret, sealed, purpose=TOTP_PURPOSE, user_id=user_id)
    except secret_box.SecretBoxError:
        log.error("totp_secret_unreadable", user_id=user_id)
        return None


# --- proving a code ------------------------------------------------------------------------------
class _TotpState(NamedTuple):
    secret: str
    last_used_step: int | None


class _Step(NamedTuple):
    last_used_step: int


class _Used(NamedTuple):
    id: int


_TOTP = Prebuilt(
    sa.select(col(TotpCredential.secret), col(TotpCredential.last_used_step)).where(
        col(TotpCredential.user_id) == sa.bindparam("user_id"), col(TotpCredential.confirmed_at).is_not(None)
    ),
    _TotpState,
)
# Only a later step than the last one used: of two requests with the same code, one wins.
_USE_STEP = Prebuilt(
    sa.update(TotpCredential)
    .where(
        # Not "user_id": in an UPDATE, a column's own name is reserved for its SET value.
        col(TotpCredential.user_id) == sa.bindparam("owner"),
        sa.or_(
            col(TotpCredential.last_used_step).is_(None),
            col(TotpCredential.last_used_step) < sa.bindparam("step", type_=sa.BigInteger()),
        ),
    )
    .values(last_used_step=sa.bindparam("step", type_=sa.BigInteger()))
    .returning(col(TotpCredential.last_used_step)),
    _Step,
)
_USE_RECOVERY_CODE = Prebuilt(
    sa.update(RecoveryCode)
    .where(
        col(RecoveryCode.user_id) == sa.bindparam("owner"),
        col(RecoveryCode.code_hash) == sa.bindparam("hash"),
        col(RecoveryCode.used_at).is_(None),
    )
    .values(used_at=sa.bindparam("now", type_=UTCDateTime()))
    .returning(col(RecoveryCode.id)),
    _Used,
)


class Proof(NamedTuple):
    """A second factor that checked out, and how to spend it inside the transaction that uses it."""

    method: str  # the `amr` value it adds
    step: int | None = None  # a TOTP code's time step
    code_hash: str | None = None  # a recovery code's hash

    async def spend(self, transaction: Transaction, user_id: int, now: datetime) -> None:
        """Mark the code used; `InvalidCode` (rolling the transaction back) if a racing request did first."""
        if self.step is not None:
            spent = await transaction.first(_USE_STEP, owner=user_id, step=self.step) is not None
        else:
            used = await transaction.first(_USE_RECOVERY_CODE, owner=user_id, hash=self.code_hash, now=now)
            spent = used is not None
        if not spent:
            raise InvalidCode


async def check_code(
    *, database: Database, settings: Settings, user_id: int, code: str | None, recovery_code: str | None
) -> Proof | None:
    """Whether a TOTP code or a recovery code is good for the user now (not yet spent)."""
    if code is not None:
        state = await database.first(_TOTP, user_id=user_id)
        if state is None:
            return None
        secret = _unseal(settings, state.secret, user_id)
        if secret is None:
            return None
        step = totp.matching_step(secret, code, now=utcnow(), last_used_step=state.last_used_step)
        return Proof(signin.ONE_TIME_CODE, step=step) if step is not None else None
    if recovery_code is None or recovery_codes.normalize(recovery_code) is None:
        return None
    async with database.session() as session:
        hashes = await session.exec(
            select(RecoveryCode.code_hash).where(
                col(RecoveryCode.user_id) == user_id, col(RecoveryCode.used_at).is_(None)
            )
        )
        for code_hash in hashes:
            if recovery_codes.verify(settings.secret, recovery_code, code_hash):
                return Proof(signin.ONE_TIME_CODE, code_hash=code_hash)
    return None


async def _recovery_code_used(
    database: Database, settings: Settings, dispatcher: Dispatcher, *, user_id: int, email: str
) -> None:
    async with database.session() as session:
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.RECOVERY_CODE_USED, to_address=email, user_id=user_id
        )
        await session.commit()
    await outbox_service.dispatch_after_commit(dispatcher, [row])
    audit.record(SecurityEvent.RECOVERY_CODE_USED, level="warning", user_id=user_id)


async def verify(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    mfa_token: str,
    code: str | None,
    recovery_code: str | None,
) -> IssuedTokens:
    """Finish a pending sign-in with a code. Each try counts against the account's sign-in budget;
    the fifth wrong code ends the pending sign-in."""
    sign_in = await signin.pending(database=database, mfa_token=mfa_token)
    attempt = await limiter.password_attempt(account_key(sign_in.email))
    await signin.take_try(database=database, sign_in=sign_in)
    proof = await check_code(
        database=database, settings=settings, user_id=sign_in.user_id, code=code, recovery_code=recovery_code
    )
    if proof is None:
        await signin.second_factor_failed(database=database, sign_in=sign_in)
        await _wrong(database, settings, dispatcher, attempt, user_id=sign_in.user_id, email=sign_in.email)
        raise InvalidCode

    async def spend(transaction: Transaction) -> None:
        await proof.spend(transaction, sign_in.user_id, utcnow())

    issued = await signin.finish_pending(
        database=database,
        cache=cache,
        settings=settings,
        limiter=limiter,
        sign_in=sign_in,
        second=[proof.method],
        also=spend,
    )
    if proof.code_hash is not None:
        await _recovery_code_used(database, settings, dispatcher, user_id=sign_in.user_id, email=sign_in.email)
    return issued


async def _wrong(
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    attempt: PasswordAttempt,
    *,
    user_id: int,
    email: str,
) -> None:
    """A wrong code counts as a wrong password does: the lock that it completes mails the owner."""
    if attempt.locks:
        async with database.session() as session:
            await lockout_service.wrong_password(
                session=session, settings=settings, dispatcher=dispatcher, attempt=attempt, user_id=user_id, email=email
            )


async def reauthenticate(
    *,
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    principal: Principal,
    password: str | None,
    code: str | None,
    recovery_code: str | None,
    email_code: str | None = None,
) -> None:
    """Prove again who one is, so the session counts as recently authenticated (10 minutes).

    Counts against the account's sign-in budget as a sign-in does (429 while it is locked).
    """
    async with database.session() as session:
        user = await user_service.get_own(session=session, user_id=principal.user_id)
    assert user.id is not None
    attempt = await limiter.password_attempt(account_key(user.email))
    if password is not None:
        valid, _ = await password_hasher(settings).verify(password, user.hashed_password)
        if not valid:
            audit.record(SecurityEvent.REAUTHENTICATION_FAILED, user_id=user.id, session_id=principal.session_id)
            await _wrong(database, settings, dispatcher, attempt, user_id=user.id, email=user.email)
            raise InvalidCredentialsInput("The password is incorrect.")
    elif email_code is not None:
        if not await email_code_service.spend_own(
            database=database, settings=settings, user_id=user.id, email=user.email, code=email_code
        ):
            audit.record(SecurityEvent.REAUTHENTICATION_FAILED, user_id=user.id, session_id=principal.session_id)
            await _wrong(database, settings, dispatcher, attempt, user_id=user.id, email=user.email)
            raise InvalidCode
    else:
        proof = await check_code(
            database=database, settings=settings, user_id=user.id, code=code, recovery_code=recovery_code
        )
        if proof is None:
            audit.record(SecurityEvent.REAUTHENTICATION_FAILED, user_id=user.id, session_id=principal.session_id)
            await _wrong(database, settings, dispatcher, attempt, user_id=user.id, email=user.email)
            raise InvalidCode
        async with database.transaction() as transaction:
            await proof.spend(transaction, user.id, utcnow())
        if proof.code_hash is not None:
            await _recovery_code_used(database, settings, dispatcher, user_id=user.id, email=user.email)
    await limiter.password_right(attempt)
    await session_service.mark_authenticated(database=database, principal=principal)
    audit.record(SecurityEvent.REAUTHENTICATED, user_id=user.id, session_id=principal.session_id)


# --- an administrator's reset --------------------------------------------------------------------
async def reset(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    admin: Principal,
    user_id: int,
) -> None:
    """Remove every second factor of a user (who lost them all) and end all their sessions."""
    async with database.session() as session:
        if await session.get(User, user_id) is None:
            raise UserNotFound
        for model in (TotpCredential, RecoveryCode, Passkey, PendingSignIn, WebauthnChallenge):
            await session.exec(delete(model).where(col(model.user_id) == user_id))
        await activity_service.record(
            session, user_id=user_id, type=ActivityType.MFA_DISABLED, detail={"method": "all", "by": "admin"}
        )
        await factor_changed(
            session, cache, settings, dispatcher, user_id=user_id, keep=None, kind=EmailKind.SECOND_FACTOR_REMOVED
        )
    audit.record(SecurityEvent.MFA_RESET, level="warning", user_id=user_id, admin_id=admin.user_id)
