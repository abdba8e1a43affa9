"""The shared Redis client, when ``KEEL_REDIS_URL`` is configured."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

MAX_CONNECTIONS = 50
POOL_TIMEOUT_SECONDS = 5.0


def create_redis(
    url: str, *, max_connections: int = MAX_CONNECTIONS, pool_timeout_seconds: float = POOL_TIMEOUT_SECONDS
) -> Redis:
    """A client whose pool waits for a free connection and replaces a dead one within the same call.

    - The pool blocks: redis-py's default one refuses a command at once (MaxConnectionsError) when its
      connections are all in use, which turned a burst of 256 concurrent requests into hundreds of
      503s. Here a command waits up to `pool_timeout_seconds` for a connection.
    - A command that meets a dead connection (after a Redis restart every pooled one is) is retried
      on a new connection, after a few milliseconds; without it each pooled connection failed one
      request first. Only connection errors are retried: a timeout already cost its `socket_timeout`.
    - Short timeouts: a Redis that stops answering must turn into a quick 503, not a hung request.
      A connection idle for `health_check_interval` is pinged before use.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_seconds,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)
