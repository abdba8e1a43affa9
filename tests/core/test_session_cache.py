"""The session cache's entry as its two readers see it: the cache itself, and the rate limiter's script."""

from __future__ import annotations

import limits
import time_machine
from redis.asyncio import Redis

from keel.core.ratelimit import KEY_PREFIX, RULES, RateLimiter, Rule
from keel.core.session_cache import SessionCache, SessionState

NOW = 1_900_000_000


async def test_the_write_script_counts_only_for_the_live_session_of_the_user_the_encoder_wrote(
    redis: Redis,
) -> None:
    rules: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("100/minute") for rule in RULES}
    limiter = RateLimiter(rules, redis=redis)
    cache = SessionCache(redis, ttl_seconds=300, tombstone_ttl_seconds=300)
    await cache.fill("live", SessionState(7, "user", True, NOW + 60), 300)
    await cache.fill("expired", SessionState(7, "admin", False, NOW - 1), 300)
    await cache.fill("revoked", SessionState(7, "user", True, NOW + 60), 300)
    await cache.tombstone(["revoked"])
    seen = {}
    with time_machine.travel(NOW, tick=False):
        for session_id, user_id in [("live", 7), ("expired", 7), ("revoked", 7), ("missing", 7), ("live", 17)]:
            count = limiter.window_count("writes", str(user_id))
            assert count is not None
            state, result = await cache.get_counting(session_id, user_id, limiter, count)
            seen[(session_id, user_id)] = (state, result.counted)

    assert seen == {
        ("live", 7): (SessionState(7, "user", True, NOW + 60), True),
        ("expired", 7): (SessionState(7, "admin", False, NOW - 1), False),
        ("revoked", 7): ("revoked", False),
        ("missing", 7): (None, False),
        ("live", 17): (SessionState(7, "user", True, NOW + 60), False),  # user 7's entry is not user 17's
    }
    windows = [key async for key in redis.scan_iter(f"{KEY_PREFIX}:window:*")]
    assert [await redis.llen(key) for key in windows] == [1]  # counted once, for the live session
