"""The email outbox: rows written with the change that causes them, delivered after commit.

Delivery is at least once, as SMTP allows no better: a worker that dies after the mail server's
250 and before it records `sent` leaves a row that is handed out again after its lease, and the
mail goes out twice. The second copy is the same message (`compose`): the same Message-ID, derived
from the row's id, so a receiving system can drop the duplicate, and the same link. Short of that,
each row is sent once: a worker first claims it (a conditional UPDATE), and a claim only expires
after the lease, so a duplicate task or a relay run sends nothing while another worker is on it.
Failures go back to `pending` with exponential backoff and jitter, and end in `failed` with the
last error after `outbox_max_attempts`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from sqlalchemy import ColumnElement
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col, func, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import email_codes, email_tokens
from keel.core.config import Settings
from keel.core.email_tokens import Purpose
from keel.core.logging import get_logger
from keel.core.mail import Mail, MailError, Transport, render
from keel.models import Activity, EmailKind, EmailOutbox, OutboxStatus, User, utcnow

log = get_logger("keel.outbox")

THROTTLED_KINDS = (
    EmailKind.VERIFY_EMAIL,
    EmailKind.PASSWORD_RESET,
    EmailKind.RESET_NO_ACCOUNT,
    EmailKind.SIGNUP_ATTEMPT,
    EmailKind.SIGN_IN_CODE,
    EmailKind.IDENTITY_LINK,
)
# List invitations have a budget of their own: anyone may invite anyone by username, so counting
# them with the mails above would let a stranger spend an address's reset and verification mails.
INVITATION_KINDS = (EmailKind.LIST_INVITATION,)


class Dispatcher(Protocol):
    """Hands committed outbox rows to whatever delivers them (Celery, or a task in this process)."""

    async def dispatch(self, outbox_ids: Sequence[int]) -> None: ...


async def enqueue(
    *, session: AsyncSession, settings: Settings, kind: EmailKind, to_address: str, user_id: int | None
) -> EmailOutbox | None:
    """Add an email to the caller's transaction; ``None`` when the address has had its share this hour."""
    budget = _budget(kind, settings)
    if budget is not None:
        kinds, per_hour = budget
        if await _recently_sent(session, to_address, kinds) >= per_hour:
            log.info("email_throttled", kind=kind.value, user_id=user_id)
            return None
    row = EmailOutbox(kind=kind, to_address=to_address, user_id=user_id)
    session.add(row)
    return row


async def throttled(*, session: AsyncSession, settings: Settings, to_address: str) -> bool:
    """Whether the address has had its share of throttled emails this hour (what `enqueue` checks)."""
    return await _recently_sent(session, to_address, THROTTLED_KINDS) >= settings.email_throttle_per_hour


def _budget(kind: EmailKind, settings: Settings) -> tuple[tuple[EmailKind, ...], int] | None:
    """The kinds that share this kind's hourly budget per address, and its size; None: unbounded."""
    if kind in THROTTLED_KINDS:
        return THROTTLED_KINDS, settings.email_throttle_per_hour
    if kind in INVITATION_KINDS:
        return INVITATION_KINDS, settings.invitation_emails_per_hour
    return None


async def _recently_sent(session: AsyncSession, to_address: str, kinds: tuple[EmailKind, ...]) -> int:
    since = utcnow() - timedelta(hours=1)
    statement = (
        select(func.count())
        .select_from(EmailOutbox)
        .where(
            EmailOutbox.to_address == to_address,
            col(EmailOutbox.kind).in_(kinds),
            EmailOutbox.created_at > since,
        )
    )
    return (await session.exec(statement)).one()


async def dispatch_after_commit(dispatcher: Dispatcher, rows: Sequence[EmailOutbox | None]) -> None:
    ids = [row.id for row in rows if row is not None and row.id is not None]
    if ids:
        await dispatcher.dispatch(ids)


# --- delivery ------------------------------------------------------------------------------------
async def deliver(
    *, session: AsyncSession, settings: Settings, transport: Transport, outbox_id: int
) -> OutboxStatus | None:
    """Try to send one row once. Returns its new status, or ``None`` if someone else has it or it is done."""
    now = utcnow()
    claimed = await session.exec(
        update(EmailOutbox)
        .where(
            col(EmailOutbox.id) == outbox_id,
            or_(
                col(EmailOutbox.status) == OutboxStatus.PENDING,
                _abandoned(settings, now),
            ),
        )
        .values(status=OutboxStatus.SENDING, claimed_at=now, attempts=col(EmailOutbox.attempts) + 1)
    )
    await session.commit()
    if claimed.rowcount != 1:
        return None
    row = await session.get(EmailOutbox, outbox_id, populate_existing=True)
    if row is None:
        return None  # its account was deleted just now, and the row with it
    try:
        mail = await compose(session=session, settings=settings, row=row)
        if mail is not None:
            await transport.send(mail)
    except MailError as exc:
        return await _failed_attempt(session, settings, row, str(exc))
    row.status = OutboxStatus.SENT
    row.sent_at = utcnow()
    row.last_error = None if mail is not None else "recipient account no longer exists"
    if not await _save(session, row):
        return None
    log.info("email_delivered", outbox_id=outbox_id, kind=row.kind.value, attempts=row.attempts)
    return OutboxStatus.SENT


async def _save(session: AsyncSession, row: EmailOutbox) -> bool:
    """Commit the row's new state; ``False`` if it was deleted meanwhile (its account went)."""
    outbox_id = row.id
    session.add(row)
    try:
        await session.commit()
    except StaleDataError:
        await session.rollback()
        log.info("email_dropped", outbox_id=outbox_id, reason="account deleted during delivery")
        return False
    return True


async def _failed_attempt(
    session: AsyncSession, settings: Settings, row: EmailOutbox, error: str
) -> OutboxStatus | None:
    row.last_error = error[:1000]
    if row.attempts >= settings.outbox_max_attempts:
        row.status = OutboxStatus.FAILED
        log.error("email_failed", outbox_id=row.id, kind=row.kind.value, attempts=row.attempts, error=row.last_error)
    else:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = utcnow() + timedelta(seconds=retry_delay(settings, row.attempts))
        log.warning("email_retry", outbox_id=row.id, attempts=row.attempts, error=row.last_error)
    status = row.status
    return status if await _save(session, row) else None


def _abandoned(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """Claimed longer ago than the lease: its worker died, so it may be handed out again."""
    lease = timedelta(seconds=settings.outbox_claim_lease_seconds)
    return (col(EmailOutbox.status) == OutboxStatus.SENDING) & (col(EmailOutbox.claimed_at) < now - lease)


# Jitter from the OS, not the module-level generator: drawing from it here would shift the
# random sequence of whatever else runs in the process (a seeded test, Hypothesis).
_jitter = random.SystemRandom()


def retry_delay(settings: Settings, attempts: int) -> float:
    """Exponential backoff with full jitter, capped at an hour."""
    ceiling = min(settings.outbox_retry_base_seconds * 2 ** max(attempts - 1, 0), 3600.0)
    return _jitter.uniform(ceiling / 2, ceiling)


async def due_ids(*, session: AsyncSession, settings: Settings, limit: int = 100) -> list[int]:
    """Rows the relay should hand out again: pending past their time, or claimed by a dead worker."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.outbox_relay_after_seconds)
    statement = (
        select(EmailOutbox.id)
        .where(
            or_(
                (col(EmailOutbox.status) == OutboxStatus.PENDING)
                & (col(EmailOutbox.next_attempt_at) <= now)
                & ((col(EmailOutbox.attempts) > 0) | (col(EmailOutbox.created_at) < stale)),
                _abandoned(settings, now),
            )
        )
        .order_by(col(EmailOutbox.id))
        .limit(limit)
    )
    return [outbox_id for outbox_id in await session.exec(statement) if outbox_id is not None]


# --- composing -----------------------------------------------------------------------------------
SUBJECTS = {
    EmailKind.VERIFY_EMAIL: "Confirm your email address",
    EmailKind.SIGNUP_ATTEMPT: "Someone tried to sign up with your email address",
    EmailKind.PASSWORD_RESET: "Reset your password",
    EmailKind.RESET_NO_ACCOUNT: "Password reset requested",
    EmailKind.PASSWORD_CHANGED: "Your password was changed",
    EmailKind.ACCOUNT_LOCKED: "Signing in to your account is paused after wrong passwords",
    EmailKind.SECOND_FACTOR_ADDED: "A second sign-in step was added to your account",
    EmailKind.SECOND_FACTOR_REMOVED: "A second sign-in step was removed from your account",
    EmailKind.RECOVERY_CODE_USED: "A recovery code was used to sign in to your account",
    EmailKind.SIGN_IN_CODE: "Your sign-in code",
    EmailKind.IDENTITY_LINK: "Confirm signing in to your account with another provider",
    EmailKind.IDENTITY_LINKED: "Another provider can now sign in to your account",
    EmailKind.IDENTITY_UNLINKED: "A provider was disconnected from your account",
    EmailKind.LIST_INVITATION: "You were added to a shared list",
    EmailKind.NEW_DEVICE: "A new device signed in to your account",
}


async def compose(*, session: AsyncSession, settings: Settings, row: EmailOutbox) -> Mail | None:
    """Render the row's message; ``None`` if its account is gone.

    Rendering a row again gives the same message: the same Message-ID and the same link, whose
    token is signed as issued when the row was written. A copy sent again after a worker died
    is then recognisably the same email, with a link that works as well as the first.
    """
    base = settings.public_url
    subject = SUBJECTS[row.kind]
    common = {"to": row.to_address, "subject": subject, "message_id": message_id(settings, row)}
    if row.kind is EmailKind.RESET_NO_ACCOUNT:
        return render(row.kind.value, signup_link=f"{base}/signup", **common)
    user = await session.get(User, row.user_id) if row.user_id is not None else None
    if user is None or user.id is None:
        return None
    common["username"] = user.username
    if row.kind is EmailKind.VERIFY_EMAIL:
        token = email_tokens.make(
            settings, Purpose.VERIFY_EMAIL, user_id=user.id, value=row.to_address, issued_at=row.created_at
        )
        return render(row.kind.value, link=f"{base}/verify-email?token={token}", **common)
    if row.kind is EmailKind.PASSWORD_RESET:
        return render(row.kind.value, link=_reset_link(settings, user, row), **common)
    if row.kind is EmailKind.SIGN_IN_CODE:
        assert row.id is not None
        code = email_codes.derive(settings, outbox_id=row.id, created_at=row.created_at, to_address=row.to_address)
        # In the fragment: a browser never sends it to a server, so the code reaches no access log
        # and no Referer; the web UI reads it and takes it off the address bar.
        fragment = urlencode({"email": row.to_address, "code": code})
        return render(row.kind.value, code=code, link=f"{base}/signin/code#{fragment}", **common)
    if row.kind is EmailKind.IDENTITY_UNLINKED:
        # The identity is gone (its outbox rows with it): the mail names no provider.
        return render(row.kind.value, account_link=f"{base}/account", **common)
    if row.kind in (EmailKind.IDENTITY_LINK, EmailKind.IDENTITY_LINKED):
        return await _identity_mail(session, settings, row, user, common)
    if row.kind is EmailKind.LIST_INVITATION:
        return await _list_invitation(session, settings, row, user, common)
    if row.kind is EmailKind.NEW_DEVICE:
        return await _new_device_mail(session, settings, row, common)
    if row.kind is EmailKind.SIGNUP_ATTEMPT:
        # An address never confirmed may have been registered by someone else: its owner gets a
        # link that makes the account theirs (a reset link: see keel.services.account.confirm_reset).
        claim_link = None if user.is_verified else _reset_link(settings, user, row)
        return render(
            row.kind.value,
            login_link=f"{base}/login",
            reset_link=f"{base}/forgot-password",
            claim_link=claim_link,
            **common,
        )
    return render(row.kind.value, reset_link=f"{base}/forgot-password", **common)


async def _identity_mail(
    session: AsyncSession, settings: Settings, row: EmailOutbox, user: User, common: dict[str, str]
) -> Mail | None:
    from keel.core.oidc import configured_providers
    from keel.models import Identity

    identity = await session.get(Identity, row.identity_id) if row.identity_id is not None else None
    if identity is None or identity.id is None or user.id is None:
        return None
    known = configured_providers(settings).get(identity.provider)
    provider = known.name if known is not None else identity.provider
    if row.kind is EmailKind.IDENTITY_LINKED:
        return render(row.kind.value, provider=provider, account_link=f"{settings.public_url}/account", **common)
    token = email_tokens.make(
        settings,
        Purpose.IDENTITY_LINK,
        user_id=user.id,
        value=f"{identity.id}:{user.email}",
        issued_at=row.created_at,
    )
    return render(
        row.kind.value,
        provider=provider,
        provider_email=identity.email or row.to_address,
        link=f"{settings.public_url}/link-identity?token={token}",
        **common,
    )


async def _list_invitation(
    session: AsyncSession, settings: Settings, row: EmailOutbox, user: User, common: dict[str, str]
) -> Mail | None:
    """The list's name and owner, and the role as it is when the mail is sent; nothing if the
    list is gone or the user is no longer a member of it."""
    from keel.models import ListMember, TodoList

    todo_list = await session.get(TodoList, row.list_id) if row.list_id is not None else None
    member = await session.get(ListMember, (row.list_id, user.id)) if todo_list is not None else None
    owner = await session.get(User, todo_list.owner_id) if todo_list is not None else None
    if todo_list is None or member is None or owner is None:
        return None
    return render(
        row.kind.value,
        list_name=todo_list.name,
        owner=owner.username,
        role=member.role.value,
        link=f"{settings.public_url}/todos",
        **common,
    )


async def _new_device_mail(
    session: AsyncSession, settings: Settings, row: EmailOutbox, common: dict[str, str]
) -> Mail | None:
    activity = await session.get(Activity, row.activity_id) if row.activity_id is not None else None
    if activity is None:
        return None
    return render(
        row.kind.value,
        when=f"{activity.created_at:%Y-%m-%d %H:%M} UTC",
        ip=activity.ip or "an unknown address",
        device=activity.user_agent or "an unknown device",
        activity_link=f"{settings.public_url}/account#activity",
        **common,
    )


def _reset_link(settings: Settings, user: User, row: EmailOutbox) -> str:
    assert user.id is not None
    binding = email_tokens.reset_binding(
        settings, hashed_password=user.hashed_password, email=user.email, verified=user.is_verified
    )
    token = email_tokens.make(
        settings, Purpose.PASSWORD_RESET, user_id=user.id, value=binding, issued_at=row.created_at
    )
    return f"{settings.public_url}/reset-password?token={token}"


def message_id(settings: Settings, row: EmailOutbox) -> str:
    """``<outbox-ID.CREATED@HOST>``, HOST that of KEEL_PUBLIC_URL: one per row, the same at every delivery.

    The creation time (to the microsecond) keeps it unique when a database is started afresh and
    its ids count from 1 again.
    """
    host = urlsplit(settings.public_url).hostname or "keel.localhost"
    if ":" in host:  # an IPv6 address is a domain literal in a Message-ID
        host = f"[{host}]"
    return f"<outbox-{row.id}.{row.created_at:%Y%m%d%H%M%S%f}@{host}>"


# --- operations ----------------------------------------------------------------------------------
async def list_rows(*, session: AsyncSession, statuses: Sequence[OutboxStatus], limit: int) -> list[EmailOutbox]:
    rows = await session.exec(
        select(EmailOutbox).where(col(EmailOutbox.status).in_(statuses)).order_by(col(EmailOutbox.id)).limit(limit)
    )
    return list(rows)


async def depth(*, session: AsyncSession) -> dict[str, int]:
    """How many rows wait in each unfinished state (`pending`, `sending`, `failed`); sent rows are not counted."""
    unfinished = (OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED)
    rows = await session.exec(
        select(col(EmailOutbox.status), func.count())
        .where(col(EmailOutbox.status).in_(unfinished))
        .group_by(col(EmailOutbox.status))
    )
    counts = {status.value: 0 for status in unfinished}
    counts.update({OutboxStatus(status).value: count for status, count in rows})
    return counts


async def retry(*, session: AsyncSession, outbox_id: int) -> bool:
    """Put a failed row back in the queue with a fresh set of attempts."""
    result = await session.exec(
        update(EmailOutbox)
        .where(col(EmailOutbox.id) == outbox_id, col(EmailOutbox.status) == OutboxStatus.FAILED)
        .values(status=OutboxStatus.PENDING, attempts=0, next_attempt_at=utcnow(), claimed_at=None)
    )
    await session.commit()
    return result.rowcount == 1
