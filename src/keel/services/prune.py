"""Removing what is no longer worth keeping: old activity, ended sessions, spent refresh tokens, sent mail.

Run by the schedule (Celery beat's `maintenance.prune`, or the in-process loop of `keel serve`
without a broker) and by `keel prune`. Every step is one DELETE by time, so running it twice, or
in several processes at once, removes nothing more than running it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlmodel import col

from keel.core.config import Settings
from keel.core.db import Database
from keel.core.logging import get_logger
from keel.models import Activity, EmailOutbox, KnownDevice, OutboxStatus, RefreshToken, UserSession, utcnow

log = get_logger("keel.prune")

# An ended session is kept this long, so that "signed out a moment ago" still shows what it was.
ENDED_SESSION_GRACE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Pruned:
    activity: int
    known_devices: int
    sessions: int
    refresh_tokens: int
    outbox: int


async def prune(*, database: Database, settings: Settings, now: datetime | None = None) -> Pruned:
    """Delete what is past its keeping, in one transaction; returns how many rows of each went."""
    now = now or utcnow()
    kept_from = now - timedelta(days=settings.activity_retention_days)
    ended_before = now - ENDED_SESSION_GRACE
    ended = (
        select(col(UserSession.id))
        .where(
            or_(
                col(UserSession.expires_at) < ended_before,
                col(UserSession.revoked_at) < ended_before,
                col(UserSession.last_used_at) < ended_before - timedelta(seconds=settings.session_idle_ttl_seconds),
            )
        )
        .scalar_subquery()
    )
    async with database.session() as session:
        # A live session keeps its used tokens (a replay of one ends the session); an ended session's
        # tokens go with it. Said outright rather than left to the foreign key's cascade.
        tokens = await session.exec(delete(RefreshToken).where(col(RefreshToken.session_id).in_(ended)))
        sessions = await session.exec(delete(UserSession).where(col(UserSession.id).in_(ended)))
        # The new-device mails of old activity go with it (their foreign key cascades): count them first.
        outbox = await session.exec(
            delete(EmailOutbox).where(
                col(EmailOutbox.status) == OutboxStatus.SENT,
                col(EmailOutbox.sent_at) < now - timedelta(days=settings.outbox_retention_days),
            )
        )
        activity = await session.exec(delete(Activity).where(col(Activity.created_at) < kept_from))
        devices = await session.exec(delete(KnownDevice).where(col(KnownDevice.last_seen_at) < kept_from))
        await session.commit()
    pruned = Pruned(
        activity=activity.rowcount,
        known_devices=devices.rowcount,
        sessions=sessions.rowcount,
        refresh_tokens=tokens.rowcount,
        outbox=outbox.rowcount,
    )
    log.info("pruned", **asdict(pruned))
    return pruned
