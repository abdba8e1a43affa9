"""Rate limits: moving windows counted in Redis (shared by every worker) or in process memory.

The moving window is exact: "5 per minute" means at most 5 in any 60 seconds, with no burst of
twice the limit across a window boundary as a fixed window allows. It stores one timestamp per
counted request, which is cheap at limits this small. Its reset time is when the oldest counted
request leaves the window, so ``Retry-After`` is the real wait.

A Redis that fails must not turn abuse protection into an outage: that check is counted in
memory instead (per process, so looser, but never a 500 and never a lockout), one warning is
logged per outage, and Redis is tried again a few seconds later.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from keel.core.config import Settings
from keel.core.errors import RateLimited
from keel.core.logging import get_logger

log = get_logger("keel.ratelimit")

Rule = Literal["login", "login_ip", "register", "verify_email", "password_reset", "refresh", "writes"]
RULES: tuple[Rule, ...] = get_args(Rule)

KEY_PREFIX = "keel:ratelimit"
# After a Redis failure, count in memory for this long before trying Redis again, so a Redis that
# hangs does not add its timeout to every request.
STORAGE_RETRY_SECONDS = 5.0
_STORAGE_ERRORS = (RedisError, OSError)


def digest(value: str) -> str:
    """A fixed-size key part for free text (an email): no separator inside, nothing readable in Redis."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(
        self,
        rules: Mapping[Rule, Sequence[limits.RateLimitItem]],
        *,
        shared: Storage | None = None,
        enabled: bool = True,
        storage_retry_seconds: float = STORAGE_RETRY_SECONDS,
    ) -> None:
        self.rules = rules
        self.enabled = enabled
        self._shared = MovingWindowRateLimiter(shared) if shared is not None else None
        self._local_storage = MemoryStorage()
        self._local = MovingWindowRateLimiter(self._local_storage)
        self.storage_retry_seconds = storage_retry_seconds
        self._skip_shared_until = 0.0
        self._degraded = False

    async def hit(self, rule: Rule, *identifiers: str) -> None:
        """Count one request against every limit of ``rule``; raise ``RateLimited`` when one is used up."""
        if not self.enabled:
            return
        for item in self.rules[rule]:
            reset_at = await self._hit(item, (rule, *identifiers))
            if reset_at is not None:
                raise RateLimited(retry_after=math.ceil(reset_at - time.time()))

    async def _hit(self, item: limits.RateLimitItem, identifiers: tuple[str, ...]) -> float | None:
        if self._shared is not None and time.monotonic() >= self._skip_shared_until:
            try:
                reset_at = await _attempt(self._shared, item, identifiers)
            except _STORAGE_ERRORS as exc:
                self._shared_failed(exc)
            else:
                if self._degraded:
                    self._degraded = False
                    log.info("rate_limit_storage_recovered")
                return reset_at
        return await _attempt(self._local, item, identifiers)

    def _shared_failed(self, exc: Exception) -> None:
        self._skip_shared_until = time.monotonic() + self.storage_retry_seconds
        if not self._degraded:
            self._degraded = True
            log.warning("rate_limit_storage_unavailable", error=type(exc).__name__, fallback="memory")

    async def aclose(self) -> None:
        # The memory storage expires entries in a background task; do not leave it to the loop's end.
        timer = self._local_storage.timer
        if timer is not None and not timer.done():
            timer.cancel()
            await asyncio.wait({timer})


async def _attempt(
    strategy: MovingWindowRateLimiter, item: limits.RateLimitItem, identifiers: tuple[str, ...]
) -> float | None:
    """None when the request is allowed (and counted), else when the window frees a slot."""
    if await strategy.hit(item, *identifiers):
        return None
    stats = await strategy.get_window_stats(item, *identifiers)
    return stats.reset_time


def create_rate_limiter(settings: Settings, redis: Redis | None) -> RateLimiter:
    """The limiter for these settings; with Redis it shares the application's connection pool."""
    rules = {rule: limits.parse_many(getattr(settings, f"rate_limit_{rule}")) for rule in RULES}
    shared = None
    if redis is not None and settings.redis_url is not None:
        # The pool is owned (and closed) by the application; this only borrows connections from it.
        options: dict[str, Any] = {"connection_pool": redis.connection_pool}
        shared = RedisStorage(
            limits_storage_uri(settings.redis_url), implementation="redispy", key_prefix=KEY_PREFIX, **options
        )
    return RateLimiter(rules, shared=shared, enabled=settings.rate_limit_enabled)


def limits_storage_uri(url: str) -> str:
    """`limits` names its asyncio Redis storage by scheme: redis:// becomes async+redis://."""
    scheme, rest = url.split("://", 1)
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
