"""The prune job removes only what is past its keeping, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlmodel import col, select

from keel.models import (
    Activity,
    EmailKind,
    EmailOutbox,
    KnownDevice,
    OutboxStatus,
    RefreshToken,
    UserSession,
    utcnow,
)
from keel.services import prune as prune_service
from keel.tasks.inprocess import InProcessDispatcher
from tests.factories import create_user


async def test_only_old_rows_go(app: FastAPI) -> None:
    account = await create_user(app)
    now = utcnow()
    day = timedelta(days=1)
    retention = timedelta(days=app.state.settings.activity_retention_days)
    idle = timedelta(seconds=app.state.settings.session_idle_ttl_seconds)

    def session_row(
        name: str,
        *,
        last_used_at: datetime = now,
        expires_at: datetime = now + 10 * day,
        revoked_at: datetime | None = None,
    ) -> UserSession:
        return UserSession(
            id=name,
            user_id=account.id,
            created_at=now - 3 * day,
            last_used_at=last_used_at,
            expires_at=expires_at,
            revoked_at=revoked_at,
        )

    async with app.state.database.session() as session:
        session.add_all(
            [
                Activity(user_id=account.id, type="sign_in", created_at=now - retention - day),
                Activity(user_id=account.id, type="sign_in", created_at=now - retention + day),
                KnownDevice(user_id=account.id, device_hash="a" * 64, last_seen_at=now - retention - day),
                KnownDevice(user_id=account.id, device_hash="b" * 64, last_seen_at=now - day),
                session_row("live"),
                session_row("expired", expires_at=now - 2 * day),
                session_row("revoked_long_ago", revoked_at=now - 2 * day),
                session_row("revoked_just_now", revoked_at=now),
                session_row("idle", last_used_at=now - idle - 2 * day),
            ]
        )
        await session.flush()
        for name in ("live", "expired", "revoked_long_ago", "revoked_just_now", "idle"):
            session.add(RefreshToken(token_hash=f"{name}-used".ljust(64, "x"), session_id=name, used_at=now - day))
        session.add(RefreshToken(token_hash="live-fresh".ljust(64, "x"), session_id="live"))
        old = now - timedelta(days=app.state.settings.outbox_retention_days) - day
        for status, sent_at, created_at in [
            (OutboxStatus.SENT, old, old),
            (OutboxStatus.SENT, now - day, now - day),
            (OutboxStatus.FAILED, None, old),
            (OutboxStatus.PENDING, None, old),
        ]:
            session.add(
                EmailOutbox(
                    kind=EmailKind.PASSWORD_CHANGED,
                    to_address=account.email,
                    user_id=account.id,
                    status=status,
                    sent_at=sent_at,
                    created_at=created_at,
                )
            )
        await session.commit()

    pruned = await prune_service.prune(database=app.state.database, settings=app.state.settings)
    assert pruned == prune_service.Pruned(activity=1, known_devices=1, sessions=3, refresh_tokens=3, outbox=1)

    async with app.state.database.session() as session:
        activity = list(await session.exec(select(Activity.created_at)))
        assert [when > now - retention for when in activity] == [True]
        assert list(await session.exec(select(KnownDevice.device_hash))) == ["b" * 64]
        sessions = sorted(await session.exec(select(UserSession.id)))
        assert sessions == ["live", "revoked_just_now"]
        tokens = sorted(await session.exec(select(RefreshToken.token_hash)))
        assert [token.rstrip("x") for token in tokens] == ["live-fresh", "live-used", "revoked_just_now-used"]
        outbox = list(await session.exec(select(EmailOutbox.status).order_by(col(EmailOutbox.id))))
        assert outbox == [OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.PENDING]

    again = await prune_service.prune(database=app.state.database, settings=app.state.settings)
    assert again == prune_service.Pruned(activity=0, known_devices=0, sessions=0, refresh_tokens=0, outbox=0)


async def test_the_in_process_schedule_prunes(app: FastAPI) -> None:
    account = await create_user(app)
    async with app.state.database.session() as session:
        session.add(Activity(user_id=account.id, type="sign_in", created_at=utcnow() - timedelta(days=400)))
        await session.commit()
    settings = app.state.settings.model_copy(update={"prune_interval_seconds": 0.01})
    dispatcher = InProcessDispatcher(database=app.state.database, settings=settings, transport=None)  # type: ignore[arg-type]
    dispatcher.start()
    try:
        for _ in range(200):
            async with app.state.database.session() as session:
                if not list(await session.exec(select(Activity.id))):
                    break
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.stop()
    async with app.state.database.session() as session:
        assert list(await session.exec(select(Activity.id))) == []
