"""Readiness checks of the backing services, each bounded in time."""

from __future__ import annotations

import asyncio

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


async def check(*, database: Database, redis: Redis | None) -> dict[str, str]:
    probes = {"database": _database(database)}
    if redis is not None:
        probes["redis"] = _redis(redis)
    results: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
            results[name] = "ok"
        except Exception as exc:
            log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
            results[name] = "timeout" if isinstance(exc, TimeoutError) else "unavailable"
    return results
