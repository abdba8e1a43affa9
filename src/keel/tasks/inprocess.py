"""Delivery inside `keel serve` when no broker is configured: a task per email, a relay loop, and the prune loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from keel.core.config import Settings
from keel.core.db import Database
from keel.core.logging import get_logger
from keel.core.mail import Transport
from keel.services import outbox as outbox_service
from keel.services import prune as prune_service

log = get_logger("keel.tasks")


class InProcessDispatcher:
    def __init__(self, *, database: Database, settings: Settings, transport: Transport) -> None:
        self.database = database
        self.settings = settings
        self.transport = transport
        self._deliveries: set[asyncio.Task[None]] = set()
        self._relay: asyncio.Task[None] | None = None
        self._prune: asyncio.Task[None] | None = None

    async def dispatch(self, outbox_ids: Sequence[int]) -> None:
        for outbox_id in outbox_ids:
            task = asyncio.create_task(self._deliver(outbox_id))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, outbox_id: int) -> None:
        try:
            async with self.database.session() as session:
                await outbox_service.deliver(
                    session=session, settings=self.settings, transport=self.transport, outbox_id=outbox_id
                )
        except Exception:
            # The row stays pending or claimed; the relay hands it out again.
            log.exception("email_delivery_crashed", outbox_id=outbox_id)

    async def relay_once(self) -> int:
        async with self.database.session() as session:
            ids = await outbox_service.due_ids(session=session, settings=self.settings)
        for outbox_id in ids:
            await self._deliver(outbox_id)
        return len(ids)

    async def _relay_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.outbox_relay_interval_seconds)
            try:
                await self.relay_once()
            except Exception:
                log.exception("email_relay_failed")

    async def _prune_forever(self) -> None:
        # Every process of `keel serve` runs it: the deletes by time make that harmless.
        while True:
            await asyncio.sleep(self.settings.prune_interval_seconds)
            try:
                await prune_service.prune(database=self.database, settings=self.settings)
            except Exception:
                log.exception("prune_failed")

    def start(self) -> None:
        self._relay = asyncio.create_task(self._relay_forever())
        self._prune = asyncio.create_task(self._prune_forever())

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop the relay and give emails already being sent a moment to finish."""
        for loop in (self._relay, self._prune):
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        if self._deliveries:
            _, pending = await asyncio.wait(self._deliveries, timeout=grace_seconds)
            for task in pending:
                task.cancel()

    async def drain(self) -> None:
        """Wait for every delivery started so far (tests and shutdown)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries))
