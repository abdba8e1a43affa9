"""Provider sign-in and linked identities: the flow's bookkeeping, and which account a provider account opens.

The flow: `begin` records a random `state`, `nonce` and PKCE verifier server-side (table
`oidc_flow`, by the state's hash) together with the hash of a random value set in the browser as a
short-lived HttpOnly SameSite=Lax cookie; `complete` consumes that row (a state works once), checks
the cookie, lets keel.core.oidc prove who came back, and hands the result to `resolve_account`.
Tokens come only from `signin.first_factor_passed`: an account with a second factor gets
`mfa_required` there, exactly like a password sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit, email_tokens
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.db import Database
from keel.core.email_tokens import EmailTokenError, Purpose
from keel.core.errors import (
    ExpiredEmailToken,
    IdentityNotFound,
    InvalidEmailToken,
    LastSignInMethod,
    ProviderNotFound,
    ProviderUnavailable,
)
from keel.core.logging import get_logger
from keel.core.oidc import OidcClient, Provider, ProviderAccount, ProviderError
from keel.core.security import has_usable_password, unusable_password
from keel.core.session_cache import SessionCache
from keel.models import ActivityType, EmailKind, EmailOutbox, OidcFlow, User, UserSession, utcnow
from keel.models import Identity as IdentityRow
from keel.models.mfa import Passkey
from keel.services import activity as activity_service
from keel.services import outbox as outbox_service
from keel.services import session as session_service
from keel.services import signin
from keel.services.outbox import Dispatcher
from keel.services.session import Principal
from keel.services.signin import IssuedTokens
from keel.services.user import _username_taken

log = get_logger("keel.identity")

# `next`: a path of this app, never another origin. No `//` or `/\` (a browser reads both as
# another host), no backslash, space or control character anywhere (browsers drop tabs and
# newlines, which could turn `/\t/evil` into `//evil`).
NEXT_PATTERN = r"^/(?:[^/\\\x00-\x20\x7f][^\\\x00-\x20\x7f]*)?$"
NEXT_MAX_LENGTH = 512
_NEXT = re.compile(NEXT_PATTERN)
DEFAULT_NEXT = "/"
DEFAULT_LINK_NEXT = "/account"
CALLBACK_PATH = "/api/v1/auth/oidc/{provider}/callback"
# The longest `code`, `state` and `error` a callback takes; a longer one is no flow of ours.
MAX_CODE_LENGTH = 2048
MAX_STATE_LENGTH = 256
MAX_ERROR_LENGTH = 256


def safe_next(value: str | None, default: str = DEFAULT_NEXT) -> str:
    """`value` if it is a path of this app, else `default`."""
    if value is None or len(value) > NEXT_MAX_LENGTH or not _NEXT.fullmatch(value):
        return default
    return value


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_uri(settings: Settings, provider: Provider) -> str:
    return settings.public_url + CALLBACK_PATH.format(provider=provider.id)


def provider_of(oidc: OidcClient, provider_id: str) -> Provider:
    provider = oidc.providers.get(provider_id)
    if provider is None:
        raise ProviderNotFound
    return provider


# --- starting -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Started:
    authorize_url: str
    browser_value: str  # for the flow cookie


async def begin(
    *,
    database: Database,
    settings: Settings,
    oidc: OidcClient,
    provider_id: str,
    next_path: str | None,
    link_for: Principal | None = None,
) -> Started:
    """Record a new flow and give the provider's authorization URL. `link_for`: link to that account."""
    provider = provider_of(oidc, provider_id)
    state, nonce, verifier, browser = (secrets.token_urlsafe(32) for _ in range(4))
    verifier = secrets.token_urlsafe(64)  # RFC 7636: 43-128 characters
    try:
        url = await oidc.authorization_url(
            provider, redirect_uri=redirect_uri(settings, provider), state=state, nonce=nonce, code_verifier=verifier
        )
    except ProviderError as exc:
        log.warning("provider_unavailable", provider=provider.id, reason=exc.reason)
        raise ProviderUnavailable from None
    now = utcnow()
    async with database.session() as session:
        await session.exec(delete(OidcFlow).where(col(OidcFlow.expires_at) <= now))
        session.add(
            OidcFlow(
                state_hash=_hash(state),
                browser_hash=_hash(browser),
                provider=provider.id,
                nonce=nonce,
                code_verifier=verifier,
                next_path=safe_next(next_path, DEFAULT_LINK_NEXT if link_for else DEFAULT_NEXT),
                user_id=link_for.user_id if link_for else None,
                session_id=link_for.session_id if link_for else None,
                created_at=now,
                expires_at=now + timedelta(seconds=settings.oidc_flow_ttl_seconds),
            )
        )
        await session.commit()
    return Started(authorize_url=url, browser_value=browser)


# --- coming back ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignedIn:
    issued: IssuedTokens
    next_path: str


@dataclass(frozen=True, slots=True)
class Linked:
    next_path: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The flow ends without a session; `code` goes to the web UI (`/signin?error=<code>`)."""

    code: str
    link: bool = False  # a link flow: the UI shows it on the account page


Outcome = SignedIn | Linked | Refused


async def complete(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    oidc: OidcClient,
    dispatcher: Dispatcher,
    provider_id: str,
    state: str | None,
    code: str | None,
    error: str | None,
    browser_value: str | None,
    client: signin.Client,
) -> Outcome:
    """Finish a flow the provider sent back. Raises `MfaRequired` for an account with a second factor."""
    if len(state or "") > MAX_STATE_LENGTH or len(code or "") > MAX_CODE_LENGTH or len(error or "") > MAX_ERROR_LENGTH:
        # Not what a provider sends back for a flow of ours; the flow, if any, is left to expire.
        return _refused("state_mismatch", provider_id, False, "an oversize query value")
    flow = await _consume(database, state) if state else None
    link = flow is not None and flow.user_id is not None
    if error is not None:
        return _refused("access_denied" if error == "access_denied" else "provider_error", provider_id, link, error)
    if (
        flow is None
        or browser_value is None
        or not hmac.compare_digest(flow.browser_hash, _hash(browser_value))
        or flow.provider != provider_id
        or flow.expires_at <= utcnow()
    ):
        return _refused("state_mismatch", provider_id, link, "no live flow for this state and browser")
    if not code:
        return _refused("provider_error", provider_id, link, "no code")
    provider = oidc.providers.get(provider_id)
    if provider is None:
        return _refused("provider_error", provider_id, link, "provider no longer configured")
    try:
        account = await oidc.finish(
            provider,
            code=code,
            code_verifier=flow.code_verifier,
            redirect_uri=redirect_uri(settings, provider),
            nonce=flow.nonce,
        )
    except ProviderError as exc:
        return _refused(exc.code, provider_id, link, exc.reason)
    link_to = None
    if flow.user_id is not None:
        if flow.session_id is None or not await _recent_session(database, settings, flow.user_id, flow.session_id):
            return _refused("reauthentication_required", provider_id, True, "the linking session is not recent")
        link_to = flow.user_id
    resolution = await resolve_account(
        database=database, settings=settings, dispatcher=dispatcher, provider=provider, account=account, link_to=link_to
    )
    if resolution.kind == "linked":
        return Linked(next_path=flow.next_path)
    if resolution.kind != "sign_in" or resolution.user is None:
        return _refused(resolution.kind, provider_id, link, resolution.kind)
    user = resolution.user
    assert user.id is not None
    issued = await signin.first_factor_passed(
        database=database,
        cache=cache,
        settings=settings,
        identity=signin.Identity(user.id, user.role, user.is_verified),
        factor=signin.FEDERATED,
        client=signin.Client(user_agent=client.user_agent, ip=client.ip, identity_id=resolution.identity_id),
    )
    audit.record(SecurityEvent.PROVIDER_SIGN_IN, user_id=user.id, provider=provider_id, ip=client.ip)
    return SignedIn(issued=issued, next_path=flow.next_path)


def _refused(code: str, provider_id: str, link: bool, reason: str) -> Refused:
    audit.record(
        SecurityEvent.PROVIDER_SIGN_IN_REFUSED, level="warning", provider=provider_id, code=code, reason=reason[:200]
    )
    return Refused(code=code, link=link)


async def _consume(database: Database, state: str) -> OidcFlow | None:
    """The flow of this state, deleted: of two callbacks with one state only one gets it."""
    if len(state) > 128:
        return None
    key = _hash(state)
    async with database.session() as session:
        flow = await session.get(OidcFlow, key)
        if flow is None:
            return None
        session.expunge(flow)
        deleted = await session.exec(delete(OidcFlow).where(col(OidcFlow.state_hash) == key))
        await session.commit()
    return flow if deleted.rowcount == 1 else None


async def _recent_session(database: Database, settings: Settings, user_id: int, session_id: str) -> bool:
    since = utcnow() - timedelta(seconds=settings.reauthentication_seconds)
    async with database.session() as session:
        found = (
            await session.exec(
                select(UserSession.id).where(
                    col(UserSession.id) == session_id,
                    col(UserSession.user_id) == user_id,
                    col(UserSession.revoked_at).is_(None),
                    col(UserSession.expires_at) > utcnow(),
                    col(UserSession.authenticated_at) > since,
                )
            )
        ).first()
    return found is not None


# --- the one place that decides which account a provider account opens ---------------------------
ResolutionKind = Literal[
    "sign_in",
    "linked",
    "link_confirmation_sent",
    "email_not_verified",
    "email_missing",
    "email_taken",
    "account_inactive",
    "identity_in_use",
]


@dataclass(frozen=True, slots=True)
class Resolution:
    kind: ResolutionKind
    user: User | None = None
    identity_id: int | None = None  # for `sign_in`: the identity that signs in


async def resolve_account(
    *,
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    provider: Provider,
    account: ProviderAccount,
    link_to: int | None = None,
) -> Resolution:
    """Which local account the provider account (`provider`, `account.subject`) signs in to, if any.

    Threat model: whoever controls an account at a provider can make it assert any facts the
    provider lets them set, and some providers let anyone set an address without proving it. An
    address alone must therefore never hand over a local account (the takeover that automatic
    linking by email allows), and a squatter who registered someone else's address without
    confirming it must never gain a provider sign-in into the account the rightful owner may claim.

    The rules, in order:
    1. `link_to` (the signed-in owner, recently authenticated, asked to link from the account
       page): link at once, whatever the address; refused (`identity_in_use`) if the provider
       account is already linked to another local account.
    2. A confirmed identity (provider, subject) → its account (refused, `account_inactive`, if
       that account is deactivated). An identity waiting for confirmation → the mail is sent again
       (throttled per address) and nothing else (`link_confirmation_sent`).
    3. No address from the provider (or none that registration would accept) → refused
       (`email_missing`).
    4. The provider did not assert `email_verified` → refused (`email_not_verified`), whether or
       not an account holds the address: an unproven address neither reaches an account nor
       creates one (a provider account that squatted an address would otherwise pre-hijack the
       account its owner signs up for later), and the answer tells nothing about the address.
    5. A local account holds the address:
       - deactivated → refused (`account_inactive`);
       - the local address is not verified (a possible squatter) → refused (`email_taken`): the
         squatter never gains the identity, and the owner can still claim the account by reset;
       - else → NOT linked silently: a pending identity is recorded and its owner mailed a
         confirmation link (`link_confirmation_sent`); only that link confirms it.
    6. No account holds the address → a new, verified one, with a username derived from the
       provider's and made unique, and no usable password (its owner sets one through the reset
       flow).
    """
    for attempt in range(2):
        try:
            return await _resolve(database, settings, dispatcher, provider, account, link_to)
        except IntegrityError:
            # A concurrent sign-in of the same provider account (or the same new address) won; the
            # second try sees what it wrote.
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _resolve(
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    provider: Provider,
    account: ProviderAccount,
    link_to: int | None,
) -> Resolution:
    now = utcnow()
    async with database.session() as session:
        identity = (
            await session.exec(
                select(IdentityRow).where(IdentityRow.provider == provider.id, IdentityRow.subject == account.subject)
            )
        ).first()
        if link_to is not None:
            owner = await session.get(User, link_to)
            if owner is None or not owner.is_active:
                return Resolution("account_inactive")
            if identity is not None and identity.user_id != link_to and identity.confirmed_at is not None:
                return Resolution("identity_in_use")
            if identity is None:
                identity = IdentityRow(user_id=link_to, provider=provider.id, subject=account.subject, created_at=now)
            identity.user_id = link_to
            identity.email = account.email
            identity.confirmed_at = now
            session.add(identity)
            await session.flush()
            await activity_service.record(
                session, user_id=link_to, type=ActivityType.IDENTITY_LINKED, detail={"provider": provider.id}
            )
            row = await _mail(session, settings, EmailKind.IDENTITY_LINKED, owner, identity)
            await session.commit()
            await outbox_service.dispatch_after_commit(dispatcher, [row])
            audit.record(SecurityEvent.IDENTITY_LINKED, user_id=link_to, provider=provider.id, how="signed_in")
            return Resolution("linked", owner)

        if identity is not None:
            user = await session.get(User, identity.user_id)
            assert user is not None  # the foreign key cascades
            if not user.is_active:
                return Resolution("account_inactive")
            if identity.confirmed_at is not None:
                return Resolution("sign_in", user, identity.id)
            row = await _mail(session, settings, EmailKind.IDENTITY_LINK, user, identity)
            await session.commit()
            await outbox_service.dispatch_after_commit(dispatcher, [row])
            return Resolution("link_confirmation_sent")

        if account.email is None:
            return Resolution("email_missing")
        if not account.email_verified:
            return Resolution("email_not_verified")
        holder = (await session.exec(select(User).where(User.email == account.email))).first()
        if holder is not None:
            if not holder.is_active:
                return Resolution("account_inactive")
            if not holder.is_verified:
                return Resolution("email_taken")
            assert holder.id is not None
            identity = IdentityRow(
                user_id=holder.id, provider=provider.id, subject=account.subject, email=account.email, created_at=now
            )
            session.add(identity)
            await session.flush()
            row = await _mail(session, settings, EmailKind.IDENTITY_LINK, holder, identity)
            await session.commit()
            await outbox_service.dispatch_after_commit(dispatcher, [row])
            audit.record(SecurityEvent.IDENTITY_LINK_REQUESTED, user_id=holder.id, provider=provider.id)
            return Resolution("link_confirmation_sent")

        user = User(
            email=account.email,
            username=await _new_username(session, account),
            hashed_password=unusable_password(),
            is_verified=True,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        await session.flush()
        assert user.id is not None
        created = IdentityRow(
            user_id=user.id,
            provider=provider.id,
            subject=account.subject,
            email=account.email,
            created_at=now,
            confirmed_at=now,
        )
        session.add(created)
        await session.commit()
        await session.refresh(user)
        audit.record(SecurityEvent.USER_REGISTERED, user_id=user.id, provider=provider.id)
        audit.record(SecurityEvent.IDENTITY_LINKED, user_id=user.id, provider=provider.id, how="new_account")
        return Resolution("sign_in", user, created.id)


async def _mail(
    session: AsyncSession, settings: Settings, kind: EmailKind, user: User, identity: IdentityRow
) -> EmailOutbox | None:
    row = await outbox_service.enqueue(
        session=session, settings=settings, kind=kind, to_address=user.email, user_id=user.id
    )
    if row is not None:
        row.identity_id = identity.id
    return row


_USERNAME_CHARACTERS = re.compile(r"[^a-z0-9_]+")


async def _new_username(session: AsyncSession, account: ProviderAccount) -> str:
    source = account.username_hint or (account.email or "").split("@")[0]
    base = _USERNAME_CHARACTERS.sub("_", source.lower()).strip("_")[:24] or "user"
    if len(base) < 3:
        base = f"{base}_user"
    candidate = base
    for _ in range(20):
        if not await _username_taken(session, candidate):
            return candidate
        candidate = f"{base}_{secrets.randbelow(10**5):05d}"
    return f"user_{secrets.token_hex(8)}"


# --- the owner's confirmation, list and unlink ----------------------------------------------------
async def confirm_link(*, database: Database, settings: Settings, dispatcher: Dispatcher, token: str) -> IdentityRow:
    """The owner followed the mailed link: the pending identity now signs in to their account."""
    try:
        claims = email_tokens.read(settings, Purpose.IDENTITY_LINK, token)
    except EmailTokenError as exc:
        raise (ExpiredEmailToken() if exc.expired else InvalidEmailToken()) from None
    identity_id, _, address = claims.value.partition(":")
    async with database.session() as session:
        identity = await session.get(IdentityRow, int(identity_id)) if identity_id.isdigit() else None
        user = await session.get(User, claims.user_id)
        if (
            identity is None
            or user is None
            or identity.user_id != user.id
            or user.email != address
            or not user.is_active
            or not user.is_verified
        ):
            raise InvalidEmailToken
        if identity.confirmed_at is None:
            identity.confirmed_at = utcnow()
            session.add(identity)
            await activity_service.record(
                session, user_id=user.id, type=ActivityType.IDENTITY_LINKED, detail={"provider": identity.provider}
            )
            row = await _mail(session, settings, EmailKind.IDENTITY_LINKED, user, identity)
            await session.commit()
            await session.refresh(identity)
            await outbox_service.dispatch_after_commit(dispatcher, [row])
            audit.record(SecurityEvent.IDENTITY_LINKED, user_id=user.id, provider=identity.provider, how="mailed_link")
        return identity


async def list_identities(*, database: Database, user_id: int) -> list[IdentityRow]:
    async with database.session() as session:
        rows = await session.exec(
            select(IdentityRow)
            .where(IdentityRow.user_id == user_id, col(IdentityRow.confirmed_at).is_not(None))
            .order_by(col(IdentityRow.id))
        )
        return list(rows)


async def unlink(
    *,
    database: Database,
    cache: SessionCache | None,
    settings: Settings,
    dispatcher: Dispatcher,
    principal: Principal,
    identity_id: int,
) -> None:
    """Remove a linked identity, unless it is the account's last way to sign in (409).

    The sessions it signed in end (but the caller's, who just proved who they are), and the owner
    is mailed: whoever holds that provider account no longer holds a way into this one.
    """
    async with database.session() as session:
        # Locks the account's row (PostgreSQL): two unlinks at once cannot each leave the other last.
        user = (await session.exec(select(User).where(User.id == principal.user_id).with_for_update())).first()
        identity = await session.get(IdentityRow, identity_id)
        if user is None or identity is None or identity.user_id != principal.user_id or identity.confirmed_at is None:
            raise IdentityNotFound
        others = (
            await session.exec(
                select(func.count())
                .select_from(IdentityRow)
                .where(
                    IdentityRow.user_id == principal.user_id,
                    col(IdentityRow.confirmed_at).is_not(None),
                    IdentityRow.id != identity_id,
                )
            )
        ).one()
        passkeys = (
            await session.exec(select(func.count()).select_from(Passkey).where(Passkey.user_id == principal.user_id))
        ).one()
        if not (has_usable_password(user.hashed_password) or passkeys or others):
            raise LastSignInMethod
        opened = list(
            await session.exec(
                select(UserSession.id).where(
                    UserSession.identity_id == identity_id,
                    col(UserSession.revoked_at).is_(None),
                    UserSession.id != principal.session_id,
                )
            )
        )
        # Tombstoned in the cache before the commit, like every revocation (keel.services.session).
        await session_service.revoke(session=session, cache=cache, session_ids=opened)
        row = await outbox_service.enqueue(
            session=session,
            settings=settings,
            kind=EmailKind.IDENTITY_UNLINKED,
            to_address=user.email,
            user_id=principal.user_id,
        )
        await session.delete(identity)
        await activity_service.record(
            session,
            user_id=principal.user_id,
            type=ActivityType.IDENTITY_UNLINKED,
            detail={"provider": identity.provider},
        )
        await session.commit()
    await outbox_service.dispatch_after_commit(dispatcher, [row])
    audit.record(
        SecurityEvent.IDENTITY_UNLINKED,
        user_id=principal.user_id,
        provider=identity.provider,
        sessions_ended=len(opened),
    )
