"""The rate limiter on its own: several limits per rule, turning off, and a shared storage that fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import limits
import pytest
import time_machine
from limits.aio.storage import MemoryStorage
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from keel.core.config import ConfigError, load_settings
from keel.core.errors import RateLimited
from keel.core.lockout import ATTEMPTS_KEPT_SECONDS, LocalAttempts, Lockout
from keel.core.logging import configure_logging
from keel.core.ratelimit import (
    KEY_PREFIX,
    RULES,
    RateLimiter,
    Rule,
    RuleUsage,
    account_key,
    limits_storage_uri,
    usage_var,
)
from keel.core.redis import create_redis
from tests.conftest import base_settings, reset_redis


class FlakyStorage(MemoryStorage):
    """Stands in for Redis: counts like it, or fails like a Redis that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return await super().acquire_entry(key, limit, expiry, amount)


def limiter_with(shared: MemoryStorage | None = None, **rules: str) -> RateLimiter:
    parsed: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("1000/minute") for rule in RULES}
    parsed.update({rule: limits.parse_many(value) for rule, value in rules.items()})  # type: ignore[misc]
    return RateLimiter(parsed, shared=shared)


async def allowed(limiter: RateLimiter, rule: Rule, *identifiers: str) -> bool:
    try:
        await limiter.hit(rule, *identifiers)
    except RateLimited:
        return False
    return True


@pytest.fixture
def logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Keel's logging set up before the test body, so pytest's handler receives its event dicts."""
    configure_logging(base_settings(tmp_path, log_level="INFO"))
    return caplog


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if isinstance(record.msg, dict) and record.msg["event"] == name]


class TestRules:
    async def test_counts_each_identifier_separately(self) -> None:
        limiter = limiter_with(register="2/minute")

        assert [await allowed(limiter, "register", "198.51.100.1") for _ in range(3)] == [True, True, False]
        assert await allowed(limiter, "register", "198.51.100.2")

    async def test_rules_do_not_share_counts(self) -> None:
        limiter = limiter_with(register="1/minute", password_reset="1/minute")

        assert await allowed(limiter, "register", "198.51.100.1")
        assert await allowed(limiter, "password_reset", "198.51.100.1")

    async def test_every_limit_of_a_rule_applies(self) -> None:
        limiter = limiter_with(register="3/minute;4/hour")

        assert [await allowed(limiter, "register", "ip") for _ in range(4)] == [True, True, True, False]

    async def test_the_error_says_when_to_come_back(self) -> None:
        limiter = limiter_with(register="1/hour")
        await limiter.hit("register", "ip")

        with pytest.raises(RateLimited) as raised:
            await limiter.hit("register", "ip")

        assert raised.value.status == 429
        assert raised.value.code == "rate_limited"
        assert 3590 < int(raised.value.headers["Retry-After"]) <= 3600

    async def test_turned_off_it_never_refuses(self) -> None:
        limiter = limiter_with(register="1/minute")
        limiter.enabled = False

        assert all([await allowed(limiter, "register", "ip") for _ in range(5)])


class TestSharedStorageFailure:
    async def test_counts_in_memory_while_the_shared_storage_is_down(self) -> None:
        shared = FlakyStorage()
        shared.down = True
        limiter = limiter_with(shared, login="2/minute")

        results = [await allowed(limiter, "login", "someone", "ip") for _ in range(3)]

        assert results == [True, True, False]  # still limited, never an exception

    async def test_warns_once_per_outage_and_says_when_it_is_over(self, logs: pytest.LogCaptureFixture) -> None:
        shared = FlakyStorage()
        limiter = limiter_with(shared, login="100/minute")
        limiter.storage_retry_seconds = 0  # try the shared storage on every check

        shared.down = True
        for _ in range(3):
            await limiter.hit("login", "someone", "ip")
        calls_while_down = shared.calls
        shared.down = False
        await limiter.hit("login", "someone", "ip")
        shared.down = True
        await limiter.hit("login", "someone", "ip")

        assert calls_while_down == 3  # Redis was asked each time, and each failure was absorbed
        warnings = events(logs, "rate_limit_storage_unavailable")
        assert len(warnings) == 2  # one for each outage, not one per request
        assert all(record.levelname == "WARNING" for record in warnings)
        assert isinstance(warnings[0].msg, dict)
        assert warnings[0].msg["error"] == "ConnectionError"
        assert len(events(logs, "rate_limit_storage_recovered")) == 1

    async def test_returns_to_the_shared_storage_when_it_answers_again(self) -> None:
        shared = FlakyStorage()
        limiter = limiter_with(shared, login="2/minute")
        limiter.storage_retry_seconds = 0

        shared.down = True
        assert await allowed(limiter, "login", "someone", "ip")
        shared.down = False
        # The shared count had nothing from the outage: two more fit, and the shared storage holds them.
        assert [await allowed(limiter, "login", "someone", "ip") for _ in range(3)] == [True, True, False]
        assert shared.calls == 4

    async def test_does_not_wait_on_a_failed_storage_before_the_retry_interval(self) -> None:
        shared = FlakyStorage()
        shared.down = True
        limiter = limiter_with(shared, login="100/minute")  # the default interval: seconds

        for _ in range(5):
            await limiter.hit("login", "someone", "ip")

        assert shared.calls == 1


class TestStorageUri:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("redis://cache:6379/0", "async+redis://cache:6379/0"),
            ("rediss://:pw@cache:6380/1", "async+rediss://:pw@cache:6380/1"),
            ("unix:///run/redis.sock?db=2", "async+redis+unix:///run/redis.sock?db=2"),
        ],
    )
    def test_names_the_asyncio_storage_for_each_redis_scheme(self, url: str, expected: str) -> None:
        assert limits_storage_uri(url) == expected


@pytest.mark.usefixtures("isolated_env")
class TestSettings:
    def test_defaults(self) -> None:
        settings = load_settings()

        assert settings.rate_limit_enabled is True
        assert {rule: getattr(settings, f"rate_limit_{rule}") for rule in RULES} == {
            "login": "5/minute",
            "login_ip": "20/minute",
            "register": "5/hour",
            "verify_email": "10/hour",
            "password_reset": "10/hour",
            "refresh": "30/minute",
            "writes": "120/minute",
            "sign_in_start": "30/minute",
            "password_check": "60/minute",
        }

    def test_reads_the_limits_notation(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KEEL_RATE_LIMIT_LOGIN", "3 per minute;10/hour")
        monkeypatch.setenv("KEEL_RATE_LIMIT_ENABLED", "false")

        settings = load_settings()

        assert [str(item) for item in limits.parse_many(settings.rate_limit_login)] == [
            "3 per 1 minute",
            "10 per 1 hour",
        ]
        assert settings.rate_limit_enabled is False

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("lots", "KEEL_RATE_LIMIT_REGISTER: 'lots' is not a rate limit such as 5/minute or 10/hour;100/day"),
            ("0/minute", "KEEL_RATE_LIMIT_REGISTER: '0/minute' allows nothing; set KEEL_RATE_LIMIT_ENABLED=false"),
        ],
    )
    def test_an_invalid_limit_is_a_one_line_config_error(
        self, monkeypatch: pytest.MonkeyPatch, value: str, message: str
    ) -> None:
        monkeypatch.setenv("KEEL_RATE_LIMIT_REGISTER", value)

        with pytest.raises(ConfigError) as raised:
            load_settings()

        assert str(raised.value).startswith(message)


# --- the scripted write limit (WINDOW_SCRIPT) against a real Redis --------------------------------
def scripted(redis: Redis, writes: str) -> RateLimiter:
    parsed: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("1000/minute") for rule in RULES}
    parsed["writes"] = limits.parse_many(writes)
    return RateLimiter(parsed, redis=redis)


class TestScriptedWindow:
    async def test_a_moving_window_with_every_limit_and_the_real_wait(self, redis: Redis) -> None:
        limiter = scripted(redis, "3/minute;4/hour")
        with time_machine.travel(1_900_000_000, tick=False):
            first = [await allowed(limiter, "writes", "7") for _ in range(4)]
            assert await allowed(limiter, "writes", "8")  # another user's allowance
        with time_machine.travel(1_900_000_030, tick=False), pytest.raises(RateLimited) as raised:
            await limiter.hit("writes", "7")
        # 30 s into the minute: the oldest counted request leaves the window in 30 s.
        assert raised.value.headers["Retry-After"] == "30"
        with time_machine.travel(1_900_000_061, tick=False):
            # The minute freed its slots; the hour has 3 of 4 used, so one more goes through.
            assert [await allowed(limiter, "writes", "7") for _ in range(2)] == [True, False]
        assert first == [True, True, True, False]

    async def test_a_redis_that_fails_hands_over_to_memory(self) -> None:
        unreachable = create_redis("redis://127.0.0.1:1/0")
        try:
            limiter = scripted(unreachable, "2/minute")
            outcomes = [await allowed(limiter, "writes", "7") for _ in range(3)]
            # Until the retry interval has passed it is not asked again: no window count is offered.
            assert limiter.window_count("writes", "7") is None
        finally:
            await unreachable.aclose()
        assert outcomes == [True, True, False]

    async def test_a_sign_in_is_counted_against_both_of_its_rules_in_one_call_or_in_neither(self, redis: Redis) -> None:
        parsed: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("1000/minute") for rule in RULES}
        parsed["login"] = limits.parse_many("2/minute")
        parsed["login_ip"] = limits.parse_many("3/minute")
        limiter = RateLimiter(parsed, redis=redis)
        calls = 0
        run = limiter.run

        async def counting_run(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await run(*args, **kwargs)

        limiter.run = counting_run  # type: ignore[method-assign]

        async def sign_in(account: str) -> bool:
            try:
                await limiter.hit_together([("login_ip", ["ip"]), ("login", [account, "ip"])])
            except RateLimited:
                return False
            return True

        with time_machine.travel(1_900_000_000, tick=False):
            # The account's limit refuses the third; refused, it leaves the address's allowance alone.
            assert [await sign_in("a") for _ in range(3)] == [True, True, False]
            # So the address still has one sign-in left, for another account; then it is full.
            assert [await sign_in("b"), await sign_in("c")] == [True, False]
        assert calls == 5  # one script call per sign-in
        lengths = {key: await redis.llen(key) async for key in redis.scan_iter(f"{KEY_PREFIX}:window:*")}
        assert sorted(lengths.values()) == [1, 2, 3]  # account b, account a, the address


# --- the account lock (keel.core.lockout) ----------------------------------------------------------
LOCKOUT = Lockout(after=3, first_seconds=10, max_seconds=50)


def locking(redis: Redis | None = None, **rules: str) -> RateLimiter:
    parsed: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("1000/minute") for rule in RULES}
    parsed.update({rule: limits.parse_many(value) for rule, value in rules.items()})  # type: ignore[misc]
    return RateLimiter(parsed, redis=redis, lockout=LOCKOUT)


async def check(limiter: RateLimiter, account: str = "a") -> int | str:
    """The attempt's number, or the Retry-After of its refusal."""
    try:
        return (await limiter.password_attempt(account)).number
    except RateLimited as refused:
        return f"429 after {refused.headers['Retry-After']}"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Redis | None]:
    """Where the limiter keeps the accounts' counts: this process, or Redis."""
    if request.param == "memory":
        yield None
        return
    url = request.getfixturevalue("redis_url")
    await reset_redis(url)
    client = create_redis(url)
    try:
        yield client
    finally:
        await client.aclose()


class TestLockout:
    def test_the_lock_doubles_from_the_limit_up_to_the_cap(self) -> None:
        assert [LOCKOUT.lock_seconds(n) for n in range(1, 8)] == [0, 0, 10, 20, 40, 50, 50]
        assert LOCKOUT.lock_seconds(10_000) == 50

    async def test_counts_locks_and_starts_over_when_the_password_is_right(self, store: Redis | None) -> None:
        limiter = locking(store)
        with time_machine.travel(1_900_000_000, tick=False) as clock:
            run = [await check(limiter) for _ in range(4)]
            clock.shift(10)
            fourth = await limiter.password_attempt("a")  # the lock ended: one more check, a longer lock
            locked_longer = await check(limiter)
            other_account = await check(limiter, "b")
            clock.shift(20)
            fifth = await limiter.password_attempt("a")
            await limiter.password_right(fifth)
            after_right = [await check(limiter) for _ in range(2)]

        assert run == [1, 2, 3, "429 after 10"]
        assert (fourth.number, fourth.locks) == (4, False)
        assert locked_longer == "429 after 20"
        assert other_account == 1
        assert after_right == [1, 2]

    async def test_only_the_check_that_reaches_the_limit_locks(self, store: Redis | None) -> None:
        limiter = locking(store)

        attempts = [await limiter.password_attempt("a") for _ in range(3)]

        assert [attempt.locks for attempt in attempts] == [False, False, True]

    async def test_the_count_is_forgotten_a_day_after_the_last_check(self, store: Redis | None) -> None:
        limiter = locking(store)
        with time_machine.travel(1_900_000_000, tick=False) as clock:
            assert [await check(limiter) for _ in range(2)] == [1, 2]
            if store is not None:  # Redis expires keys by its own clock, which the test cannot move
                assert 0 < await store.ttl(f"{KEY_PREFIX}:account:a") <= ATTEMPTS_KEPT_SECONDS
                await store.delete(f"{KEY_PREFIX}:account:a")
            clock.shift(ATTEMPTS_KEPT_SECONDS + 1)
            assert await check(limiter) == 1

    async def test_a_password_reset_clears_the_lock(self, redis: Redis) -> None:
        limiter = locking(redis)
        assert [await check(limiter) for _ in range(4)] == [1, 2, 3, "429 after 10"]

        await limiter.clear_account("a")

        assert await check(limiter) == 1

    async def test_a_sign_in_checks_the_lock_and_its_windows_in_one_call_and_counts_in_all_or_none(
        self, redis: Redis
    ) -> None:
        limiter = locking(redis, login="2/minute")
        calls = 0
        run = limiter.run

        async def counting_run(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await run(*args, **kwargs)

        limiter.run = counting_run  # type: ignore[method-assign]

        async def sign_in(ip: str) -> int | str:
            try:
                return (await limiter.password_attempt("a", [("login", ["a", ip])])).number
            except RateLimited:
                return "429"

        with time_machine.travel(1_900_000_000, tick=False):
            # The window of the first address refuses its third: that one is not counted in the account.
            first_address = [await sign_in("ip1") for _ in range(3)]
            # The account's third check locks it: the next is refused, and not counted in the window.
            other_address = [await sign_in("ip2"), await sign_in("ip2")]
        assert first_address == [1, 2, "429"]
        assert other_address == [3, "429"]
        assert calls == 5
        lengths = {key: await redis.llen(key) async for key in redis.scan_iter(f"{KEY_PREFIX}:window:*")}
        assert sorted(lengths.values()) == [1, 2]

    async def test_redis_failing_hands_the_count_to_memory(self) -> None:
        unreachable = create_redis("redis://127.0.0.1:1/0")
        try:
            limiter = locking(unreachable)
            outcomes = [await check(limiter) for _ in range(4)]
        finally:
            await unreachable.aclose()

        assert outcomes[:3] == [1, 2, 3]
        assert str(outcomes[3]).startswith("429")

    async def test_turned_off_nothing_is_counted(self) -> None:
        limiter = locking()
        limiter.enabled = False

        attempts = [await limiter.password_attempt("a") for _ in range(5)]

        assert {(attempt.number, attempt.locks) for attempt in attempts} == {(0, False)}

    def test_memory_keeps_a_bounded_number_of_accounts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(LocalAttempts, "MAX_ACCOUNTS", 100)
        local = LocalAttempts()
        for n in range(1000):
            local.count(f"sprayed-{n}", 1_900_000_000.0, LOCKOUT)
        local.count("target", 1_900_000_000.0, LOCKOUT)

        assert len(local._accounts) <= 100
        assert "target" in local._accounts  # the most recent stays

    def test_the_account_key_is_the_normalised_email(self) -> None:
        assert account_key(" Ada@Example.COM ") == account_key("ada@example.com")
        assert "ada" not in account_key("ada@example.com")


# --- what a count reports for the RateLimit fields (keel.http.rate_limit_fields) ------------------
async def reported(limiter: RateLimiter, rule: Rule, *identifiers: str) -> tuple[str | None, int, int, str | None]:
    """The tightest limit's name, allowance left and seconds to its reset, and the refusal's Retry-After."""
    usage: dict[Rule, RuleUsage] = {}
    token = usage_var.set(usage)
    try:
        await limiter.hit(rule, *identifiers)
        retry_after = None
    except RateLimited as refused:
        retry_after = refused.headers["Retry-After"]
    finally:
        usage_var.reset(token)
    state = usage[rule]
    return (state.tightest.name if state.tightest else None, state.remaining, state.reset_seconds, retry_after)


class TestUsage:
    async def test_the_tightest_limit_is_reported_alike_by_the_script_and_by_limits(self, store: Redis | None) -> None:
        parsed: dict[Rule, list[limits.RateLimitItem]] = {rule: limits.parse_many("1000/minute") for rule in RULES}
        parsed["writes"] = limits.parse_many("3/minute;5/hour")
        limiter = RateLimiter(parsed, redis=store)  # writes: WINDOW_SCRIPT with Redis, else `limits` in memory
        seen = {}
        with time_machine.travel(1_900_000_000, tick=False) as clock:
            for at in (0, 10, 20, 30, 200, 201, 202):
                clock.move_to(1_900_000_000 + at)
                seen[at] = await reported(limiter, "writes", "7")

        assert [policy.name for policy in limiter.policies["writes"]] == ["writes-60s", "writes-3600s"]
        assert seen == {
            0: ("writes-60s", 2, 60, None),
            10: ("writes-60s", 1, 50, None),
            20: ("writes-60s", 0, 40, None),
            30: ("writes-60s", 0, 30, "30"),  # refused: the oldest leaves the minute in 30 s
            # The minute's list still holds three requests, all older than a minute: two are left.
            # The hour, with one left, is now the tighter.
            200: ("writes-3600s", 1, 3400, None),
            201: ("writes-3600s", 0, 3399, None),
            202: ("writes-3600s", 0, 3398, "3398"),
        }

    async def test_a_locked_accounts_refusal_reports_its_windows_uncounted(self, store: Redis | None) -> None:
        limiter = locking(store, login="5/minute")
        usage: dict[Rule, RuleUsage] = {}
        with time_machine.travel(1_900_000_000, tick=False):
            for _ in range(3):
                await limiter.password_attempt("a", [("login", ["a", "ip"])])
            token = usage_var.set(usage)
            try:
                with pytest.raises(RateLimited) as refused:
                    await limiter.password_attempt("a", [("login", ["a", "ip"])])
            finally:
                usage_var.reset(token)

        assert refused.value.headers["Retry-After"] == "10"  # the lock's
        assert (usage["login"].remaining, usage["login"].reset_seconds) == (2, 60)
