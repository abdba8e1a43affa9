"""Email verification and password reset: the flows that go through the outbox."""

from __future__ import annotations

from sqlmodel import col, delete
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit, email_tokens
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database
from keel.core.email_tokens import EmailTokenError, Purpose
from keel.core.errors import AlreadyVerified, ExpiredEmailToken, InvalidEmailToken, PasswordsDoNotMatch
from keel.core.password_policy import normalize
from keel.core.ratelimit import RateLimiter, account_key
from keel.core.security import password_hasher
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, EmailKind, User, utcnow
from keel.models import Identity as IdentityRow
from keel.models.mfa import Passkey, PendingSignIn, RecoveryCode, TotpCredential, WebauthnChallenge
from keel.services import activity as activity_service
from keel.services import outbox as outbox_service
from keel.services import personal_token as personal_token_service
from keel.services import session as session_service
from keel.services import user as user_service
from keel.services.outbox import Dispatcher


async def claim(*, session: AsyncSession, cache: SessionCache | None, user: User) -> None:
    """Hand a never-confirmed account to whoever just proved they own its address.

    Whoever registered it may be someone else (a squatter): nothing they set up survives. The
    address becomes verified, the display name (which anyone would see beside the owner's posts)
    is cleared, and the account's provider identities, second factors, pending sign-ins and
    sessions go. The caller sets the password (a reset's new one, or none usable) and commits.
    """
    assert user.id is not None
    assert not user.is_verified
    user.is_verified = True
    user.full_name = None
    user.updated_at = utcnow()
    session.add(user)
    for model in (IdentityRow, TotpCredential, RecoveryCode, Passkey, PendingSignIn, WebauthnChallenge):
        await session.exec(delete(model).where(col(model.user_id) == user.id))
    await session_service.revoke_all(session=session, cache=cache, user_id=user.id)
    await personal_token_service.revoke_all(session=session, cache=cache, user_id=user.id)


def _claims(settings: Settings, purpose: Purpose, token: str) -> email_tokens.EmailTokenClaims:
    try:
        return email_tokens.read(settings, purpose, token)
    except EmailTokenError as exc:
        raise (ExpiredEmailToken if exc.expired else InvalidEmailToken)() from None


async def request_verification(*, database: Database, settings: Settings, dispatcher: Dispatcher, user_id: int) -> None:
    async with database.session() as session:
        user = await user_service.get_own(session=session, user_id=user_id)
        if user.is_verified:
            raise AlreadyVerified
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.VERIFY_EMAIL, to_address=user.email, user_id=user_id
        )
        await session.commit()
        await outbox_service.dispatch_after_commit(dispatcher, [row])


async def confirm_verification(
    *, database: Database, cache: SessionCache | None, settings: Settings, token: str
) -> User:
    """Mark the address verified; the token must be for the address the account has now."""
    async with database.session() as session:
        claims = _claims(settings, Purpose.VERIFY_EMAIL, token)
        user = await session.get(User, claims.user_id)
        if user is None or user.email != claims.value:
            raise InvalidEmailToken
        if not user.is_verified:
            user.is_verified = True
            user.updated_at = utcnow()
            session.add(user)
            await session.commit()
            # Sessions cached as unverified must see the change on their next request.
            await session_service.forget_cached(session=session, cache=cache, user_id=claims.user_id)
            await personal_token_service.forget_cached(session=session, cache=cache, user_id=claims.user_id)
            audit.record(SecurityEvent.EMAIL_VERIFIED, user_id=user.id)
        await session.refresh(user)
        return user


async def request_reset(*, database: Database, settings: Settings, dispatcher: Dispatcher, email: str) -> None:
    """Queue one email either way: the reset link, or a note that this address has no account."""
    async with database.session() as session:
        user = await user_service.get_by_email(session=session, email=email)
        kind = EmailKind.PASSWORD_RESET if user is not None else EmailKind.RESET_NO_ACCOUNT
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=kind, to_address=email.lower(), user_id=user.id if user else None
        )
        await session.commit()
        await outbox_service.dispatch_after_commit(dispatcher, [row])
        audit.record(SecurityEvent.PASSWORD_RESET_REQUESTED, user_id=user.id if user else None, throttled=row is None)


async def confirm_reset(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    token: str,
    new_password: str,
    confirm_password: str,
) -> None:
    """Set the new password; the link stops working (see `email_tokens.reset_binding`) and every session ends.

    On an account whose address was never confirmed, the link is also how the address's owner
    claims it from whoever registered it (they may be someone else): see `claim`.
    """
    async with database.session() as session:
        if normalize(new_password) != normalize(confirm_password):
            raise PasswordsDoNotMatch
        claims = _claims(settings, Purpose.PASSWORD_RESET, token)
        user = await session.get(User, claims.user_id)
        if user is None or claims.value != email_tokens.reset_binding(
            settings, hashed_password=user.hashed_password, email=user.email, verified=user.is_verified
        ):
            raise InvalidEmailToken
        assert user.id is not None
        new_password = user_service.check_new_password(user, new_password)
        user.hashed_password = await password_hasher(settings).hash(new_password)
        user.updated_at = utcnow()
        claimed = not user.is_verified
        if claimed:
            await claim(session=session, cache=cache, user=user)
        else:
            session.add(user)
            await session_service.revoke_all(session=session, cache=cache, user_id=user.id)
            await personal_token_service.revoke_all(session=session, cache=cache, user_id=user.id)
        await activity_service.record(session, user_id=user.id, type=ActivityType.PASSWORD_RESET)
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.PASSWORD_CHANGED, to_address=user.email, user_id=user.id
        )
        await session.commit()
        await outbox_service.dispatch_after_commit(dispatcher, [row])
        # Whoever holds the link owns the address: wrong passwords typed before no longer lock them out.
        await limiter.clear_account(account_key(user.email))
        audit.record(SecurityEvent.PASSWORD_RESET, user_id=user.id)
        if claimed:
            audit.record(SecurityEvent.ACCOUNT_CLAIMED, user_id=user.id)
