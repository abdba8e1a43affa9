"""The Prometheus scrape: the process's counters, and the email outbox's depth read from the database now."""

from __future__ import annotations

import asyncio

from keel.core.db import Database
from keel.core.logging import get_logger
from keel.http.metrics import Metrics
from keel.services import outbox as outbox_service

OUTBOX_QUERY_TIMEOUT_SECONDS = 2.0

log = get_logger("keel.metrics")


async def scrape(*, database: Database, metrics: Metrics) -> bytes:
    """Render every metric; a database that does not answer in time only leaves the outbox gauge out."""
    depth: dict[str, int] | None
    try:
        async with asyncio.timeout(OUTBOX_QUERY_TIMEOUT_SECONDS), database.session() as session:
            depth = await outbox_service.depth(session=session)
    except Exception as exc:  # the request counters matter most exactly when the database is down
        log.warning("metrics_outbox_unavailable", error=type(exc).__name__)
        depth = None
    return metrics.exposition(outbox_depth=depth)
