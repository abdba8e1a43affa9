"""Readiness checks of the backing services, each bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
from redis.asyncio import Redis
from sqlalchemy import text

from keel.core.db import Database
from keel.core.logging import get_logger

CHECK_TIMEOUT_SECONDS = 2.0

log = get_logger("keel.health")


async def _database(database: Database) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _redis(redis: Redis) -> None:
    await redis.ping()


async def _broker(probe: Callable[[], None]) -> None:
    await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)


async def check(*, database: Database, redis: Redis | None, broker: Callable[[], None] | None = None) -> dict[str, str]:
    """Probe each backing service; ``broker`` is a blocking connection check, when Celery delivers mail."""
    probes = {"database": _database(database)}
    if redis is not None:
        probes["redis"] = _redis(redis)
    if broker is not None:
        probes["broker"] = _broker(broker)
    results: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as exc:
            log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
            results[name] = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
    return results
