"""Passkeys: registering them, managing them, and signing in with one.

A passkey sign-in requires user verification (a PIN or biometric on the authenticator), so a
passkey alone is a complete sign-in: its session's `amr` is `hwk user mfa` (RFC 8176: proof of a
hardware-held key, the user verified by it, and so two factors in one). As the second step of a pending sign-in it adds
the same to the first factor's, with `mfa`: `pwd hwk user mfa`.

Adding or removing a passkey ends the account's other sessions, mails the owner and is audited.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core import webauthn as rp_ceremony
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import InactiveUser, InvalidCredential, InvalidInput, PasskeyNotFound
from keel.core.ratelimit import RateLimiter
from keel.core.session_cache import SessionCache
from keel.core.webauthn import KnownCredential, RelyingParty
from keel.models import ActivityType, EmailKind, Passkey, Role, User, utcnow
from keel.models.base import UTCDateTime
from keel.services import activity as activity_service
from keel.services import mfa as mfa_service
from keel.services import session as session_service
from keel.services import signin
from keel.services import user as user_service
from keel.services import webauthn_challenge as challenge_service
from keel.services.outbox import Dispatcher
from keel.services.session import Principal
from keel.services.signin import Client, IssuedTokens
from keel.services.webauthn_challenge import Binding

# A generous number for one person's devices; it also bounds the options' exclude list.
MAX_PASSKEYS = 25
AMR = (signin.HARDWARE_KEY, signin.USER_VERIFIED)
# On its own, a passkey with user verification is two factors in one: the key and what unlocks it.
ALONE_AMR = (*AMR, signin.MULTI_FACTOR)


# --- registering ---------------------------------------------------------------------------------
async def registration_options(
    *, database: Database, redis: Redis | None, settings: Settings, principal: Principal
) -> dict[str, Any]:
    """Creation options for a new passkey of the caller, whose challenge only this session may answer."""
    async with database.session() as session:
        user = await user_service.get_own(session=session, user_id=principal.user_id)
        existing = await _owned(session, principal.user_id)
    ceremony = rp_ceremony.registration_options(
        RelyingParty.from_settings(settings),
        user_id=principal.user_id,
        user_name=user.email,
        display_name=user.full_name or user.username,
        exclude=[_known(passkey) for passkey in existing],
    )
    binding = Binding.registration(session_id=principal.session_id, user_id=principal.user_id)
    await challenge_service.issue(database=database, redis=redis, challenge=ceremony.challenge, binding=binding)
    return ceremony.options


async def register(
    *,
    database: Database,
    redis: Redis | None,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    credential: object,
    name: str,
) -> Passkey:
    """Verify the browser's answer to this session's creation options and keep the new passkey."""
    challenge = rp_ceremony.claimed_challenge(credential)
    binding = Binding.registration(session_id=principal.session_id, user_id=principal.user_id)
    await challenge_service.consume(database=database, redis=redis, challenge=challenge, binding=binding)
    new = rp_ceremony.verify_registration(
        RelyingParty.from_settings(settings), credential=credential, challenge=challenge
    )
    async with database.session() as session:
        await user_service.get_own(session=session, user_id=principal.user_id)
        if len(await _owned(session, principal.user_id)) >= MAX_PASSKEYS:
            raise InvalidInput(
                loc=["body", "credential"],
                msg=f"An account can have at most {MAX_PASSKEYS} passkeys; remove one first.",
                type_="too_many_passkeys",
            )
        passkey = Passkey(
            user_id=principal.user_id,
            credential_id=new.credential_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
            name=name,
            transports=",".join(new.transports) or None,
            aaguid=new.aaguid,
            backed_up=new.backed_up,
        )
        session.add(passkey)
        try:
            # Before any session is revoked: their cache entries are tombstoned at once.
            await session.flush()
        except IntegrityError:
            # Already registered, to this account or another: refused like any other bad answer.
            await session.rollback()
            raise InvalidCredential("This passkey is already registered.") from None
        await activity_service.record(
            session, user_id=principal.user_id, type=ActivityType.PASSKEY_ADDED, detail={"name": name}
        )
        await mfa_service.factor_changed(
            session,
            cache,
            settings,
            dispatcher,
            user_id=principal.user_id,
            keep=principal.session_id,
            kind=EmailKind.SECOND_FACTOR_ADDED,
        )
    audit.record(SecurityEvent.PASSKEY_ADDED, user_id=principal.user_id, passkey_id=passkey.id, backed_up=new.backed_up)
    return passkey


# --- managing ------------------------------------------------------------------------------------
async def list_for_owner(*, database: Database, user_id: int) -> list[Passkey]:
    async with database.session() as session:
        return await _owned(session, user_id)


async def rename(*, database: Database, principal: Principal, passkey_id: int, name: str) -> Passkey:
    async with database.session() as session:
        passkey = await _get_owned(session, principal.user_id, passkey_id)
        passkey.name = name
        session.add(passkey)
        await session.commit()
    audit.record(SecurityEvent.PASSKEY_RENAMED, user_id=principal.user_id, passkey_id=passkey_id)
    return passkey


async def delete(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    passkey_id: int,
) -> None:
    """Remove one of the caller's passkeys; the account's other sessions end."""
    async with database.session() as session:
        passkey = await _get_owned(session, principal.user_id, passkey_id)
        await session.delete(passkey)
        await session.flush()
        await activity_service.record(
            session, user_id=principal.user_id, type=ActivityType.PASSKEY_REMOVED, detail={"name": passkey.name}
        )
        await mfa_service.factor_changed(
            session,
            cache,
            settings,
            dispatcher,
            user_id=principal.user_id,
            keep=principal.session_id,
            kind=EmailKind.SECOND_FACTOR_REMOVED,
        )
    audit.record(SecurityEvent.PASSKEY_REMOVED, user_id=principal.user_id, passkey_id=passkey_id)


async def _owned(session: AsyncSession, user_id: int) -> list[Passkey]:
    found = await session.exec(select(Passkey).where(Passkey.user_id == user_id).order_by(col(Passkey.id)))
    return list(found)


async def _get_owned(session: AsyncSession, user_id: int, passkey_id: int) -> Passkey:
    found = await session.exec(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user_id))
    passkey = found.one_or_none()
    if passkey is None:
        raise PasskeyNotFound
    return passkey


def _known(passkey: Passkey | _Stored) -> KnownCredential:
    transports = tuple(passkey.transports.split(",")) if passkey.transports else ()
    return KnownCredential(passkey.credential_id, transports)


# --- signing in ----------------------------------------------------------------------------------
class _Stored(NamedTuple):
    id: int
    user_id: int
    credential_id: str
    public_key: str
    sign_count: int
    transports: str | None
    is_active: bool
    role: Role
    is_verified: bool


class _Touched(NamedTuple):
    id: int


_PASSKEY_COLUMNS = (
    col(Passkey.id),
    col(Passkey.user_id),
    col(Passkey.credential_id),
    col(Passkey.public_key),
    col(Passkey.sign_count),
    col(Passkey.transports),
    col(User.is_active),
    col(User.role),
    col(User.is_verified),
)
_BY_CREDENTIAL = Prebuilt(
    sa.select(*_PASSKEY_COLUMNS)
    .join_from(Passkey, User, col(User.id) == col(Passkey.user_id))
    .where(col(Passkey.credential_id) == sa.bindparam("credential_id")),
    _Stored,
)
_OF_USER = Prebuilt(
    sa.select(*_PASSKEY_COLUMNS)
    .join_from(Passkey, User, col(User.id) == col(Passkey.user_id))
    .where(col(Passkey.user_id) == sa.bindparam("user_id"))
    .order_by(col(Passkey.id)),
    _Stored,
)
# Only if the counter is still what the verification was checked against: of two sign-ins that
# raced with the same counter value, one moves it and the other is refused.
_TOUCH = Prebuilt(
    sa.update(Passkey)
    .where(col(Passkey.id) == sa.bindparam("passkey_id"), col(Passkey.sign_count) == sa.bindparam("seen"))
    .values(
        sign_count=sa.bindparam("new_count", type_=sa.BigInteger()),
        backed_up=sa.bindparam("now_backed_up", type_=sa.Boolean()),
        last_used_at=sa.bindparam("now", type_=UTCDateTime()),
    )
    .returning(col(Passkey.id)),
    _Touched,
)


async def authentication_options(
    *, database: Database, redis: Redis | None, settings: Settings, mfa_token: str | None
) -> dict[str, Any]:
    """Request options: for any passkey of this site (a passkey-first sign-in), or, with an
    `mfa_token`, for the pending sign-in's own passkeys, with a challenge only it may answer."""
    rp = RelyingParty.from_settings(settings)
    if mfa_token is None:
        ceremony = rp_ceremony.authentication_options(rp)
        binding = Binding.sign_in()
    else:
        pending = await signin.pending(database=database, mfa_token=mfa_token)
        passkeys = await database.rows(_OF_USER, user_id=pending.user_id)
        if not passkeys:
            raise InvalidCredential("This account has no passkey; finish signing in another way.")
        ceremony = rp_ceremony.authentication_options(rp, allow=[_known(passkey) for passkey in passkeys])
        binding = Binding.second_factor(pending_hash=pending.token_hash, user_id=pending.user_id)
    await challenge_service.issue(database=database, redis=redis, challenge=ceremony.challenge, binding=binding)
    return ceremony.options


async def authenticate(
    *,
    database: Database,
    redis: Redis | None,
    cache: SessionCache | None,
    settings: Settings,
    credential: object,
    client: Client,
) -> IssuedTokens:
    """A passkey-first sign-in: the passkey names the account, and with user verification it is
    complete on its own (no second factor is asked for)."""
    try:
        stored, verified = await _verify_passkey(
            database=database, redis=redis, settings=settings, credential=credential, binding=Binding.sign_in()
        )
    except InvalidCredential:
        audit.record(SecurityEvent.PASSKEY_SIGN_IN_FAILED, level="warning", reason="invalid", ip=client.ip)
        raise
    if not stored.is_active:
        audit.record(SecurityEvent.LOGIN_FAILED, reason="inactive", user_id=stored.user_id, ip=client.ip)
        raise InactiveUser
    try:
        return await signin.open_session(
            database=database,
            cache=cache,
            settings=settings,
            identity=signin.Identity(stored.user_id, stored.role, stored.is_verified),
            amr=ALONE_AMR,
            client=client,
            also=_touch(stored, verified),
        )
    except IntegrityError as exc:  # the account went while it signed in
        raise InvalidCredential from exc


async def finish_pending(
    *,
    database: Database,
    redis: Redis | None,
    cache: SessionCache | None,
    settings: Settings,
    limiter: RateLimiter,
    mfa_token: str,
    credential: object,
) -> IssuedTokens:
    """The second step of a pending sign-in, with one of its account's passkeys; a wrong answer
    counts against the `mfa_token` like a wrong code."""
    pending = await signin.pending(database=database, mfa_token=mfa_token)
    await signin.take_try(database=database, sign_in=pending)
    try:
        binding = Binding.second_factor(pending_hash=pending.token_hash, user_id=pending.user_id)
        stored, verified = await _verify_passkey(
            database=database,
            redis=redis,
            settings=settings,
            credential=credential,
            binding=binding,
            user_id=pending.user_id,
        )
    except InvalidCredential:
        await signin.second_factor_failed(database=database, sign_in=pending)
        raise
    return await signin.finish_pending(
        database=database,
        cache=cache,
        settings=settings,
        limiter=limiter,
        sign_in=pending,
        second=AMR,
        also=_touch(stored, verified),
    )


# --- proving it is you again (a passkey-only account's /auth/reauthenticate) ----------------------
async def reauthentication_options(
    *, database: Database, redis: Redis | None, settings: Settings, principal: Principal
) -> dict[str, Any]:
    """Request options for the caller's own passkeys, with a challenge only this session may answer."""
    passkeys = await database.rows(_OF_USER, user_id=principal.user_id)
    if not passkeys:
        raise PasskeyNotFound("This account has no passkey; confirm it is you another way.")
    ceremony = rp_ceremony.authentication_options(
        RelyingParty.from_settings(settings), allow=[_known(passkey) for passkey in passkeys]
    )
    binding = Binding.reauthentication(session_id=principal.session_id, user_id=principal.user_id)
    await challenge_service.issue(database=database, redis=redis, challenge=ceremony.challenge, binding=binding)
    return ceremony.options


async def reauthenticate(
    *, database: Database, redis: Redis | None, settings: Settings, principal: Principal, credential: object
) -> None:
    """The caller's passkey answered this session's challenge: it counts as recently authenticated."""
    try:
        binding = Binding.reauthentication(session_id=principal.session_id, user_id=principal.user_id)
        stored, verified = await _verify_passkey(
            database=database,
            redis=redis,
            settings=settings,
            credential=credential,
            binding=binding,
            user_id=principal.user_id,
        )
        async with database.transaction() as transaction:
            await _touch(stored, verified)(transaction)
    except InvalidCredential:
        audit.record(SecurityEvent.REAUTHENTICATION_FAILED, user_id=principal.user_id, session_id=principal.session_id)
        raise
    await session_service.mark_authenticated(database=database, principal=principal)
    audit.record(SecurityEvent.REAUTHENTICATED, user_id=principal.user_id, session_id=principal.session_id, amr="hwk")


async def _verify_passkey(
    *,
    database: Database,
    redis: Redis | None,
    settings: Settings,
    credential: object,
    binding: Binding,
    user_id: int | None = None,
) -> tuple[_Stored, rp_ceremony.VerifiedAssertion]:
    """Check an answer to a challenge issued for `binding`. With `user_id` (the second step of a
    sign-in, reauthentication) it must come from one of that user's own passkeys, named in the
    request; without it (a passkey-first sign-in) the discoverable passkey names the account.
    The challenge is spent first, so a wrong answer cannot be retried against it."""
    challenge = rp_ceremony.claimed_challenge(credential)
    await challenge_service.consume(database=database, redis=redis, challenge=challenge, binding=binding)
    assertion = rp_ceremony.parse_assertion(credential)
    stored = await database.first(_BY_CREDENTIAL, credential_id=assertion.credential_id)
    if stored is None or (user_id is not None and stored.user_id != user_id):
        raise InvalidCredential
    verified = rp_ceremony.verify_authentication(
        RelyingParty.from_settings(settings),
        assertion=assertion,
        challenge=challenge,
        public_key=stored.public_key,
        sign_count=stored.sign_count,
        user_id=stored.user_id,
        discoverable=user_id is None,
    )
    return stored, verified


def _touch(stored: _Stored, verified: rp_ceremony.VerifiedAssertion) -> signin.Also:
    async def touch(transaction: Transaction) -> None:
        moved = await transaction.first(
            _TOUCH,
            passkey_id=stored.id,
            seen=stored.sign_count,
            new_count=verified.sign_count,
            now_backed_up=verified.backed_up,
            now=utcnow(),
        )
        if moved is None:  # another sign-in with this passkey moved its counter first, or it was removed
            raise InvalidCredential

    return touch
