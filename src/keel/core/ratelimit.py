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

Each count also finds what is left of the rule's limits (``RuleUsage``: the remaining allowance of
its tightest limit, and the seconds until its oldest counted request leaves the window), for the
``RateLimit`` fields of the answer (keel.http.rate_limit_fields). The script finds it in the same
call; through `limits` it costs one more storage call, which only the rules counted there
(register, email requests) pay, as the writes, sign-ins and refreshes are scripted.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
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
from keel.core.window_script import WINDOW_SCRIPT

log = get_logger("keel.ratelimit")

Rule = Literal[
    "login",
    "login_ip",
    "register",
    "verify_email",
    "password_reset",
    "password_check",
    "refresh",
    "writes",
    "sign_in_start",
]
RULES: tuple[Rule, ...] = get_args(Rule)
# Counted in Redis by WINDOW_SCRIPT: the session check counts a write in its own round trip, a
# sign-in is counted against both of its rules in one, and a refresh's count brings its RateLimit
# numbers with it.
SCRIPTED_RULES: frozenset[Rule] = frozenset({"writes", "login", "login_ip", "refresh"})


@dataclass(frozen=True, slots=True)
class Policy:
    """One limit of a rule as the RateLimit-Policy field names it: `quota` requests in `window` seconds."""

    name: str
    quota: int
    window: int


@dataclass(slots=True)
class RuleUsage:
    """A rule one request was counted against: its limits, and once counted (or refused) its tightest.

    The tightest is the limit with the least allowance left (of those, the longest to wait for):
    `remaining` more requests fit in the next `reset_seconds` seconds.
    """

    policies: tuple[Policy, ...]
    tightest: Policy | None = None
    remaining: int = 0
    reset_seconds: int = 0

    def update(self, states: Sequence[tuple[Policy, int, int]]) -> None:
        if states:
            self.tightest, self.remaining, self.reset_seconds = min(states, key=lambda state: (state[1], -state[2]))


# Set per request by the HTTP layer to an empty dict, which every count fills in, rule by rule, in
# the order they were counted; unset (nothing kept) outside a request.
usage_var: ContextVar[dict[Rule, RuleUsage] | None] = ContextVar("keel_rate_limit_usage", default=None)


def account_key(email: str) -> str:
    """An account's key in the password-check count: its email as typed, normalised like a sign-in's lookup."""
    return digest(email.strip().lower())


@dataclass(frozen=True, slots=True)
class WindowCount:
    """One request to count against a scripted rule's windows in Redis: WINDOW_SCRIPT's lists and values."""

    keys: list[str]  # KEYS[2..n]
    args: list[float]  # ARGV[2..n]
    lists: list[tuple[Rule, Policy]]  # the rule and limit of each list, KEYS[3..n]


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What WINDOW_SCRIPT answered: the session entry it read (if asked), and whether it counted."""

    entry: str | None
    counted: bool
    wait_seconds: float
    attempt: int = 0
    lists: tuple[tuple[int, int], ...] = ()  # each list's allowance left and seconds to its reset

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
        self.policies = {rule: policies_of(rule, items) for rule, items in rules.items()}
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
        usage = usage_var.get()
        if usage is not None:
            for rule, _ in checks:
                usage[rule] = RuleUsage(self.policies[rule])
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
        locked_until = self._local_attempts.locked_until(account, time.time()) if account is not None else 0.0
        # A locked account's check is counted in no window, as in the script; the windows are still reported.
        counting = locked_until <= time.time()
        for rule, identifiers in checks:
            states: list[tuple[Policy, int, int]] = []
            try:
                for item, policy in zip(self.rules[rule], self.policies[rule], strict=True):
                    allowed, remaining, reset_seconds = await self._hit(item, (rule, *identifiers), count=counting)
                    states.append((policy, remaining, reset_seconds))
                    if not allowed:
                        raise RateLimited(retry_after=reset_seconds)
            finally:
                if usage is not None:
                    usage[rule].update(states)
        if not counting:
            raise RateLimited(retry_after=max(math.ceil(locked_until - time.time()), 1))
        if account is None or self.lockout is None:
            return 0
        return self._local_attempts.count(account, time.time(), self.lockout)

    async def _hit(
        self, item: limits.RateLimitItem, identifiers: tuple[str, ...], *, count: bool = True
    ) -> tuple[bool, int, int]:
        if self._shared is not None and time.monotonic() >= self._skip_shared_until:
            try:
                outcome = await _attempt(self._shared, item, identifiers, count=count)
            except _STORAGE_ERRORS as exc:
                self._shared_failed(exc)
            else:
                self._recovered()
                return outcome
        return await _attempt(self._local, item, identifiers, count=count)

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
        windows = [
            (item, rule, identifiers, policy)
            for rule, identifiers in checks
            for item, policy in zip(self.rules[rule], self.policies[rule], strict=True)
        ]
        keys = [
            self._account_key(account) if account is not None and lockout is not None else "",
            *(f"{KEY_PREFIX}:window:{item.key_for(rule, *identifiers)}" for item, rule, identifiers, _ in windows),
        ]
        args = [
            time.time(),
            *(lockout.args if lockout is not None else [0, 0, 0, 0]),
            *(value for item, _, _, _ in windows for value in (item.amount, item.get_expiry())),
        ]
        return WindowCount(keys, args, [(rule, policy) for _, rule, _, policy in windows])

    @staticmethod
    def _account_key(account: str) -> str:
        return f"{KEY_PREFIX}:account:{account}"

    async def run(self, count: WindowCount, *, session_key: str = "", user_prefix: str = "") -> WindowResult:
        """Run WINDOW_SCRIPT; with a session key, it counts only for that user's live cached session."""
        assert self._script is not None
        keys = [session_key, *count.keys]
        entry, counted, wait, attempt, lists = await self._script(keys=keys, args=[user_prefix, *count.args])
        result = WindowResult(
            cast(str | None, entry),
            counted == 1,
            float(wait),
            int(attempt),
            tuple((int(remaining), int(reset)) for remaining, reset in lists),
        )
        usage = usage_var.get()
        if usage is not None and result.lists:
            by_rule: dict[Rule, list[tuple[Policy, int, int]]] = {}
            for (rule, policy), (remaining, reset) in zip(count.lists, result.lists, strict=True):
                by_rule.setdefault(rule, []).append((policy, remaining, reset))
            for rule, states in by_rule.items():
                usage.setdefault(rule, RuleUsage(self.policies[rule])).update(states)
        return result

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
    strategy: MovingWindowRateLimiter, item: limits.RateLimitItem, identifiers: tuple[str, ...], *, count: bool
) -> tuple[bool, int, int]:
    """Whether the request is allowed (and counted, unless not to `count`); then the allowance left and
    whole seconds until the oldest counted request leaves the window (when a refused one could come back)."""
    allowed = await strategy.hit(item, *identifiers) if count else True
    stats = await strategy.get_window_stats(item, *identifiers)
    # At most the window: `limits` reads timestamps back from Redis rounded to 14 digits, a little late.
    return allowed, stats.remaining, min(max(math.ceil(stats.reset_time - time.time()), 0), item.get_expiry())


def policies_of(rule: Rule, items: Sequence[limits.RateLimitItem]) -> tuple[Policy, ...]:
    """A rule's limits as policies: named after the rule, and after its window too when it has several."""
    return tuple(
        Policy(rule if len(items) == 1 else f"{rule}-{item.get_expiry()}s", item.amount, item.get_expiry())
        for item in items
    )


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
