"""Signing in with a code sent by email (issue 20): /auth/email-code/request and /verify."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.config import Settings
from keel.core.mail import Mail
from keel.main import create_app
from keel.models import EmailKind, EmailOutbox, EmailSignInCode, User
from keel.models import Identity as IdentityRow
from keel.models.mfa import TotpCredential
from keel.services import outbox as outbox_service
from tests.factories import Account, assert_problem, create_user, login
from tests.routes.transports import WEB, assert_cookie_set, jarless_client

AUTH = "/api/v1/auth"
REQUEST = f"{AUTH}/email-code/request"
VERIFY = f"{AUTH}/email-code/verify"
CODE = re.compile(r"\b([0-9]{8})\b")
LINK = re.compile(r"https?://[^\s\"'<>]+/signin/code#[^\s\"'<>]+")


# --- helpers ---------------------------------------------------------------------------------------
async def code_mails(app: FastAPI, address: str) -> list[Mail]:
    """Every sign-in code email queued for `address`, oldest first, as it is (or would be) sent."""
    async with app.state.database.session() as session:
        rows = await session.exec(
            select(EmailOutbox)
            .where(EmailOutbox.to_address == address, EmailOutbox.kind == EmailKind.SIGN_IN_CODE)
            .order_by(col(EmailOutbox.id))
        )
        mails = []
        for row in list(rows):
            mail = await outbox_service.compose(session=session, settings=app.state.settings, row=row)
            assert mail is not None
            mails.append(mail)
        return mails


def code_of(mail: Mail) -> str:
    found: set[str] = set(CODE.findall(mail.text))
    assert len(found) == 1, mail.text
    return found.pop()


async def requested_code(app: FastAPI, client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post(REQUEST, json={"email": account.email})
    assert response.status_code == 202, response.text
    mails = await code_mails(app, account.email)
    assert mails, "no sign-in code was queued"
    return code_of(mails[-1])


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**8:08d}"


async def verify(client: httpx.AsyncClient, email: str, code: str, **kwargs: object) -> httpx.Response:
    return await client.post(VERIFY, json={"email": email, "code": code}, **kwargs)  # type: ignore[arg-type]


async def user_row(app: FastAPI, user_id: int) -> User:
    async with app.state.database.session() as session:
        user: User | None = await session.get(User, user_id)
        assert user is not None
        return user


@pytest.fixture
async def unlimited(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with no rate limits and a generous email throttle: for tests that send many requests."""
    application = create_app(
        settings.model_copy(update={"rate_limit_enabled": False, "email_throttle_per_hour": 10_000})
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def free(unlimited: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=unlimited, client=("203.0.113.9", 51000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# --- requesting ------------------------------------------------------------------------------------
class TestRequest:
    async def test_the_answer_is_the_same_for_an_address_with_no_account(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        known = await client.post(REQUEST, json={"email": account.email})
        unknown = await client.post(REQUEST, json={"email": "nobody-here@example.com"})
        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        assert known.headers["content-type"] == unknown.headers["content-type"]
        # Only the account's owner is mailed, and only the account gets a code.
        assert len(await code_mails(app, account.email)) == 1
        assert await code_mails(app, "nobody-here@example.com") == []
        async with app.state.database.session() as session:
            codes = list(await session.exec(select(EmailSignInCode)))
        assert [code.user_id for code in codes] == [account.id]

    async def test_the_mail_carries_the_code_and_a_link_to_the_web_app_with_it(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account = await create_user(app, email="Mixed.Case@Example.com")
        response = await client.post(REQUEST, json={"email": "MIXED.case@example.COM"})
        assert response.status_code == 202, response.text
        (mail,) = await code_mails(app, account.email)
        code = code_of(mail)
        assert mail.to == account.email
        assert mail.subject == "Your sign-in code"
        assert code in mail.html
        links = set(LINK.findall(mail.text))
        assert len(links) == 1, mail.text
        (link,) = links
        # In the fragment, never the query: a browser sends no fragment to a server (logs, Referer).
        assert link.startswith(f"{settings.public_url}/signin/code#")
        assert urlsplit(link).query == ""
        assert parse_qs(urlsplit(link).fragment) == {"email": [account.email], "code": [code]}
        assert link.replace("&", "&amp;") in mail.html
        # Rendered again (a copy sent after a worker died), it is the same code.
        (again,) = await code_mails(app, account.email)
        assert code_of(again) == code
        # The stored row holds a keyed hash, not the code.
        async with app.state.database.session() as session:
            (row,) = list(await session.exec(select(EmailSignInCode)))
        assert code not in row.code_hash
        assert len(row.code_hash) == 64
        assert timedelta(minutes=9) < row.expires_at - row.created_at <= timedelta(minutes=10)

    async def test_a_new_request_replaces_the_unused_code(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        first = await requested_code(app, client, account)
        second = await requested_code(app, client, account)
        assert first != second
        assert_problem(await verify(client, account.email, first), 400, "invalid_code")
        assert (await verify(client, account.email, second)).status_code == 200

    async def test_the_address_email_throttle_applies(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        for _ in range(5):
            assert (await client.post(REQUEST, json={"email": account.email})).status_code == 202
        # The per-address throttle (3 an hour): no more mails, and the last mailed code still works.
        mails = await code_mails(app, account.email)
        assert len(mails) == 3
        assert (await verify(client, account.email, code_of(mails[-1]))).status_code == 200

    async def test_requests_are_rate_limited_per_client(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        statuses = [
            (await client.post(REQUEST, json={"email": f"someone{n}@example.com"})).status_code for n in range(11)
        ]
        assert statuses == [202] * 10 + [429]
        refused = await client.post(REQUEST, json={"email": "someone-else@example.com"})
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) > 0

    @pytest.mark.parametrize(
        "body",
        [{}, {"email": "not-an-email"}, {"email": 5}, {"email": "a@example.com", "extra": 1}, {"email": "x" * 300}],
    )
    async def test_malformed_requests_are_422(self, client: httpx.AsyncClient, body: object) -> None:
        assert_problem(await client.post(REQUEST, json=body), 422, "validation_error")

    async def test_a_body_that_is_not_json_is_a_problem_not_an_error(self, client: httpx.AsyncClient) -> None:
        for path in (REQUEST, VERIFY):
            response = await client.post(path, content=b"\xff{", headers={"content-type": "application/json"})
            assert_problem(response, 400, "bad_request")


# --- verifying -------------------------------------------------------------------------------------
class TestVerify:
    async def test_the_right_code_signs_in(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        response = await verify(client, account.email, code, headers={"User-Agent": "code-browser/2"})
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        tokens = response.json()
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["amr"] == ["otp"]
        me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200
        assert me.json()["id"] == account.id
        refreshed = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        sessions = await client.get(f"{AUTH}/sessions", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert [row["user_agent"] for row in sessions.json()] == ["code-browser/2"]

    async def test_spaces_in_a_code_are_ignored(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        assert (await verify(client, account.email, f"{code[:4]} {code[4:]}")).status_code == 200

    async def test_web_clients_get_the_refresh_cookie(self, app: FastAPI) -> None:
        account = await create_user(app)
        async with jarless_client(app) as web:
            code = await requested_code(app, web, account)
            response = await verify(web, account.email, code, headers=WEB)
            assert response.status_code == 200, response.text
            assert response.json()["refresh_token"] is None
            assert assert_cookie_set(response, max_age=None)
            # A cross-site page cannot sign in through the web app's mode.
            forged = await verify(web, account.email, code, headers={**WEB, "Origin": "https://evil.example"})
            assert_problem(forged, 403, "csrf_rejected")

    async def test_a_wrong_code_is_invalid_code(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        assert_problem(await verify(client, account.email, other_code(code)), 400, "invalid_code")
        # A wrong try does not spend the code.
        assert (await verify(client, account.email, code)).status_code == 200

    async def test_a_code_is_for_its_own_account_only(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        mine, theirs = await create_user(app), await create_user(app)
        code = await requested_code(app, client, mine)
        await requested_code(app, client, theirs)
        assert_problem(await verify(client, theirs.email, code), 400, "invalid_code")

    async def test_a_used_code_is_invalid(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        assert (await verify(client, account.email, code)).status_code == 200
        assert_problem(await verify(client, account.email, code), 400, "invalid_code")

    async def test_an_expired_code_is_invalid(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        clock.shift(timedelta(minutes=10, seconds=1))
        assert_problem(await verify(client, account.email, code), 400, "invalid_code")

    async def test_a_code_still_works_just_before_it_expires(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        clock.shift(timedelta(minutes=9, seconds=50))
        assert (await verify(client, account.email, code)).status_code == 200

    async def test_the_sixth_try_is_refused_even_when_right(self, unlimited: FastAPI, free: httpx.AsyncClient) -> None:
        # Without rate limits: from one client the sign-in limit (5 a minute) would refuse it first.
        account = await create_user(unlimited)
        code = await requested_code(unlimited, free, account)
        for _ in range(5):
            assert_problem(await verify(free, account.email, other_code(code)), 400, "invalid_code")
        assert_problem(await verify(free, account.email, code), 400, "invalid_code")
        # A new code works again.
        assert (await verify(free, account.email, await requested_code(unlimited, free, account))).status_code == 200

    async def test_the_fifth_try_may_be_the_right_one(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        for _ in range(4):
            assert_problem(await verify(client, account.email, other_code(code)), 400, "invalid_code")
        assert (await verify(client, account.email, code)).status_code == 200

    async def test_an_address_with_no_account_gets_the_same_answer(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        wrong = await verify(client, account.email, other_code(code))
        unknown = await verify(client, "nobody-here@example.com", code)
        assert_problem(wrong, 400, "invalid_code")
        assert_problem(unknown, 400, "invalid_code")
        different = {"request_id"}
        assert {k: v for k, v in wrong.json().items() if k not in different} == {
            k: v for k, v in unknown.json().items() if k not in different
        }

    async def test_signing_in_by_code_claims_an_unverified_account(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        # A squatter registered the victim's address with a password, signed in, set a display
        # name, linked a provider account and enabled an authenticator app; none of it survives.
        squatter = await create_user(app, is_verified=False)
        earlier = await login(client, squatter)
        headers = {"Authorization": f"Bearer {earlier.access}"}
        now = datetime.now(UTC)
        async with app.state.database.session() as session:
            user = await session.get(User, squatter.id)
            assert user is not None
            user.full_name = "Squatter"
            session.add(user)
            session.add(
                IdentityRow(user_id=squatter.id, provider="google", subject="squat", created_at=now, confirmed_at=now)
            )
            session.add(TotpCredential(user_id=squatter.id, secret="unused", confirmed_at=now))
            await session.commit()
        code = await requested_code(app, client, squatter)
        # The owner of the address is not asked for the squatter's second factor.
        response = await verify(client, squatter.email, code)
        assert response.status_code == 200, response.text
        assert response.json()["password_removed"] is True  # the owner is told the password went
        claimed = await user_row(app, squatter.id)
        assert claimed.is_verified
        assert claimed.full_name is None
        # The squatter's session ended and their password no longer signs in.
        assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
        refused = await client.post(AUTH + "/login", data={"username": squatter.email, "password": squatter.password})
        assert refused.status_code == 401, refused.text
        async with app.state.database.session() as session:
            assert (await session.exec(select(IdentityRow).where(IdentityRow.user_id == squatter.id))).all() == []
            assert await session.get(TotpCredential, squatter.id) is None
        # The new session works, as a verified one.
        mine = {"Authorization": f"Bearer {response.json()['access_token']}"}
        post = {"title": "Hello", "content": "Verified by code.", "published": True}
        created = await client.post("/api/v1/posts", json=post, headers=mine)
        assert created.status_code == 201, created.text

    async def test_signing_in_by_code_keeps_a_verified_accounts_password(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        earlier = await login(client, account)
        code = await requested_code(app, client, account)
        response = await verify(client, account.email, code)
        assert response.status_code == 200
        assert response.json()["password_removed"] is False
        assert (
            await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {earlier.access}"})
        ).status_code == 200
        await login(client, account)

    async def test_an_account_with_a_second_factor_must_finish_with_it(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        from tests.routes.test_mfa import code_at, enroll

        enrolled = await enroll(app, client, clock)
        code = await requested_code(app, client, enrolled.account)
        response = await verify(client, enrolled.account.email, code)
        problem = assert_problem(response, 403, "mfa_required")
        assert "access_token" not in response.text
        # The code is spent, and the pending sign-in finishes with the app, as after a password.
        assert_problem(await verify(client, enrolled.account.email, code), 400, "invalid_code")
        finished = await client.post(
            f"{AUTH}/mfa/verify",
            json={"mfa_token": problem["mfa_token"], "code": code_at(enrolled.secret, datetime.now(UTC))},
        )
        assert finished.status_code == 200, finished.text
        claims = jwt.decode(finished.json()["access_token"], options={"verify_signature": False})
        assert claims["amr"] == ["otp", "mfa"]

    async def test_a_deactivated_account_is_told_only_after_the_right_code(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app, is_active=False)
        code = await requested_code(app, client, account)
        assert_problem(await verify(client, account.email, other_code(code)), 400, "invalid_code")
        assert_problem(await verify(client, account.email, code), 403, "inactive_user")
        assert_problem(await verify(client, account.email, code), 400, "invalid_code")  # spent

    async def test_a_deleted_account_s_code_goes_with_it(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        async with app.state.database.session() as session:
            user = await session.get(User, account.id)
            await session.delete(user)
            await session.commit()
        assert_problem(await verify(client, account.email, code), 400, "invalid_code")

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"email": "a@example.com"},
            {"code": "12345678"},
            {"email": "a@example.com", "code": ""},
            {"email": "a@example.com", "code": "12ab5678"},
            {"email": "a@example.com", "code": "1" * 33},
            {"email": "a@example.com", "code": 12345678},
            {"email": "a@example.com", "code": None},
            {"email": "nope", "code": "12345678"},
            {"email": "a@example.com", "code": "12345678", "extra": True},
            {"email": "a@example.com", "code": "1234\u00005678"},
        ],
    )
    async def test_malformed_tries_are_422(self, client: httpx.AsyncClient, body: object) -> None:
        assert_problem(await client.post(VERIFY, json=body), 422, "validation_error")

    async def test_only_spaces_is_a_wrong_code_not_an_error(self, client: httpx.AsyncClient) -> None:
        assert_problem(await verify(client, "a@example.com", "   "), 400, "invalid_code")


# --- the sign-in limits ------------------------------------------------------------------------------
class TestLimits:
    async def test_tries_count_against_the_address_and_client_sign_in_limit(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        statuses = [(await verify(client, account.email, f"{n:08d}")).status_code for n in range(6)]
        # `login`: 5 a minute per (address, client), shared with password sign-ins.
        assert statuses == [400] * 5 + [429]
        refused = await verify(client, account.email, "00000009")
        assert_problem(refused, 429, "rate_limited")
        assert "Retry-After" in refused.headers

    async def test_an_address_with_no_account_is_limited_alike(self, client: httpx.AsyncClient) -> None:
        statuses = [(await verify(client, "nobody@example.com", f"{n:08d}")).status_code for n in range(6)]
        assert statuses == [400] * 5 + [429]

    async def test_wrong_codes_and_passwords_share_the_account_lock(self, settings: Settings) -> None:
        # Each try from a new client address: only the account's count can refuse.
        locking = create_app(settings.model_copy(update={"rate_limit_account_failures": 3}))
        async with locking.router.lifespan_context(locking):
            account = await create_user(locking)

            def client_at(n: int) -> httpx.AsyncClient:
                transport = httpx.ASGITransport(app=locking, client=(f"198.51.100.{n}", 51000))
                return httpx.AsyncClient(transport=transport, base_url="http://testserver")

            for n in range(3):
                async with client_at(n + 1) as http:
                    assert_problem(await verify(http, account.email, f"{n:08d}"), 400, "invalid_code")
            async with client_at(9) as http:
                locked = await http.post(
                    f"{AUTH}/login", data={"username": account.email, "password": account.password}
                )
                assert_problem(locked, 429, "rate_limited")


# --- no difference an outsider can time ---------------------------------------------------------------
def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def _timed(call: Awaitable[httpx.Response], status: int) -> float:
    started = time.perf_counter()  # a coroutine does nothing until awaited
    response = await call
    elapsed = time.perf_counter() - started
    assert response.status_code == status, response.text
    return elapsed


def _alike(known: list[float], unknown: list[float]) -> None:
    # Medians, interleaved samples and a generous bound: a real difference (a mail for one and not
    # the other, a hash for one only) would be many times the noise; scheduling jitter is not.
    a, b = _median_ms(known), _median_ms(unknown)
    assert a <= 3 * b + 3, (a, b)
    assert b <= 3 * a + 3, (a, b)


class TestTiming:
    SAMPLES = 25

    async def test_a_request_takes_as_long_for_an_address_with_no_account(
        self, unlimited: FastAPI, free: httpx.AsyncClient
    ) -> None:
        account = await create_user(unlimited)
        known: list[float] = []
        unknown: list[float] = []
        for n in range(self.SAMPLES + 3):
            k = await _timed(free.post(REQUEST, json={"email": account.email}), 202)
            u = await _timed(free.post(REQUEST, json={"email": f"ghost{n}@example.com"}), 202)
            if n >= 3:  # warm-up
                known.append(k)
                unknown.append(u)
        _alike(known, unknown)

    async def test_a_try_takes_as_long_for_an_address_with_no_account(
        self, unlimited: FastAPI, free: httpx.AsyncClient
    ) -> None:
        account = await create_user(unlimited)
        code = await requested_code(unlimited, free, account)
        known: list[float] = []
        unknown: list[float] = []
        for n in range(self.SAMPLES + 3):
            if n % 4 == 0:  # fresh code, so the tries stay under the code's 5
                code = await requested_code(unlimited, free, account)
            k = await _timed(verify(free, account.email, other_code(code)), 400)
            u = await _timed(verify(free, "ghost@example.com", code), 400)
            if n >= 3:
                known.append(k)
                unknown.append(u)
        _alike(known, unknown)
