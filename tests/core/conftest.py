"""Fixtures shared by the core tests that need a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from keel.core.redis import create_redis
from tests.conftest import reset_redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An empty Redis database (KEEL_TEST_REDIS_URL), closed afterwards."""
    await reset_redis(redis_url)
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
