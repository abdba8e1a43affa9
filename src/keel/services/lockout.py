"""What a password check does about its account's lock (keel.core.lockout) when the password is wrong."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import audit
from keel.core.audit import SecurityEvent
from keel.core.config import Settings
from keel.core.lockout import PasswordAttempt
from keel.models import EmailKind
from keel.services import outbox as outbox_service
from keel.services.outbox import Dispatcher


async def wrong_password(
    *,
    session: AsyncSession | None,
    settings: Settings,
    dispatcher: Dispatcher,
    attempt: PasswordAttempt,
    user_id: int | None,
    email: str | None,
) -> None:
    """When this wrong password is the one that locked the account, record it and tell the owner.

    ``user_id`` and ``email`` are None (and no session is needed) for an address with no account:
    it locks alike, and nobody is told. The owner's notice goes through the outbox like every
    email; queueing it adds one short write to this one answer, once per run of wrong passwords
    rather than per guess, well inside the password hash's own variation in time.
    """
    if not attempt.locks:
        return
    audit.record(SecurityEvent.ACCOUNT_LOCKED, level="warning", user_id=user_id)
    if session is None or user_id is None or email is None:
        return
    row = await outbox_service.enqueue(
        session=session, settings=settings, kind=EmailKind.ACCOUNT_LOCKED, to_address=email, user_id=user_id
    )
    await session.commit()
    await outbox_service.dispatch_after_commit(dispatcher, [row])
