"""Rate limits: moving windows counted in Redis (shared by every worker) or in process memory.

The moving window is exact: "5 per minute" means at most 5 in any 60 seconds, with no burst of
twice the limit across a window boundary as a fixed window allows. It stores one timestamp per
counted request, which is cheap at limits this small. Its reset time is when the oldest counted
request leaves the window, so ``Retry-After`` is the real wait.

A Redis that fails must not turn abuse protection into an outage: that check is counted in
memory instead (per process, so looser, but never a 500 and never a lockout), one warning is
logged per outage, and Redis is tried again a few seconds later.

The per-user write limit and the two sign-in limits are counted in Redis by Keel's own script
(``WINDOW_SCRIPT``) rather than by `limits`: the same script can first check the caller's cached
session, so an authenticated write costs one Redis round trip, not two (see
``keel.services.session.SessionCache.get_counting``), and it counts a sign-in against the
per-address and the per-account limit in one. It is the same moving window, and falls back to
memory the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

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
# Counted in Redis by WINDOW_SCRIPT: the session check counts a write in its own round trip, and a
# sign-in is counted against both of its rules in one.
SCRIPTED_RULES: frozenset[Rule] = frozenset({"writes", "login", "login_ip"})

# KEYS[1]: a session's cache entry, or unused; KEYS[2..n]: one list per limit of the rule, holding
# the timestamps of the requests it counted, newest first.
# ARGV[1]: "<user id>|" to count only for a live session of that user (the entry's format is
# "user|role|verified|expires"), or "" to count without one; ARGV[2]: now (Unix seconds);
# then the limit and its window in seconds for each list.
# Returns {the session entry (nil when not looked up or missing), 1 if counted else 0, seconds to
# wait when refused (else "0")}. A request is counted in every list or in none; a refused one is not.
WINDOW_SCRIPT = """
local entry = false
local now = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  entry = redis.call('GET', KEYS[1])
  if not entry or string.sub(entry, 1, #ARGV[1]) ~= ARGV[1] then
    return {entry, 0, '0'}
  end
  local expires = tonumber(string.match(entry, '|(%d+)$'))
  if not expires or expires <= now then
    return {entry, 0, '0'}
  end
end
local wait = 0
for i = 2, #KEYS do
  local limit, seconds = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local oldest = redis.call('LINDEX', KEYS[i], limit - 1)
  if oldest and tonumber(oldest) > now - seconds then
    wait = math.max(wait, tonumber(oldest) + seconds - now)
  end
end
if wait == 0 then
  for i = 2, #KEYS do
    redis.call('LPUSH', KEYS[i], ARGV[2])
    redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[2 * i - 1]) - 1)
    redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i])))
  end
end
if wait > 0 then
  return {entry, 0, tostring(wait)}
end
return {entry, 1, '0'}
"""


@dataclass(frozen=True, slots=True)
class WindowCount:
    """One request to count against a scripted rule's windows in Redis: WINDOW_SCRIPT's lists and values."""

    keys: list[str]  # KEYS[2..n]
    args: list[float]  # ARGV[2..n]


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What WINDOW_SCRIPT answered: the session entry it read (if asked), and whether it counted."""

    entry: str | None
    counted: bool
    wait_seconds: float

    def refuse_if_full(self) -> None:
        """Raise the 429 when the script refused the request instead of counting it."""
        if self.wait_seconds > 0:
            raise RateLimited(retry_after=max(math.ceil(self.wait_seconds), 1))


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
        redis: Redis | None = None,
        enabled: bool = True,
        storage_retry_seconds: float = STORAGE_RETRY_SECONDS,
    ) -> None:
        self.rules = rules
        self.enabled = enabled
        self._shared = MovingWindowRateLimiter(shared) if shared is not None else None
        self._script = redis.register_script(WINDOW_SCRIPT) if redis is not None else None
        self._local_storage = MemoryStorage()
        self._local = MovingWindowRateLimiter(self._local_storage)
        self.storage_retry_seconds = storage_retry_seconds
        self._skip_shared_until = 0.0
        self._degraded = False

    async def hit(self, rule: Rule, *identifiers: str) -> None:
        """Count one request against every limit of ``rule``; raise ``RateLimited`` when one is used up."""
        await self.hit_together([(rule, identifiers)])

    async def hit_together(self, checks: Sequence[tuple[Rule, Sequence[str]]]) -> None:
        """Count one request against several rules (each with its identifiers); 429 when one is used up.

        When every rule is scripted, one script call counts the request in all of them or, when any
        is full, in none. Otherwise the rules are counted in order, each through `limits`, and the
        first full one refuses the request.
        """
        if not self.enabled:
            return
        if all(rule in SCRIPTED_RULES for rule, _ in checks):
            count = self._window_count(checks)
            if count is not None:
                try:
                    result = await self.run(count)
                except _STORAGE_ERRORS as exc:
                    self._shared_failed(exc)
                else:
                    self._recovered()
                    result.refuse_if_full()
                    return
        for rule, identifiers in checks:
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
                self._recovered()
                return reset_at
        return await _attempt(self._local, item, identifiers)

    def window_count(self, rule: Rule, *identifiers: str) -> WindowCount | None:
        """What WINDOW_SCRIPT needs to count a request against a scripted rule in Redis.

        None when it is not counted there right now: limits turned off, no Redis, or Redis just
        failed (then ``hit`` counts in memory until it is tried again).
        """
        return self._window_count([(rule, identifiers)])

    def _window_count(self, checks: Sequence[tuple[Rule, Sequence[str]]]) -> WindowCount | None:
        if self._script is None or not self.enabled or time.monotonic() < self._skip_shared_until:
            return None
        windows = [(item, rule, identifiers) for rule, identifiers in checks for item in self.rules[rule]]
        keys = [f"{KEY_PREFIX}:window:{item.key_for(rule, *identifiers)}" for item, rule, identifiers in windows]
        args = [time.time(), *(value for item, _, _ in windows for value in (item.amount, item.get_expiry()))]
        return WindowCount(keys, args)

    async def run(self, count: WindowCount, *, session_key: str = "", user_prefix: str = "") -> WindowResult:
        """Run WINDOW_SCRIPT; with a session key, it counts only for that user's live cached session."""
        assert self._script is not None
        keys = [session_key, *count.keys]
        entry, counted, wait = await self._script(keys=keys, args=[user_prefix, *count.args])
        return WindowResult(cast(str | None, entry), counted == 1, float(wait))

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("rate_limit_storage_recovered")

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
    return RateLimiter(rules, shared=shared, redis=redis, enabled=settings.rate_limit_enabled)


def limits_storage_uri(url: str) -> str:
    """`limits` names its asyncio Redis storage by scheme: redis:// becomes async+redis://."""
    scheme, rest = url.split("://", 1)
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
