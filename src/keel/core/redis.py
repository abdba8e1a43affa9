"""The shared Redis client, when ``KEEL_REDIS_URL`` is configured."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str) -> Redis:
    # Short timeouts: a Redis that stops answering must turn into a quick 503, not a hung request.
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
    )
