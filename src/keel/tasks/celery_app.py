"""Celery: the `email.deliver`, `email.relay` and `maintenance.prune` tasks, and the dispatcher the web app uses.

Tasks take ids and open their own database session. `acks_late` with `reject_on_worker_lost`
means a task whose worker dies is delivered again by the broker; the outbox claim makes that
redelivery harmless, and the relay covers what the broker never received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import anyio
from celery import Celery, Task

from keel.core.config import Settings, get_settings
from keel.core.db import Database
from keel.core.logging import get_logger
from keel.core.mail import transport_for
from keel.models import EmailOutbox, OutboxStatus, utcnow
from keel.services import outbox as outbox_service
from keel.services import prune as prune_service

log = get_logger("keel.tasks")

celery_app = Celery("keel")
_settings: Settings | None = None


def configure(settings: Settings) -> Celery:
    global _settings
    _settings = settings
    celery_app.conf.update(
        broker_url=settings.broker_url,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue="keel",
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # Redelivery of a task whose worker vanished; the relay usually gets there first.
        broker_transport_options={"visibility_timeout": 900},
        beat_schedule={
            "email-relay": {"task": "email.relay", "schedule": settings.outbox_relay_interval_seconds},
            "prune": {"task": "maintenance.prune", "schedule": settings.prune_interval_seconds},
        },
        worker_hijack_root_logger=False,
    )
    return celery_app


def _current_settings() -> Settings:
    return _settings or get_settings()


async def _deliver(outbox_id: int) -> tuple[OutboxStatus | None, float]:
    settings = _current_settings()
    database = Database(settings)
    try:
        async with database.session() as session:
            status = await outbox_service.deliver(
                session=session, settings=settings, transport=transport_for(settings), outbox_id=outbox_id
            )
            row = await session.get(EmailOutbox, outbox_id)
            delay = (row.next_attempt_at - utcnow()).total_seconds() if row is not None else 0.0
            return status, max(delay, 0.0)
    finally:
        await database.dispose()


@celery_app.task(name="email.deliver", bind=True, max_retries=None)
def deliver(self: Task[Any, Any], outbox_id: int) -> str | None:
    status, delay = asyncio.run(_deliver(outbox_id))
    if status is OutboxStatus.PENDING:
        raise self.retry(countdown=delay)
    return status.value if status else None


async def _due() -> list[int]:
    settings = _current_settings()
    database = Database(settings)
    try:
        async with database.session() as session:
            return await outbox_service.due_ids(session=session, settings=settings)
    finally:
        await database.dispose()


@celery_app.task(name="email.relay")
def relay() -> int:
    ids = asyncio.run(_due())
    for outbox_id in ids:
        deliver.delay(outbox_id)
    if ids:
        log.info("email_relay_dispatched", count=len(ids))
    return len(ids)


async def _prune() -> prune_service.Pruned:
    settings = _current_settings()
    database = Database(settings)
    try:
        return await prune_service.prune(database=database, settings=settings)
    finally:
        await database.dispose()


@celery_app.task(name="maintenance.prune")
def prune() -> dict[str, int]:
    return asdict(asyncio.run(_prune()))


class CeleryDispatcher:
    """Publishes after commit; if the broker is down the row stays pending for the relay."""

    def __init__(self, settings: Settings) -> None:
        configure(settings)

    async def dispatch(self, outbox_ids: Sequence[int]) -> None:
        try:
            await anyio.to_thread.run_sync(self._publish, list(outbox_ids))
        except Exception as exc:  # the broker is down: the relay will send these later
            log.warning("email_dispatch_deferred", count=len(outbox_ids), error=type(exc).__name__)

    @staticmethod
    def check_broker() -> None:
        """Raise if the broker cannot be reached (for /ready)."""
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)

    @staticmethod
    def _publish(outbox_ids: list[int]) -> None:
        # One quick connection attempt: a request must not wait out kombu's reconnect backoff.
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
            for outbox_id in outbox_ids:
                deliver.apply_async(args=[outbox_id], retry=False, connection=connection)
