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
``keel.core.session_cache.SessionCache.get_counting``), and it counts a sign-in against the
per-address and the per-account limit in one. It is the same moving window, and falls back to
memory the same way.

Every password check also draws on its account's allowance (``Lockout``), whichever address it
comes from: each check is counted before it runs and the count starts over when the password is
right, so what is counted is the run of checks without the right password. The one that reaches
the limit locks the account for a while, and each further one doubles the lock, up to a cap: a
brute force gets a few guesses an hour, and the owner is never locked out for longer than the
cap (a password reset lifts the lock at once). The account is a digest of the email as typed,
normalised, so an address with no account is counted exactly like one with an account. A sign-in
checks the lock and counts itself in it in the same script call as its two windows.
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
from keel.core.lockout import LocalAttempts, Lockout, PasswordAttempt
from keel.core.logging import get_logger
from keel.core.session_cache import ENTRY_CHECK_LUA

log = get_logger("keel.ratelimit")

Rule = Literal["login", "login_ip", "register", "verify_email", "password_reset", "refresh", "writes"]
RULES: tuple[Rule, ...] = get_args(Rule)
# Counted in Redis by WINDOW_SCRIPT: the session check counts a write in its own round trip, and a
# sign-in is counted against both of its rules in one.
SCRIPTED_RULES: frozenset[Rule] = frozenset({"writes", "login", "login_ip"})

# KEYS[1]: a session's cache entry, or unused; KEYS[2]: an account's password checks (a hash:
# `attempts` without the right password, and the end of its lock, `until`), or unused; KEYS[3..n]:
# one list per limit of the rule, holding the timestamps of the requests it counted, newest first.
# ARGV[1]: a user's `session_cache.user_prefix` to count only for a live session of that user (the
# entry is read as keel.core.session_cache defines it), or "" to count without one; ARGV[2]: now (Unix seconds);
# ARGV[3..6]: the account's lockout (checks before the lock, the first lock and the longest in
# seconds, and how long the count is kept), or zeros for none; then the limit and its window in
# seconds for each list.
# Returns {the session entry (nil when not looked up or missing), 1 if counted else 0, seconds to
# wait when refused (else "0"), the check's place in the account's count (0 without one)}. A
# request is counted in every list and the account or in none; a refused one is not.
WINDOW_SCRIPT = (
    ENTRY_CHECK_LUA
    + """
local entry = false
local now = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  entry = redis.call('GET', KEYS[1])
  if not is_live_session(entry, ARGV[1], now) then
    return {entry, 0, '0', 0}
  end
end
local after = tonumber(ARGV[3])
local wait = 0
if after > 0 then
  local locked = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if locked > now then
    wait = locked - now
  end
end
for i = 3, #KEYS do
  local limit, seconds = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local oldest = redis.call('LINDEX', KEYS[i], limit - 1)
  if oldest and tonumber(oldest) > now - seconds then
    wait = math.max(wait, tonumber(oldest) + seconds - now)
  end
end
if wait > 0 then
  return {entry, 0, tostring(wait), 0}
end
for i = 3, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[2])
  redis.call('LTRIM', KEYS[i], 0, tonumber(ARGV[2 * i + 1]) - 1)
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2 * i + 2])))
end
local attempt = 0
if after > 0 then
  attempt = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
  if attempt >= after then
    local lock = tonumber(ARGV[4]) * 2 ^ math.min(attempt - after, 32)
    redis.call('HSET', KEYS[2], 'until', tostring(now + math.min(lock, tonumber(ARGV[5]))))
  end
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[6])))
end
return {entry, 1, '0', attempt}
"""
)


def account_key(email: str) -> str:
    """An account's key in the password-check count: its email as typed, normalised like a sign-in's lookup."""
    return digest(email.strip().lower())


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
    attempt: int = 0

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
        lockout: Lockout | None = None,
    ) -> None:
        self.rules = rules
        self.enabled = enabled
        self.lockout = lockout
        self._shared = MovingWindowRateLimiter(shared) if shared is not None else None
        self._redis = redis
        self._script = redis.register_script(WINDOW_SCRIPT) if redis is not None else None
        self._local_attempts = LocalAttempts()
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
        await self._count(checks, None)

    async def password_attempt(
        self, account: str, checks: Sequence[tuple[Rule, Sequence[str]]] = ()
    ) -> PasswordAttempt:
        """Count a password check against its account (``account_key``), and the request against
        ``checks``, before the password is checked: 429 while the account is locked or a limit is full.

        Tell ``password_right`` when the password was right; a wrong one needs nothing more.
        """
        lockout = self.lockout if self.enabled else None
        number = await self._count(checks, account if lockout is not None else None)
        return PasswordAttempt(account, number, lockout is not None and number == lockout.after)

    async def password_right(self, attempt: PasswordAttempt) -> None:
        """The password was right: the account's count starts over (and any lock ends)."""
        if attempt.number:
            await self.clear_account(attempt.account)

    async def clear_account(self, account: str) -> None:
        """Start the account's count over and end its lock (a password reset proved who the owner is)."""
        if not self.enabled or self.lockout is None:
            return
        self._local_attempts.clear(account)  # what an outage of Redis counted here
        if self._redis is None or time.monotonic() < self._skip_shared_until:
            return
        try:
            await self._redis.delete(self._account_key(account))
        except _STORAGE_ERRORS as exc:
            self._shared_failed(exc)
        else:
            self._recovered()

    async def _count(self, checks: Sequence[tuple[Rule, Sequence[str]]], account: str | None) -> int:
        """Count the request (and the account's check, if any); its number in the account's count."""
        if not self.enabled:
            return 0
        if all(rule in SCRIPTED_RULES for rule, _ in checks):
            count = self._window_count(checks, account)
            if count is not None:
                try:
                    result = await self.run(count)
                except _STORAGE_ERRORS as exc:
                    self._shared_failed(exc)
                else:
                    self._recovered()
                    result.refuse_if_full()
                    return result.attempt
        if account is not None:
            locked_until = self._local_attempts.locked_until(account, time.time())
            if locked_until > time.time():
                raise RateLimited(retry_after=max(math.ceil(locked_until - time.time()), 1))
        for rule, identifiers in checks:
            for item in self.rules[rule]:
                reset_at = await self._hit(item, (rule, *identifiers))
                if reset_at is not None:
                    raise RateLimited(retry_after=math.ceil(reset_at - time.time()))
        if account is None or self.lockout is None:
            return 0
        return self._local_attempts.count(account, time.time(), self.lockout)

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
        return self._window_count([(rule, identifiers)], None)

    def _window_count(self, checks: Sequence[tuple[Rule, Sequence[str]]], account: str | None) -> WindowCount | None:
        if self._script is None or not self.enabled or time.monotonic() < self._skip_shared_until:
            return None
        lockout = self.lockout if account is not None else None
        windows = [(item, rule, identifiers) for rule, identifiers in checks for item in self.rules[rule]]
        keys = [
            self._account_key(account) if account is not None and lockout is not None else "",
            *(f"{KEY_PREFIX}:window:{item.key_for(rule, *identifiers)}" for item, rule, identifiers in windows),
        ]
        args = [
            time.time(),
            *(lockout.args if lockout is not None else [0, 0, 0, 0]),
            *(value for item, _, _ in windows for value in (item.amount, item.get_expiry())),
        ]
        return WindowCount(keys, args)

    @staticmethod
    def _account_key(account: str) -> str:
        return f"{KEY_PREFIX}:account:{account}"

    async def run(self, count: WindowCount, *, session_key: str = "", user_prefix: str = "") -> WindowResult:
        """Run WINDOW_SCRIPT; with a session key, it counts only for that user's live cached session."""
        assert self._script is not None
        keys = [session_key, *count.keys]
        entry, counted, wait, attempt = await self._script(keys=keys, args=[user_prefix, *count.args])
        return WindowResult(cast(str | None, entry), counted == 1, float(wait), int(attempt))

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
    lockout = Lockout(
        after=settings.rate_limit_account_failures,
        first_seconds=settings.rate_limit_account_lock_seconds,
        max_seconds=settings.rate_limit_account_lock_max_seconds,
    )
    return RateLimiter(rules, shared=shared, redis=redis, enabled=settings.rate_limit_enabled, lockout=lockout)


def limits_storage_uri(url: str) -> str:
    """`limits` names its asyncio Redis storage by scheme: redis:// becomes async+redis://."""
    scheme, rest = url.split("://", 1)
    return f"async+{'redis+unix' if scheme == 'unix' else scheme}://{rest}"
