"""Rate limits through the HTTP API: who is counted, what a refusal looks like, when it ends.

Memory storage on SQLite, Redis storage on the PostgreSQL + Redis backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from pydantic import SecretStr
from sqlmodel import col, select

from keel.core.config import OidcProviderSettings, Settings
from keel.core.db import Database
from keel.core.events_redis import _PUBLISH_SCRIPT as PUBLISH_SCRIPT
from keel.core.ratelimit import KEY_PREFIX
from keel.core.security import MAX_REFRESH_TOKEN_CHARS
from keel.main import create_app
from keel.models import EmailOutbox
from keel.routes import admin, auth, lists, ops, post_preview, posts, todos, tokens, users
from keel.services import auth as auth_service
from tests.conftest import base_settings
from tests.factories import DEFAULT_PASSWORD, Account, Tokens, assert_problem, create_user, login, signed_in
from tests.services.test_statement_counts import count_statements

AUTH = "/api/v1/auth"
PEER = "203.0.113.7"  # the `client` fixture's address
OTHER_IP = "198.51.100.23"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
# Set here, not inherited, so these tests keep meaning the same whatever the suite's defaults become.
LIMITS: dict[str, object] = {
    "rate_limit_enabled": True,
    "rate_limit_login": "5/minute",
    "rate_limit_login_ip": "20/minute",
    "rate_limit_register": "5/hour",
    "rate_limit_verify_email": "10/hour",
    "rate_limit_password_reset": "10/hour",
    "rate_limit_refresh": "30/minute",
    "rate_limit_writes": "120/minute",
    "rate_limit_sign_in_start": "30/minute",
    "rate_limit_account_failures": 10,
    "rate_limit_account_lock_seconds": 60,
    "rate_limit_account_lock_max_seconds": 900,
}
EIGHT_ADDRESSES = [f"198.51.100.{n}" for n in range(1, 9)]


def with_limits(settings: Settings, **overrides: object) -> Settings:
    values = {**LIMITS, "database_url": settings.database_url, "redis_url": settings.redis_url, **overrides}
    return base_settings(settings.data_dir, **values)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_limits(settings)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def client_from(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def attempt(
    client: httpx.AsyncClient, email: str, password: str = "wrong-password", headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(f"{AUTH}/login", data={"username": email, "password": password}, headers=headers)


async def attempts(client: httpx.AsyncClient, email: str, count: int, **kwargs: Any) -> list[int]:
    return [(await attempt(client, email, **kwargs)).status_code for _ in range(count)]


def assert_rate_limited(response: httpx.Response, *, window: int) -> int:
    """A 429 problem whose Retry-After is a whole number of seconds within the window."""
    body = assert_problem(response, 429, "rate_limited")
    assert body["detail"] == "Too many requests; try again later."
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    return retry_after


def comparable(response: httpx.Response) -> dict[str, object]:
    """The body without what differs on every request anyway."""
    body: dict[str, object] = response.json()
    body.pop("request_id", None)
    return body


class TestLogin:
    async def test_the_sixth_attempt_in_a_minute_is_refused_even_with_the_right_password(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)

        assert await attempts(client, account.email, 5) == [401] * 5
        refused = await attempt(client, account.email, account.password)

        retry_after = assert_rate_limited(refused, window=60)
        assert retry_after > 55  # the first attempt was moments ago; it leaves the window in a minute

    async def test_known_and_unknown_emails_get_the_same_refusal(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)

        assert await attempts(client, account.email, 5) == [401] * 5
        assert await attempts(client, "nobody@example.com", 5) == [401] * 5
        known = await attempt(client, account.email)
        unknown = await attempt(client, "nobody@example.com")

        assert_rate_limited(known, window=60)
        assert_rate_limited(unknown, window=60)
        assert comparable(known) == comparable(unknown)
        assert known.headers.keys() - {"x-request-id"} == unknown.headers.keys() - {"x-request-id"}

    async def test_is_checked_before_any_lookup_or_password_hashing(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await create_user(app)
        assert await attempts(client, account.email, 5) == [401] * 5

        def no_hashing(*_args: object) -> None:
            raise AssertionError("a refused login must not hash a password")

        monkeypatch.setattr(auth_service, "password_hasher", no_hashing)
        with count_statements(app) as statements:
            refused = await attempt(client, account.email, account.password)

        assert_rate_limited(refused, window=60)
        assert statements == []

    async def test_counts_the_email_however_it_is_typed(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app, email="mixed@example.com")

        typed = [
            "mixed@example.com",
            "MIXED@example.com",
            " Mixed@Example.COM ",
            "mixed@EXAMPLE.com",
            "mixed@example.com",
        ]
        statuses = [(await attempt(client, email)).status_code for email in typed]

        assert statuses == [401] * 5
        assert_rate_limited(await attempt(client, account.email, account.password), window=60)

    async def test_another_address_is_unaffected(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        assert await attempts(client, account.email, 6) == [401] * 5 + [429]

        async with client_from(app, OTHER_IP) as elsewhere:
            response = await attempt(elsewhere, account.email, account.password)

        assert response.status_code == 200, response.text

    async def test_one_address_gets_twenty_attempts_a_minute_across_emails(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        statuses = [(await attempt(client, f"guess{n}@example.com")).status_code for n in range(20)]

        refused = await attempt(client, account.email, account.password)
        async with client_from(app, OTHER_IP) as elsewhere:
            other = await attempt(elsewhere, account.email, account.password)

        assert statuses == [401] * 20
        assert_rate_limited(refused, window=60)
        assert other.status_code == 200, other.text

    async def test_the_window_frees_when_retry_after_says(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        assert await attempts(client, account.email, 5) == [401] * 5
        retry_after = assert_rate_limited(await attempt(client, account.email, account.password), window=60)

        clock.shift(timedelta(seconds=retry_after - 2))
        still = await attempt(client, account.email, account.password)
        clock.shift(timedelta(seconds=2))
        after = await attempt(client, account.email, account.password)

        assert_rate_limited(still, window=2)
        assert after.status_code == 200, after.text


async def emails_to(app: FastAPI, address: str) -> list[str]:
    """The kinds of email queued for an address, oldest first."""
    database: Database = app.state.database
    async with database.session() as session:
        rows = await session.exec(
            select(EmailOutbox).where(EmailOutbox.to_address == address).order_by(col(EmailOutbox.id))
        )
        return [str(row.kind) for row in rows]


async def change_password(http: httpx.AsyncClient, tokens: Tokens, current: str) -> httpx.Response:
    body = {"current_password": current, "new_password": "Amber-willow-canyon-18"}
    return await http.post(f"{AUTH}/password-change", json=body, headers=tokens.headers)


async def delete_me(http: httpx.AsyncClient, tokens: Tokens, password: str) -> httpx.Response:
    return await http.request("DELETE", "/api/v1/users/me", json={"password": password}, headers=tokens.headers)


class TestAccountLock:
    """Wrong passwords in a row for one account, from any address: a lock that doubles, up to a cap."""

    async def test_forty_wrong_passwords_from_eight_addresses_lock_the_account(self, app: FastAPI) -> None:
        account = await create_user(app)
        statuses = []
        for address in EIGHT_ADDRESSES:  # five each: every per-address limit has room to spare
            async with client_from(app, address) as http:
                statuses += await attempts(http, account.email, 5)
        async with client_from(app, OTHER_IP) as elsewhere:
            right = await attempt(elsewhere, account.email, account.password)

        assert statuses == [401] * 10 + [429] * 30
        assert_rate_limited(right, window=60)
        # The owner is told once, when the lock first engages.
        assert await emails_to(app, account.email) == ["account_locked"]

    async def test_each_further_wrong_password_doubles_the_lock_up_to_the_cap(
        self, settings: Settings, clock: time_machine.Traveller
    ) -> None:
        capped = with_limits(settings, rate_limit_account_lock_seconds=60, rate_limit_account_lock_max_seconds=200)
        async with serving(capped) as limited, client_from(limited, PEER) as http:
            account = await create_user(limited)
            waits = []
            for address in EIGHT_ADDRESSES[:2]:
                async with client_from(limited, address) as other:
                    assert await attempts(other, account.email, 5) == [401] * 5
            for _ in range(4):
                waits.append(assert_rate_limited(await attempt(http, account.email, account.password), window=200))
                clock.shift(timedelta(seconds=waits[-1]))
                assert (await attempt(http, account.email)).status_code == 401  # the lock has ended: one more try
            still = await attempt(http, account.email, account.password)
            notices = await emails_to(limited, account.email)

        assert 55 < waits[0] <= 60
        assert [round(wait, -1) for wait in waits[1:]] == [120, 200, 200]  # doubled, then capped
        assert_rate_limited(still, window=200)
        assert notices == ["account_locked"]  # one notice for the whole run of wrong passwords

    async def test_the_right_password_starts_the_count_over(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        async with client_from(app, OTHER_IP) as other:
            assert await attempts(other, account.email, 5) == [401] * 5
        assert await attempts(client, account.email, 5) == [401] * 5
        assert_rate_limited(await attempt(client, account.email, account.password), window=60)

        clock.shift(timedelta(seconds=61))
        signed_in_again = await attempt(client, account.email, account.password)
        clock.shift(timedelta(seconds=61))  # the per-address window empties too
        after = []
        for address in EIGHT_ADDRESSES[:2]:
            async with client_from(app, address) as http:
                after += await attempts(http, account.email, 5)
        async with client_from(app, OTHER_IP) as other:
            locked_again = await attempt(other, account.email, account.password)

        assert signed_in_again.status_code == 200, signed_in_again.text
        assert after == [401] * 10  # ten more wrong passwords, as from a clean start
        assert_rate_limited(locked_again, window=60)

    async def test_known_and_unknown_emails_lock_alike_and_only_an_owner_is_told(self, app: FastAPI) -> None:
        account = await create_user(app)
        answers = {}
        for email in (account.email, "nobody@example.com"):
            statuses = []
            for address in EIGHT_ADDRESSES[:2]:
                async with client_from(app, address) as http:
                    statuses += await attempts(http, email, 5)
            async with client_from(app, OTHER_IP) as other:
                refused = await attempt(other, email)
            assert statuses == [401] * 10
            assert_rate_limited(refused, window=60)
            answers[email] = (comparable(refused), refused.headers.keys() - {"x-request-id", "retry-after"})

        assert answers[account.email] == answers["nobody@example.com"]
        assert await emails_to(app, account.email) == ["account_locked"]
        assert await emails_to(app, "nobody@example.com") == []

    async def test_a_wrong_current_password_is_throttled_like_a_sign_in(self, app: FastAPI) -> None:
        async with client_from(app, PEER) as http:
            account, tokens = await signed_in(app, http)
            statuses = [(await change_password(http, tokens, "Not-the-password-11")).status_code for _ in range(30)]
            right = await change_password(http, tokens, account.password)
            sign_in = await attempt(http, account.email, account.password)

        assert statuses == [400] * 10 + [429] * 20
        assert_rate_limited(right, window=60)
        assert_rate_limited(sign_in, window=60)

    async def test_deleting_the_account_draws_on_the_same_allowance(self, app: FastAPI) -> None:
        async with client_from(app, PEER) as http:
            account, tokens = await signed_in(app, http)
            statuses = [(await attempt(http, account.email)).status_code for _ in range(4)]
            statuses += [(await change_password(http, tokens, "Not-the-password-11")).status_code for _ in range(3)]
            statuses += [(await delete_me(http, tokens, "Not-the-password-11")).status_code for _ in range(3)]
            refused = await delete_me(http, tokens, account.password)
            still_there = await http.get("/api/v1/users/me", headers=tokens.headers)

        assert statuses == [401] * 4 + [400] * 6
        assert_rate_limited(refused, window=60)
        assert still_there.status_code == 200

    async def test_turned_off_with_the_other_limits(self, settings: Settings) -> None:
        async with serving(with_limits(settings, rate_limit_enabled=False)) as unlimited:
            account = await create_user(unlimited)
            async with client_from(unlimited, PEER) as http:
                statuses = await attempts(http, account.email, 12)
                right = await attempt(http, account.email, account.password)

        assert statuses == [401] * 12
        assert right.status_code == 200


class TestRegister:
    async def test_the_sixth_sign_up_in_an_hour_from_one_address_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        def sign_up(n: int) -> dict[str, str]:
            return {"email": f"new{n}@example.com", "username": f"new_{n}", "password": DEFAULT_PASSWORD}

        statuses = [(await client.post(f"{AUTH}/register", json=sign_up(n))).status_code for n in range(5)]
        refused = await client.post(f"{AUTH}/register", json=sign_up(5))
        async with client_from(app, OTHER_IP) as elsewhere:
            other = await elsewhere.post(f"{AUTH}/register", json=sign_up(6))

        assert statuses == [202] * 5
        retry_after = assert_rate_limited(refused, window=3600)
        assert retry_after > 3500
        assert other.status_code == 202, other.text


class TestEmailRequests:
    async def test_eleventh_password_reset_request_in_an_hour_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)

        statuses = [
            (await client.post(f"{AUTH}/password-reset/request", json={"email": f"x{n}@example.com"})).status_code
            for n in range(10)
        ]
        known = await client.post(f"{AUTH}/password-reset/request", json={"email": account.email})
        unknown = await client.post(f"{AUTH}/password-reset/request", json={"email": "nobody@example.com"})

        assert statuses == [202] * 10
        assert_rate_limited(known, window=3600)
        assert comparable(known) == comparable(unknown)

    async def test_eleventh_verification_request_in_an_hour_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in(app, client, is_verified=False)

        statuses = [
            (await client.post(f"{AUTH}/verify-email/request", headers=tokens.headers)).status_code for _ in range(10)
        ]
        refused = await client.post(f"{AUTH}/verify-email/request", headers=tokens.headers)

        assert statuses == [202] * 10
        assert_rate_limited(refused, window=3600)


class TestRefresh:
    async def test_thirty_refreshes_a_minute_per_session_and_a_refusal_keeps_the_token(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        other_session = await login(client, account)
        refresh_token = tokens.refresh

        for _ in range(30):
            response = await client.post(f"{AUTH}/refresh", json={"refresh_token": refresh_token})
            assert response.status_code == 200, response.text
            refresh_token = response.json()["refresh_token"]
        refused = await client.post(f"{AUTH}/refresh", json={"refresh_token": refresh_token})
        other = await client.post(f"{AUTH}/refresh", json={"refresh_token": other_session.refresh})
        clock.shift(timedelta(seconds=61))
        later = await client.post(f"{AUTH}/refresh", json={"refresh_token": refresh_token})

        assert_rate_limited(refused, window=60)
        assert other.status_code == 200, other.text
        # The refused token was not consumed (a consumed one would end the session as a replay).
        assert later.status_code == 200, later.text

    async def test_a_replay_refused_by_the_limit_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        used, newest = tokens.refresh, tokens.refresh
        for _ in range(30):
            response = await client.post(f"{AUTH}/refresh", json={"refresh_token": newest})
            assert response.status_code == 200, response.text
            newest = response.json()["refresh_token"]

        replayed = await client.post(f"{AUTH}/refresh", json={"refresh_token": used})
        clock.shift(timedelta(seconds=61))
        later = await client.post(f"{AUTH}/refresh", json={"refresh_token": newest})

        # Counted against the replayed token's session before anything changed: the replay did not
        # end the session (that comes with the next replay the limit lets through).
        assert_rate_limited(replayed, window=60)
        assert later.status_code == 200, later.text

    async def test_the_session_comes_from_the_consume_not_from_a_read_before_it(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)

        with count_statements(app) as statements:
            response = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})

        assert response.status_code == 200, response.text
        assert "RateLimit-Policy" in response.headers
        assert len(statements) == 4, statements  # consume, session state, touch, new token
        assert statements[0].lstrip().upper().startswith("UPDATE REFRESH_TOKEN"), statements

    async def test_cookie_refreshes_count_per_session_too(self, settings: Settings) -> None:
        async with serving(with_limits(settings, rate_limit_refresh="2/minute")) as limited:
            account = await create_user(limited)
            async with client_from(limited, PEER) as web:
                headers = {"X-Keel-Client": "web", "Origin": "http://testserver"}
                signed = await web.post(
                    f"{AUTH}/login", data={"username": account.email, "password": account.password}, headers=headers
                )
                assert signed.status_code == 200, signed.text
                statuses = [(await web.post(f"{AUTH}/refresh", headers=headers)).status_code for _ in range(3)]

        assert statuses == [200, 200, 429]

    async def test_tokens_that_belong_to_no_session_are_counted_per_address(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)

        statuses = [
            (await client.post(f"{AUTH}/refresh", json={"refresh_token": f"made-up-{n}"})).status_code
            for n in range(30)
        ]
        refused = await client.post(f"{AUTH}/refresh", json={"refresh_token": "made-up-again"})
        real = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})

        assert statuses == [401] * 30
        assert_rate_limited(refused, window=60)
        assert real.status_code == 200, real.text

    async def test_tokens_too_long_to_be_any_are_counted_per_address_too(self, client: httpx.AsyncClient) -> None:
        # Never looked up (auth_service.PresentedToken has no hash for them), yet still counted.
        too_long = "x" * (MAX_REFRESH_TOKEN_CHARS + 1)

        statuses = [
            (await client.post(f"{AUTH}/refresh", json={"refresh_token": too_long})).status_code for _ in range(30)
        ]
        refused = await client.post(f"{AUTH}/refresh", json={"refresh_token": too_long})

        assert statuses == [401] * 30
        assert_rate_limited(refused, window=60)


@pytest.fixture
async def one_write_a_minute(settings: Settings) -> AsyncIterator[FastAPI]:
    """Started before the test body, so pytest's log capture sits beside Keel's handler."""
    async with serving(with_limits(settings, rate_limit_writes="1/minute", log_level="INFO")) as application:
        yield application


class TestWrites:
    async def test_every_write_endpoint_draws_on_one_allowance_per_user(self, settings: Settings) -> None:
        limited_settings = with_limits(settings, rate_limit_writes="6/minute")
        async with serving(limited_settings) as limited, client_from(limited, PEER) as http:
            _, tokens = await signed_in(limited, http)
            _, other = await signed_in(limited, http)
            auth = tokens.headers
            todo = await http.post("/api/v1/todos", json={"title": "one"}, headers=auth)
            todo_url = f"/api/v1/todos/{todo.json()['id']}"
            post = await http.post(
                "/api/v1/posts", json={"title": "t", "content": "c", "published": True}, headers=auth
            )
            post_url = f"/api/v1/posts/{post.json()['id']}"
            statuses = [
                todo.status_code,
                post.status_code,
                (await http.patch(todo_url, json={"completed": True}, headers=auth)).status_code,
                # (An author does not vote for their own post: a comment is the write here.)
                (await http.post(f"{post_url}/comments", json={"content": "c"}, headers=auth)).status_code,
                (await http.delete(f"{post_url}/vote", headers=auth)).status_code,
                (await http.patch("/api/v1/users/me", json={"full_name": "Busy"}, headers=auth)).status_code,
            ]
            refused = await http.delete(todo_url, headers=auth)
            read = await http.get(todo_url, headers=auth)
            others_write = await http.post("/api/v1/todos", json={"title": "mine"}, headers=other.headers)

        assert statuses == [201, 201, 200, 201, 204, 200]
        assert_rate_limited(refused, window=60)
        assert read.status_code == 200  # reading is not limited, and the refused delete did nothing
        assert others_write.status_code == 201

    async def test_a_write_with_a_revoked_session_is_refused_and_not_counted(self, settings: Settings) -> None:
        async with (
            serving(with_limits(settings, rate_limit_writes="2/minute")) as limited,
            client_from(limited, PEER) as http,
        ):
            account, old = await signed_in(limited, http)
            first = await http.post("/api/v1/todos", json={"title": "one"}, headers=old.headers)
            await http.post(f"{AUTH}/logout", headers=old.headers)
            revoked = [
                (await http.post("/api/v1/todos", json={"title": "x"}, headers=old.headers)).status_code
                for _ in range(3)
            ]
            new = await login(http, account)
            second = await http.post("/api/v1/todos", json={"title": "two"}, headers=new.headers)
            third = await http.post("/api/v1/todos", json={"title": "three"}, headers=new.headers)

        assert (first.status_code, second.status_code) == (201, 201)
        assert revoked == [401] * 3
        assert_rate_limited(third, window=60)

    async def test_a_refused_write_is_logged_with_its_user(
        self, one_write_a_minute: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with client_from(one_write_a_minute, PEER) as http:
            account, tokens = await signed_in(one_write_a_minute, http)
            for _ in range(2):
                await http.post("/api/v1/todos", json={"title": "x"}, headers=tokens.headers)

        refusals = [
            record.msg
            for record in caplog.records
            if isinstance(record.msg, dict) and record.msg.get("event") == "rate_limited"
        ]
        assert [refusal["user_id"] for refusal in refusals] == [account.id]

    # Only the PostgreSQL + Redis backend has a session cache for the count to share a round trip with.
    @pytest.mark.parametrize("backend", ["postgres"], indirect=True)
    async def test_a_write_costs_one_redis_round_trip_and_a_cache_miss_is_counted_once(
        self, settings: Settings
    ) -> None:
        assert settings.redis_url is not None
        async with (
            serving(with_limits(settings, rate_limit_writes="3/minute")) as limited,
            client_from(limited, PEER) as http,
        ):
            _, tokens = await signed_in(limited, http)
            await http.get("/api/v1/todos", headers=tokens.headers)  # the session is now cached
            redis = limited.state.redis
            commands: list[str] = []
            real_execute = redis.execute_command

            async def counting(*args: Any, **options: Any) -> Any:
                commands.append(str(args[0]))
                return await real_execute(*args, **options)

            redis.execute_command = counting
            first = await http.post("/api/v1/todos", json={"title": "one"}, headers=tokens.headers)
            cached_write = list(commands)
            # The cache entry is gone (evicted, or Redis restarted): the database answers,
            # and the write is counted on its own, once.
            await redis.delete(*[key async for key in redis.scan_iter("keel:session:*")])
            second = await http.post("/api/v1/todos", json={"title": "two"}, headers=tokens.headers)
            third = await http.post("/api/v1/todos", json={"title": "three"}, headers=tokens.headers)
            fourth = await http.post("/api/v1/todos", json={"title": "four"}, headers=tokens.headers)

        assert cached_write == ["EVALSHA"]  # the session check and the count, together
        assert (first.status_code, second.status_code, third.status_code) == (201, 201, 201)
        assert_rate_limited(fourth, window=60)

    @pytest.mark.parametrize("backend", ["postgres"], indirect=True)
    async def test_a_write_that_looks_up_what_it_changes_still_authenticates_once(self, settings: Settings) -> None:
        async with serving(settings) as app, client_from(app, PEER) as http:
            _, tokens = await signed_in(app, http)
            todo = await http.post("/api/v1/todos", json={"title": "one"}, headers=tokens.headers)
            post = await http.post("/api/v1/posts", json={"title": "t", "content": "c"}, headers=tokens.headers)
            redis = app.state.redis
            commands: list[list[str]] = []
            real_execute = redis.execute_command

            # Only the access check and the limiter count here: a todo's change also publishes its
            # live update through Redis, after the commit and on its own schedule.
            events_script = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()  # as Redis names a script

            async def counting(*args: Any, **options: Any) -> Any:
                if not (args[0] == "EVALSHA" and args[1] == events_script):
                    commands[-1].append(str(args[0]))
                return await real_execute(*args, **options)

            redis.execute_command = counting
            statuses = []
            for method, url in [
                ("PATCH", f"/api/v1/todos/{todo.json()['id']}"),
                ("PATCH", f"/api/v1/posts/{post.json()['id']}"),
                ("DELETE", f"/api/v1/posts/{post.json()['id']}/vote"),
            ]:
                commands.append([])
                body = {"title": "changed"} if method == "PATCH" else None
                statuses.append((await http.request(method, url, json=body, headers=tokens.headers)).status_code)

        assert statuses == [200, 200, 204]
        # The route and its lookup (OwnedTodo, VisiblePost) share one authentication, and its count.
        assert commands == [["EVALSHA"]] * 3


def fields(response: httpx.Response) -> tuple[str | None, str | None]:
    return response.headers.get("ratelimit-policy"), response.headers.get("ratelimit")


@pytest.fixture
def frozen() -> Iterator[None]:
    """A clock that stands still: every window's reset is then a known number of seconds."""
    with time_machine.travel(datetime.now(UTC), tick=False):
        yield


@pytest.mark.usefixtures("frozen")
class TestRateLimitFields:
    """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers) on every counted answer."""

    async def test_a_write_reports_what_is_left_and_its_refusal_agrees_with_retry_after(
        self, settings: Settings
    ) -> None:
        async with (
            serving(with_limits(settings, rate_limit_writes="3/minute")) as limited,
            client_from(limited, PEER) as http,
        ):
            _, tokens = await signed_in(limited, http)
            anonymous = await http.post("/api/v1/todos", json={"title": "x"})
            invalid = await http.post("/api/v1/todos", json={}, headers=tokens.headers)
            writes = [await http.post("/api/v1/todos", json={"title": "x"}, headers=tokens.headers) for _ in range(3)]
            read = await http.get("/api/v1/todos", headers=tokens.headers)

        assert fields(anonymous) == (None, None)  # refused before it was counted
        assert [response.status_code for response in [invalid, *writes]] == [422, 201, 201, 429]
        assert {fields(response)[0] for response in [invalid, *writes]} == {'"writes";q=3;w=60'}
        # Counted before the body was checked: the 422 used up one.
        assert [fields(response)[1] for response in [invalid, *writes]] == [
            '"writes";r=2;t=60',
            '"writes";r=1;t=60',
            '"writes";r=0;t=60',
            '"writes";r=0;t=60',
        ]
        assert writes[-1].headers["retry-after"] == "60"
        assert fields(read) == (None, None)  # reads are not limited

    async def test_a_sign_in_reports_both_of_its_limits(
        self, app: FastAPI, client: httpx.AsyncClient, backend: str
    ) -> None:
        account = await create_user(app)

        first = await attempt(client, account.email)
        for _ in range(4):
            await attempt(client, account.email)
        refused = await attempt(client, account.email, account.password)

        assert first.status_code == 401
        assert fields(first) == (
            '"login_ip";q=20;w=60, "login";q=5;w=60',
            '"login_ip";r=19;t=60, "login";r=4;t=60',
        )
        assert_rate_limited(refused, window=60)
        # Refused, the sign-in is counted in neither rule in Redis; in memory they are counted one by one.
        left_for_the_address = 15 if backend == "postgres" else 14
        assert fields(refused)[1] == f'"login_ip";r={left_for_the_address};t=60, "login";r=0;t=60'
        assert refused.headers["retry-after"] == "60"

    @pytest.mark.parametrize(
        ("rule", "path"),
        [
            ("register", "/register"),
            ("password_reset", "/password-reset/request"),
            ("password_check", "/password-check"),
            ("verify_email", "/verify-email/request"),
            ("refresh", "/refresh"),
        ],
    )
    async def test_every_other_limited_route_reports_a_decreasing_allowance(
        self, settings: Settings, rule: str, path: str
    ) -> None:
        async with (
            serving(with_limits(settings, **{f"rate_limit_{rule}": "2/hour"})) as limited,
            client_from(limited, PEER) as http,
        ):
            _, tokens = await signed_in(limited, http, is_verified=False)
            refresh_token = tokens.refresh
            answers = []
            for n in range(3):
                if rule == "refresh":
                    answer = await http.post(f"{AUTH}{path}", json={"refresh_token": refresh_token})
                    refresh_token = answer.json().get("refresh_token", refresh_token)
                else:
                    body = {"email": f"new{n}@example.com", "username": f"new_{n}", "password": DEFAULT_PASSWORD}
                    answer = await http.post(f"{AUTH}{path}", json=body, headers=tokens.headers)
                answers.append(answer)

        assert answers[2].status_code == 429
        assert [fields(answer) for answer in answers] == [
            (f'"{rule}";q=2;w=3600', f'"{rule}";r={left};t=3600') for left in (1, 0, 0)
        ]
        assert answers[2].headers["retry-after"] == "3600"

    async def test_the_memory_fallback_reports_too(self, redis_down_app: FastAPI) -> None:
        account = await create_user(redis_down_app)
        async with client_from(redis_down_app, PEER) as http:
            answer = await attempt(http, account.email)

        assert fields(answer) == (
            '"login_ip";q=20;w=60, "login";q=5;w=60',
            '"login_ip";r=19;t=60, "login";r=4;t=60',
        )


class TestSignInStart:
    """What starts a sign-in without a secret (a provider redirect, a link, a passkey challenge) is
    counted per client address; a browser navigating to a provider is sent back to a page instead of a 429."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # A provider nobody answers for: each start is counted, then fails fast as `provider_unavailable`.
        unreachable = OidcProviderSettings(
            id="idp", name="IdP", issuer="http://127.0.0.1:1", client_id="c", client_secret=SecretStr("s")
        )
        return with_limits(settings, rate_limit_sign_in_start="2/minute", oidc_providers=(unreachable,))

    async def test_the_provider_redirect_sends_the_browser_back_with_rate_limited(
        self, app: FastAPI, client: httpx.AsyncClient, frozen: None
    ) -> None:
        answers = [await client.get(f"{AUTH}/oidc/idp/authorize") for _ in range(3)]

        assert [answer.status_code for answer in answers] == [303, 303, 303]
        assert [answer.headers["location"] for answer in answers] == [
            "/signin?error=provider_unavailable",
            "/signin?error=provider_unavailable",
            "/signin?error=rate_limited",
        ]
        assert 1 <= int(answers[2].headers["retry-after"]) <= 60
        assert [fields(answer)[1] for answer in answers] == [
            '"sign_in_start";r=1;t=60',
            '"sign_in_start";r=0;t=60',
            '"sign_in_start";r=0;t=60',
        ]
        assert "keel_oidc=" not in answers[2].headers.get("set-cookie", "")
        # Another address is not affected.
        async with client_from(app, OTHER_IP) as other:
            assert (await other.get(f"{AUTH}/oidc/idp/authorize")).headers["location"].endswith("provider_unavailable")

    async def test_passkey_challenges_and_links_share_the_allowance_and_get_429(
        self, app: FastAPI, client: httpx.AsyncClient, frozen: None
    ) -> None:
        _, tokens = await signed_in(app, client)
        first = await client.post(f"{AUTH}/passkeys/authenticate/options", json={})
        second = await client.post(f"{AUTH}/identities/idp/link", headers=tokens.headers)
        third = await client.post(f"{AUTH}/passkeys/authenticate/options", json={})
        fourth = await client.post(f"{AUTH}/identities/idp/link", headers=tokens.headers)

        assert first.status_code == 200, first.text
        assert second.status_code == 503, second.text  # counted, then the provider could not be reached
        assert_rate_limited(third, window=60)
        assert_rate_limited(fourth, window=60)
        assert fields(third) == ('"sign_in_start";q=2;w=60', '"sign_in_start";r=0;t=60')


class TestTurnedOff:
    async def test_nothing_is_limited(self, settings: Settings) -> None:
        async with serving(with_limits(settings, rate_limit_enabled=False)) as unlimited:
            account = await create_user(unlimited)
            async with client_from(unlimited, PEER) as http:
                statuses = await attempts(http, account.email, 25)

        assert statuses == [401] * 25


class TestSharedStorage:
    @pytest.mark.parametrize("backend", ["postgres"])
    async def test_every_worker_counts_an_accounts_wrong_passwords_in_the_same_redis(self, app: FastAPI) -> None:
        account = await create_user(app)
        async with serving(app.state.settings) as second_worker:
            statuses = []
            for n, address in enumerate(EIGHT_ADDRESSES[:2]):
                async with client_from(second_worker if n else app, address) as http:
                    statuses += await attempts(http, account.email, 5)
            async with client_from(app, OTHER_IP) as first, client_from(second_worker, OTHER_IP) as second:
                refused = [await attempt(first, account.email, account.password)]
                refused.append(await attempt(second, account.email, account.password))

        assert statuses == [401] * 10
        for response in refused:
            assert_rate_limited(response, window=60)

    @pytest.mark.parametrize("backend", ["postgres"])
    async def test_every_worker_counts_in_the_same_redis(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        async with serving(app.state.settings) as second_worker, client_from(second_worker, PEER) as other:
            assert await attempts(client, account.email, 3) == [401] * 3
            assert await attempts(other, account.email, 2) == [401] * 2
            refused = await attempt(other, account.email, account.password)
            also_refused = await attempt(client, account.email, account.password)

        assert_rate_limited(refused, window=60)
        assert_rate_limited(also_refused, window=60)
        keys = [key async for key in app.state.redis.scan_iter(f"{KEY_PREFIX}:*")]
        assert any(":account:" in key for key in keys)
        assert keys
        assert not any(account.email in key for key in keys)  # emails are hashed, never stored


@pytest.fixture
async def redis_down_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Started before the test body, so pytest's log capture sits beside Keel's handler."""
    async with serving(with_limits(settings, redis_url=UNREACHABLE_REDIS, log_level="INFO")) as application:
        application.state.rate_limiter.storage_retry_seconds = 0  # ask Redis on every check
        yield application


class TestRedisDown:
    async def test_limits_still_hold_in_memory_with_one_warning_and_no_500_or_token(
        self, redis_down_app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        account = await create_user(redis_down_app)
        async with client_from(redis_down_app, PEER) as http:
            statuses = await attempts(http, account.email, 5)
            refused = await attempt(http, account.email, account.password)
            async with client_from(redis_down_app, OTHER_IP) as elsewhere:
                other = await attempt(elsewhere, account.email, account.password)

        assert statuses == [401] * 5
        assert_rate_limited(refused, window=60)
        # Another address still gets past the limits, which hold in memory; with no Redis to admit the
        # session to, the sign-in is then refused without a token (README: Redis unreachable fails closed).
        assert_problem(other, 503, "service_unavailable")
        assert "access_token" not in other.json()
        warnings = [
            record
            for record in caplog.records
            if isinstance(record.msg, dict) and record.msg.get("event") == "rate_limit_storage_unavailable"
        ]
        assert len(warnings) == 1  # every check failed over to memory: one outage, one warning
        assert warnings[0].levelname == "WARNING"


class TestClientAddress:
    """The address limits (and the sessions list) see, with and without trusted proxies."""

    async def sessions_ip(self, http: httpx.AsyncClient, account: Account, headers: dict[str, str]) -> str:
        signed = await attempt(http, account.email, account.password, headers=headers)
        assert signed.status_code == 200, signed.text
        token = signed.json()["access_token"]
        sessions = await http.get(f"{AUTH}/sessions", headers={"Authorization": f"Bearer {token}"})
        current = [session for session in sessions.json() if session["current"]]
        return str(current[0]["ip"])

    async def test_ipv6_clients_are_counted_by_their_64_bit_prefix(self, app: FastAPI) -> None:
        # An IPv6 client usually holds a whole /64 (a home line, a cloud VM): one address each
        # would give it 2^64 allowances.
        statuses = []
        for n in range(20):
            async with client_from(app, f"2001:db8:1:2::{n + 1:x}") as neighbour:
                statuses.append((await attempt(neighbour, f"guess{n}@example.com")).status_code)
        async with client_from(app, "2001:db8:1:2:ffff:ffff:ffff:ffff") as same_prefix:
            refused = await attempt(same_prefix, "one-more@example.com")
        async with client_from(app, "2001:db8:1:3::1") as next_prefix:
            other = await attempt(next_prefix, "one-more@example.com")

        assert statuses == [401] * 20
        assert_rate_limited(refused, window=60)
        assert other.status_code == 401

    async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)

        seen = await self.sessions_ip(client, account, {"X-Forwarded-For": "192.0.2.99"})
        statuses = [
            (await attempt(client, account.email, headers={"X-Forwarded-For": f"192.0.2.{n}"})).status_code
            for n in range(5)
        ]

        assert seen == PEER
        assert statuses == [401, 401, 401, 401, 429]  # one address, whatever the header claims

    async def test_a_trusted_proxy_chain_names_the_client(self, settings: Settings) -> None:
        proxied_settings = with_limits(settings, trusted_proxies="10.0.0.0/8, 192.0.2.10")
        async with serving(proxied_settings) as proxied, client_from(proxied, "10.20.30.40") as proxy:
            account = await create_user(proxied)
            chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 192.0.2.10"}  # spoofed, client, proxy

            seen = await self.sessions_ip(proxy, account, chain)
            statuses = await attempts(proxy, account.email, 5, headers=chain)
            other_client = await attempt(proxy, account.email, headers={"X-Forwarded-For": "198.51.100.2"})

        assert seen == "198.51.100.1"
        assert statuses == [401, 401, 401, 401, 429]
        assert other_client.status_code == 401  # a different client behind the same proxy

    async def test_garbage_forwarded_for_from_a_trusted_proxy_means_the_proxy(self, settings: Settings) -> None:
        proxied_settings = with_limits(settings, trusted_proxies="10.0.0.0/8")
        async with serving(proxied_settings) as proxied, client_from(proxied, "10.20.30.40") as proxy:
            account = await create_user(proxied)

            seen = await self.sessions_ip(proxy, account, {"X-Forwarded-For": "198.51.100.1, <script>"})

        assert seen == "10.20.30.40"

    async def test_only_peers_inside_the_trusted_networks_count(self, settings: Settings) -> None:
        proxied_settings = with_limits(settings, trusted_proxies="10.0.0.0/8")
        async with serving(proxied_settings) as proxied:
            account = await create_user(proxied)
            forwarded = {"X-Forwarded-For": "198.51.100.1"}
            async with client_from(proxied, "10.255.0.1") as inside:
                seen_inside = await self.sessions_ip(inside, account, forwarded)
            async with client_from(proxied, "11.0.0.1") as outside:
                seen_outside = await self.sessions_ip(outside, account, forwarded)

        assert seen_inside == "198.51.100.1"
        assert seen_outside == "11.0.0.1"


async def test_every_limited_route_documents_429(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    limited = {
        ("post", f"{AUTH}/login"),
        ("post", f"{AUTH}/register"),
        ("post", f"{AUTH}/refresh"),
        ("post", f"{AUTH}/verify-email/request"),
        ("post", f"{AUTH}/password-reset/request"),
        ("post", f"{AUTH}/password-check"),
        ("post", f"{AUTH}/password-change"),
        ("post", f"{AUTH}/reauthenticate"),
        ("post", f"{AUTH}/mfa/verify"),
        ("post", f"{AUTH}/passkeys/authenticate"),
        ("post", f"{AUTH}/passkeys/authenticate/options"),
        ("post", f"{AUTH}/passkeys/reauthenticate/options"),
        ("post", f"{AUTH}/passkeys/reauthenticate"),
        ("post", f"{AUTH}/identities/{{provider}}/link"),
        ("get", f"{AUTH}/oidc/{{provider}}/callback"),
        ("post", f"{AUTH}/email-code/request"),
        ("post", f"{AUTH}/email-code/verify"),
        ("post", "/api/v1/todos"),
        ("patch", "/api/v1/todos/{todo_id}"),
        ("delete", "/api/v1/todos/{todo_id}"),
        ("post", "/api/v1/lists"),
        ("patch", "/api/v1/lists/{list_id}"),
        ("delete", "/api/v1/lists/{list_id}"),
        ("post", "/api/v1/lists/{list_id}/members"),
        ("patch", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("delete", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("post", "/api/v1/posts"),
        ("patch", "/api/v1/posts/{post_id}"),
        ("delete", "/api/v1/posts/{post_id}"),
        ("post", "/api/v1/posts/{post_id}/vote"),
        ("delete", "/api/v1/posts/{post_id}/vote"),
        ("post", "/api/v1/posts/preview"),
        ("post", "/api/v1/events/ticket"),
        ("get", "/api/v1/events"),  # too_many_streams
        ("post", "/api/v1/posts/{post_id}/comments"),
        ("patch", "/api/v1/posts/{post_id}/comments/{comment_id}"),
        ("delete", "/api/v1/posts/{post_id}/comments/{comment_id}"),
        ("patch", "/api/v1/users/me"),
        ("delete", "/api/v1/users/me"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{token_id}"),
    }

    documented = {
        (method, path)
        for path, operations in paths.items()
        for method, op in operations.items()
        if "429" in op.get("responses", {})
    }

    assert documented == limited


def calls(dependant: Dependant) -> list[Any]:
    """Every dependency a route's tree solves, at any depth."""
    return [found for sub in dependant.dependencies for found in [sub.call, *calls(sub)]]


def test_a_route_authenticates_through_one_scheme_and_exactly_the_writes_count() -> None:
    """Each bearer dependency is solved once per request: a route that named two would authenticate twice."""
    counted = set()
    modules = (admin, auth, lists, ops, post_preview, posts, todos, tokens, users)
    for route in (route for module in modules for route in module.router.routes):
        assert isinstance(route, APIRoute)
        schemes = {id(call): call for call in calls(route.dependant) if isinstance(call, OAuth2PasswordBearer)}
        assert len(schemes) <= 1, route.path
        if any(getattr(scheme, "counts_writes", False) for scheme in schemes.values()):
            counted |= {(method.lower(), route.path) for method in route.methods or ()}

    assert counted == {
        ("post", "/api/v1/todos"),
        ("post", "/api/v1/todos/"),
        ("patch", "/api/v1/todos/{todo_id}"),
        ("delete", "/api/v1/todos/{todo_id}"),
        ("post", "/api/v1/lists"),
        ("post", "/api/v1/lists/"),
        ("patch", "/api/v1/lists/{list_id}"),
        ("delete", "/api/v1/lists/{list_id}"),
        ("post", "/api/v1/lists/{list_id}/members"),
        ("patch", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("delete", "/api/v1/lists/{list_id}/members/{user_id}"),
        ("post", "/api/v1/posts"),
        ("post", "/api/v1/posts/"),
        ("patch", "/api/v1/posts/{post_id:not_mine}"),
        ("delete", "/api/v1/posts/{post_id:not_mine}"),
        ("post", "/api/v1/posts/{post_id:not_mine}/vote"),
        ("delete", "/api/v1/posts/{post_id:not_mine}/vote"),
        ("post", "/api/v1/posts/preview"),
        ("patch", "/api/v1/users/me"),
        ("delete", "/api/v1/users/me"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/{token_id}"),
    }
