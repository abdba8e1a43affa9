"""Two-factor sign-in through HTTP: TOTP, recovery codes, /mfa/verify, re-authentication, the policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import jwt
import pyotp
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.config import Settings
from keel.models import EmailKind, EmailOutbox, Role
from keel.models.mfa import PendingSignIn, RecoveryCode, TotpCredential
from keel.schemas.auth import TokenPair
from tests.factories import Account, Tokens, assert_problem, create_user, login

AUTH = "/api/v1/auth"
MFA = f"{AUTH}/mfa"
STRONG_PASSWORD = "Velvet-harbor-lantern-93"


def bearer(tokens: Tokens | str) -> dict[str, str]:
    access = tokens.access if isinstance(tokens, Tokens) else tokens
    return {"Authorization": f"Bearer {access}"}


def amr_of(access_token: str) -> list[str]:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    amr: list[str] = claims["amr"]
    return amr


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


async def password_login(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    return await client.post(f"{AUTH}/login", data={"username": account.email, "password": account.password})


async def mails(app: FastAPI, address: str) -> list[EmailKind]:
    async with app.state.database.session() as session:
        rows = await session.exec(select(EmailOutbox).where(EmailOutbox.to_address == address))
        return [row.kind for row in rows]


@dataclass
class Enrolled:
    account: Account
    tokens: Tokens  # the session that turned the app on
    secret: str
    recovery_codes: list[str]


async def enroll(app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller) -> Enrolled:
    """A user with an authenticator app turned on; the clock then moves to the next time step, so a
    sign-in's code is not the (spent) one that confirmed the app."""
    account = await create_user(app)
    tokens = await login(client, account)
    setup = await client.post(f"{MFA}/totp/setup", headers=bearer(tokens))
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirm = await client.post(
        f"{MFA}/totp/confirm", json={"code": code_at(secret, datetime.now(UTC))}, headers=bearer(tokens)
    )
    assert confirm.status_code == 200, confirm.text
    clock.shift(timedelta(seconds=30))
    return Enrolled(account, tokens, secret, confirm.json()["recovery_codes"])


async def mfa_token_for(client: httpx.AsyncClient, account: Account) -> str:
    response = await password_login(client, account)
    problem = assert_problem(response, 403, "mfa_required")
    token = problem["mfa_token"]
    assert isinstance(token, str)
    return token


# --- setting up ------------------------------------------------------------------------------------
class TestTotpSetup:
    async def test_setup_gives_a_secret_its_uri_and_a_qr_code(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app, email="Sea+Dog@Example.com")
        tokens = await login(client, account)
        response = await client.post(f"{MFA}/totp/setup", headers=bearer(tokens))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert re.fullmatch(r"[A-Z2-7]{32}", body["secret"])
        uri = urlparse(body["otpauth_uri"])
        assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
        assert unquote(uri.path) == "/Keel:sea+dog@example.com"
        query = parse_qs(uri.query)
        assert query["issuer"] == ["Keel"]
        assert query["secret"] == [body["secret"]]
        assert body["qr_svg"].lstrip().startswith("<svg") or "<svg" in body["qr_svg"][:200]
        # Pending until confirmed: signing in still needs only the password.
        assert (await client.get(MFA, headers=bearer(tokens))).json() == {
            "totp": False,
            "passkeys": 0,
            "recovery_codes_left": 0,
        }
        assert (await password_login(client, account)).status_code == 200

    async def test_confirm_turns_it_on_hands_out_ten_codes_and_ends_other_sessions(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        other = await login(client, account)
        enrolled_tokens = await login(client, account)
        setup = (await client.post(f"{MFA}/totp/setup", headers=bearer(enrolled_tokens))).json()
        response = await client.post(
            f"{MFA}/totp/confirm",
            json={"code": code_at(setup["secret"], datetime.now(UTC))},
            headers=bearer(enrolled_tokens),
        )
        assert response.status_code == 200, response.text
        codes = response.json()["recovery_codes"]
        assert len(codes) == 10
        assert len(set(codes)) == 10
        assert (await client.get(MFA, headers=bearer(enrolled_tokens))).json() == {
            "totp": True,
            "passkeys": 0,
            "recovery_codes_left": 10,
        }
        assert_problem(await client.get("/api/v1/users/me", headers=bearer(other)), 401, "session_revoked")
        assert (await client.get("/api/v1/users/me", headers=bearer(enrolled_tokens))).status_code == 200
        assert EmailKind.SECOND_FACTOR_ADDED in await mails(app, account.email)
        # Stored encrypted, never as the secret itself.
        async with app.state.database.session() as session:
            stored = await session.get(TotpCredential, account.id)
            assert stored is not None
            assert setup["secret"] not in stored.secret

    async def test_a_wrong_code_does_not_confirm(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        setup = (await client.post(f"{MFA}/totp/setup", headers=bearer(tokens))).json()
        right = code_at(setup["secret"], datetime.now(UTC))
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        response = await client.post(f"{MFA}/totp/confirm", json={"code": wrong}, headers=bearer(tokens))
        assert_problem(response, 400, "invalid_code")
        assert (await client.get(MFA, headers=bearer(tokens))).json()["totp"] is False

    async def test_confirm_without_a_setup_is_invalid_code(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        assert_problem(
            await client.post(f"{MFA}/totp/confirm", json={"code": "123456"}, headers=bearer(tokens)),
            400,
            "invalid_code",
        )

    async def test_setting_up_again_while_pending_replaces_the_secret(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        first = (await client.post(f"{MFA}/totp/setup", headers=bearer(tokens))).json()["secret"]
        second = (await client.post(f"{MFA}/totp/setup", headers=bearer(tokens))).json()["secret"]
        assert first != second
        stale = await client.post(
            f"{MFA}/totp/confirm", json={"code": code_at(first, datetime.now(UTC))}, headers=bearer(tokens)
        )
        assert_problem(stale, 400, "invalid_code")

    async def test_setup_when_already_on_is_409(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        response = await client.post(f"{MFA}/totp/setup", headers=bearer(enrolled.tokens))
        assert_problem(response, 409, "totp_already_enabled")


# --- signing in with a second step ----------------------------------------------------------------
class TestSecondStep:
    async def test_password_alone_gets_mfa_required_and_no_tokens(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        response = await password_login(client, enrolled.account)
        problem = assert_problem(response, 403, "mfa_required")
        assert "access_token" not in response.text
        assert "refresh_token" not in response.text
        assert problem["methods"] == ["totp", "recovery_code"]
        assert problem["expires_in"] == 300
        assert response.headers["cache-control"] == "no-store"
        assert "set-cookie" not in response.headers

    async def test_the_right_code_finishes_the_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        response = await client.post(
            f"{MFA}/verify", json={"mfa_token": token, "code": code_at(enrolled.secret, datetime.now(UTC))}
        )
        assert response.status_code == 200, response.text
        pair = TokenPair.model_validate(response.json())
        assert amr_of(pair.access_token) == ["pwd", "otp", "mfa"]
        sessions = (await client.get(f"{AUTH}/sessions", headers=bearer(pair.access_token))).json()
        current = next(item for item in sessions if item["current"])
        assert current["amr"] == ["pwd", "otp", "mfa"]
        # A refreshed access token keeps how the session was signed in.
        assert pair.refresh_token is not None
        refreshed = await client.post(f"{AUTH}/refresh", json={"refresh_token": pair.refresh_token})
        assert amr_of(refreshed.json()["access_token"]) == ["pwd", "otp", "mfa"]
        # Single use.
        again = await client.post(
            f"{MFA}/verify", json={"mfa_token": token, "code": code_at(enrolled.secret, datetime.now(UTC))}
        )
        assert_problem(again, 401, "invalid_mfa_token")

    async def test_a_password_only_session_says_so(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        assert amr_of(tokens.access) == ["pwd"]
        sessions = (await client.get(f"{AUTH}/sessions", headers=bearer(tokens))).json()
        assert sessions[0]["amr"] == ["pwd"]

    async def test_a_code_is_good_once(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        code = code_at(enrolled.secret, datetime.now(UTC))
        first = await client.post(
            f"{MFA}/verify", json={"mfa_token": await mfa_token_for(client, enrolled.account), "code": code}
        )
        assert first.status_code == 200, first.text
        replay = await client.post(
            f"{MFA}/verify", json={"mfa_token": await mfa_token_for(client, enrolled.account), "code": code}
        )
        assert_problem(replay, 400, "invalid_code")

    @pytest.mark.parametrize(("offset", "accepted"), [(-60, False), (-30, True), (0, True), (30, True), (60, False)])
    async def test_codes_one_step_either_side_are_accepted(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller, offset: int, accepted: bool
    ) -> None:
        enrolled = await enroll(app, client, clock)
        clock.shift(timedelta(seconds=90))  # well past the confirming code's step, either way
        now = datetime.now(UTC)
        # The middle of a step, so a second of test time cannot carry the code over an edge.
        middle = datetime.fromtimestamp((int(now.timestamp()) // 30) * 30 + 15, UTC)
        clock.move_to(middle)
        token = await mfa_token_for(client, enrolled.account)
        response = await client.post(
            f"{MFA}/verify",
            json={"mfa_token": token, "code": code_at(enrolled.secret, middle + timedelta(seconds=offset))},
        )
        if accepted:
            assert response.status_code == 200, response.text
        else:
            assert_problem(response, 400, "invalid_code")

    async def test_a_code_at_the_last_second_of_the_next_step_edge(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        """At the first second of a step, the code of two steps back is out; the one before is in."""
        enrolled = await enroll(app, client, clock)
        clock.shift(timedelta(seconds=120))
        edge = datetime.fromtimestamp((int(datetime.now(UTC).timestamp()) // 30) * 30, UTC)
        clock.move_to(edge)
        token = await mfa_token_for(client, enrolled.account)
        too_old = code_at(enrolled.secret, edge - timedelta(seconds=31))
        previous = code_at(enrolled.secret, edge - timedelta(seconds=1))
        if too_old != previous:  # (a one-in-a-million collision would prove nothing)
            assert_problem(
                await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": too_old}), 400, "invalid_code"
            )
        ok = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": previous})
        assert ok.status_code == 200, ok.text

    async def test_five_wrong_codes_end_the_pending_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        right = code_at(enrolled.secret, datetime.now(UTC))
        wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
        for _ in range(5):
            assert_problem(
                await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": wrong}), 400, "invalid_code"
            )
        dead = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": right})
        assert_problem(dead, 401, "invalid_mfa_token")
        async with app.state.database.session() as session:
            assert list(await session.exec(select(PendingSignIn))) == []

    async def test_wrong_codes_sent_at_once_get_five_tries_in_all(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        """A try is taken before its code is checked, so a burst cannot outrun the limit."""
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        right = code_at(enrolled.secret, datetime.now(UTC))
        wrong = [f"{(int(right) + 100_000 * n) % 1_000_000:06d}" for n in range(1, 10)]
        answers = await asyncio.gather(
            *(client.post(f"{MFA}/verify", json={"mfa_token": token, "code": code}) for code in wrong)
        )
        codes = sorted(answer.json()["code"] for answer in answers)
        assert codes.count("invalid_code") == 5, codes
        assert codes.count("invalid_mfa_token") == 4, codes

    async def test_four_wrong_codes_still_leave_the_fifth_try(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        right = code_at(enrolled.secret, datetime.now(UTC))
        wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
        for _ in range(4):
            await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": wrong})
        ok = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": right})
        assert ok.status_code == 200, ok.text

    async def test_the_mfa_token_expires_after_five_minutes(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        clock.shift(timedelta(minutes=5, seconds=1))
        response = await client.post(
            f"{MFA}/verify", json={"mfa_token": token, "code": code_at(enrolled.secret, datetime.now(UTC))}
        )
        assert_problem(response, 401, "invalid_mfa_token")

    @pytest.mark.parametrize("token", ["not-a-token", "x" * 128])
    async def test_an_unknown_mfa_token_is_401(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": "123456"})
        assert_problem(response, 401, "invalid_mfa_token")

    @pytest.mark.parametrize(
        "body",
        [
            {"mfa_token": "t"},
            {"mfa_token": "t", "code": "123456", "recovery_code": "abcde-fghij"},
            {"code": "123456"},
            {"mfa_token": "t", "code": ""},
        ],
    )
    async def test_a_malformed_verify_is_422(self, client: httpx.AsyncClient, body: dict[str, str]) -> None:
        assert_problem(await client.post(f"{MFA}/verify", json=body), 422, "validation_error")

    @pytest.mark.parametrize("code", ["abcdef", "12345", "1234567", "١٢٣٤٥٦", " "])
    async def test_a_code_that_is_no_code_is_invalid_code(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller, code: str
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        assert_problem(await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": code}), 400, "invalid_code")

    async def test_a_code_with_spaces_is_accepted(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        code = code_at(enrolled.secret, datetime.now(UTC))
        response = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": f"{code[:3]} {code[3:]}"})
        assert response.status_code == 200, response.text

    async def test_a_user_deactivated_meanwhile_cannot_finish(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        admin = await create_user(app, role=Role.ADMIN)
        admin_tokens = await login(client, admin)
        deactivate = await client.patch(
            f"/api/v1/admin/users/{enrolled.account.id}", json={"is_active": False}, headers=bearer(admin_tokens)
        )
        assert deactivate.status_code == 200, deactivate.text
        response = await client.post(
            f"{MFA}/verify", json={"mfa_token": token, "code": code_at(enrolled.secret, datetime.now(UTC))}
        )
        assert_problem(response, 403, "inactive_user")

    async def test_wrong_codes_count_against_the_accounts_sign_in_budget(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller, settings: Settings
    ) -> None:
        enrolled = await enroll(app, client, clock)
        right = code_at(enrolled.secret, datetime.now(UTC))
        wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
        statuses = []
        # Each mfa_token takes five wrong codes, and a right password does not start the count over
        # while the second step is missing: the account's ten run out during the second token.
        for _ in range(2):
            token = await mfa_token_for(client, enrolled.account)
            for _ in range(5):
                response = await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": wrong})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    break
            if statuses[-1] == 429:
                break
        assert statuses == [400] * 8 + [429], statuses
        assert response.headers["retry-after"].isdigit()
        assert_problem(await password_login(client, enrolled.account), 429, "rate_limited")


# --- recovery codes --------------------------------------------------------------------------------
class TestRecoveryCodes:
    async def test_a_recovery_code_finishes_a_sign_in_once_and_mails_the_owner(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        code = enrolled.recovery_codes[3]
        response = await client.post(
            f"{MFA}/verify",
            json={"mfa_token": await mfa_token_for(client, enrolled.account), "recovery_code": code.upper()},
        )
        assert response.status_code == 200, response.text
        assert amr_of(response.json()["access_token"]) == ["pwd", "otp", "mfa"]
        assert EmailKind.RECOVERY_CODE_USED in await mails(app, enrolled.account.email)
        again = await client.post(
            f"{MFA}/verify", json={"mfa_token": await mfa_token_for(client, enrolled.account), "recovery_code": code}
        )
        assert_problem(again, 400, "invalid_code")
        status = (await client.get(MFA, headers=bearer(response.json()["access_token"]))).json()
        assert status["recovery_codes_left"] == 9

    async def test_codes_are_stored_hashed(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        async with app.state.database.session() as session:
            stored = [row.code_hash for row in await session.exec(select(RecoveryCode))]
        assert len(stored) == 10
        plain = {code.replace("-", "") for code in enrolled.recovery_codes} | set(enrolled.recovery_codes)
        assert not plain & set(stored)

    async def test_a_new_set_replaces_the_old(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        response = await client.post(f"{MFA}/recovery-codes", headers=bearer(enrolled.tokens))
        assert response.status_code == 200, response.text
        new_codes = response.json()["recovery_codes"]
        assert len(new_codes) == 10
        assert not set(new_codes) & set(enrolled.recovery_codes)
        old = await client.post(
            f"{MFA}/verify",
            json={
                "mfa_token": await mfa_token_for(client, enrolled.account),
                "recovery_code": enrolled.recovery_codes[0],
            },
        )
        assert_problem(old, 400, "invalid_code")
        new = await client.post(
            f"{MFA}/verify",
            json={"mfa_token": await mfa_token_for(client, enrolled.account), "recovery_code": new_codes[0]},
        )
        assert new.status_code == 200, new.text

    async def test_no_codes_without_a_second_factor(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        tokens = await login(client, await create_user(app))
        response = await client.post(f"{MFA}/recovery-codes", headers=bearer(tokens))
        assert_problem(response, 409, "mfa_not_enabled")


# --- turning it off, re-authentication --------------------------------------------------------------
class TestTurningOff:
    async def test_turning_the_app_off_lets_the_password_alone_sign_in_again(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        response = await client.delete(f"{MFA}/totp", headers=bearer(enrolled.tokens))
        assert response.status_code == 204, response.text
        assert (await client.get(MFA, headers=bearer(enrolled.tokens))).json() == {
            "totp": False,
            "passkeys": 0,
            "recovery_codes_left": 0,
        }
        assert (await password_login(client, enrolled.account)).status_code == 200
        assert EmailKind.SECOND_FACTOR_REMOVED in await mails(app, enrolled.account.email)
        assert_problem(await client.delete(f"{MFA}/totp", headers=bearer(enrolled.tokens)), 404, "totp_not_enabled")


SENSITIVE: list[tuple[str, str, dict[str, object] | None]] = [
    ("POST", f"{MFA}/totp/setup", None),
    ("DELETE", f"{MFA}/totp", None),
    ("POST", f"{MFA}/recovery-codes", None),
    ("POST", f"{AUTH}/password-change", {"current_password": "x", "new_password": "Quartz-meadow-bicycle-57"}),
    ("DELETE", "/api/v1/users/me", {"password": "x"}),
]


class TestRecentAuthentication:
    @pytest.mark.parametrize(("method", "path", "body"), SENSITIVE, ids=[f"{m} {p}" for m, p, _ in SENSITIVE])
    async def test_an_old_session_must_confirm_first(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        clock: time_machine.Traveller,
        method: str,
        path: str,
        body: dict[str, object] | None,
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        clock.shift(timedelta(minutes=10, seconds=5))
        send: Callable[[], Awaitable[httpx.Response]] = lambda: client.request(  # noqa: E731
            method, path, json=body, headers=bearer(tokens)
        )
        assert_problem(await send(), 403, "reauthentication_required")
        confirm = await client.post(
            f"{AUTH}/reauthenticate", json={"password": account.password}, headers=bearer(tokens)
        )
        assert confirm.status_code == 204, confirm.text
        after = await send()
        assert after.status_code != 403, after.text
        assert after.status_code < 500

    async def test_a_wrong_password_does_not_reauthenticate(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        clock.shift(timedelta(minutes=11))
        wrong = await client.post(f"{AUTH}/reauthenticate", json={"password": "not it"}, headers=bearer(tokens))
        assert_problem(wrong, 400, "invalid_credentials")
        assert_problem(await client.post(f"{MFA}/totp/setup", headers=bearer(tokens)), 403, "reauthentication_required")

    async def test_an_app_code_reauthenticates_once(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        clock.shift(timedelta(minutes=11))
        code = code_at(enrolled.secret, datetime.now(UTC))
        ok = await client.post(f"{AUTH}/reauthenticate", json={"code": code}, headers=bearer(enrolled.tokens))
        assert ok.status_code == 204, ok.text
        replay = await client.post(f"{AUTH}/reauthenticate", json={"code": code}, headers=bearer(enrolled.tokens))
        assert_problem(replay, 400, "invalid_code")
        assert (await client.post(f"{MFA}/recovery-codes", headers=bearer(enrolled.tokens))).status_code == 200

    async def test_a_code_without_an_app_is_invalid(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        response = await client.post(f"{AUTH}/reauthenticate", json={"code": "123456"}, headers=bearer(tokens))
        assert_problem(response, 400, "invalid_code")

    @pytest.mark.parametrize("body", [{}, {"password": "a", "code": "123456"}, {"password": ""}])
    async def test_exactly_one_proof(self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, str]) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        response = await client.post(f"{AUTH}/reauthenticate", json=body, headers=bearer(tokens))
        assert_problem(response, 422, "validation_error")


# --- administrators ---------------------------------------------------------------------------------
class TestAdmin:
    async def test_an_admin_reset_removes_every_factor_and_every_session(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        response = await client.post(f"/api/v1/admin/users/{enrolled.account.id}/mfa/reset", headers=bearer(admin))
        assert response.status_code == 204, response.text
        assert_problem(await client.get(MFA, headers=bearer(enrolled.tokens)), 401, "session_revoked")
        fresh = await password_login(client, enrolled.account)
        assert fresh.status_code == 200, fresh.text
        assert (await client.get(MFA, headers=bearer(fresh.json()["access_token"]))).json() == {
            "totp": False,
            "passkeys": 0,
            "recovery_codes_left": 0,
        }
        assert EmailKind.SECOND_FACTOR_REMOVED in await mails(app, enrolled.account.email)

    async def test_a_reset_needs_the_admins_recent_authentication(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        admin_account = await create_user(app, role=Role.ADMIN)
        admin = await login(client, admin_account)
        clock.shift(timedelta(minutes=11))
        path = f"/api/v1/admin/users/{enrolled.account.id}/mfa/reset"
        assert_problem(await client.post(path, headers=bearer(admin)), 403, "reauthentication_required")
        assert (await client.get(MFA, headers=bearer(enrolled.tokens))).json()["totp"] is True
        confirm = await client.post(
            f"{AUTH}/reauthenticate", json={"password": admin_account.password}, headers=bearer(admin)
        )
        assert confirm.status_code == 204, confirm.text
        assert (await client.post(path, headers=bearer(admin))).status_code == 204

    async def test_reset_of_an_unknown_user_is_404_and_needs_the_admin_role(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        assert_problem(
            await client.post("/api/v1/admin/users/999999/mfa/reset", headers=bearer(admin)), 404, "user_not_found"
        )
        user = await login(client, await create_user(app))
        assert_problem(await client.post("/api/v1/admin/users/1/mfa/reset", headers=bearer(user)), 403, "forbidden")

    async def test_admins_can_be_required_to_have_a_second_factor(
        self, settings: Settings, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        from keel.main import create_app

        strict = create_app(settings.model_copy(update={"require_mfa_for_admins": True}))
        async with strict.router.lifespan_context(strict):
            transport = httpx.ASGITransport(app=strict)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                admin = await create_user(strict, role=Role.ADMIN)
                tokens = await login(http, admin)
                refused = await http.get("/api/v1/admin/users", headers=bearer(tokens))
                assert_problem(refused, 403, "mfa_enrollment_required")
                setup = (await http.post(f"{MFA}/totp/setup", headers=bearer(tokens))).json()
                confirm = await http.post(
                    f"{MFA}/totp/confirm",
                    json={"code": code_at(setup["secret"], datetime.now(UTC))},
                    headers=bearer(tokens),
                )
                assert confirm.status_code == 200, confirm.text
                assert (await http.get("/api/v1/admin/users", headers=bearer(tokens))).status_code == 200


# --- the policy: no way to tokens skips the second step -------------------------------------------------
def token_issuing_routes(app: FastAPI) -> set[str]:
    """Every operation whose success answer carries tokens, found from the app's own schema."""
    schema = app.openapi()
    components = schema["components"]["schemas"]

    def carries_tokens(body: dict[str, object]) -> bool:
        ref = body.get("$ref")
        if isinstance(ref, str):
            body = components[ref.rsplit("/", 1)[-1]]
        variants = body.get("anyOf") or body.get("oneOf")
        if isinstance(variants, list):
            return any(carries_tokens(variant) for variant in variants)
        properties = body.get("properties")
        return isinstance(properties, dict) and "access_token" in properties

    found = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {}).get("application/json", {})
                if status.startswith("2") and "schema" in content and carries_tokens(content["schema"]):
                    found.add(f"{method.upper()} {path}")
    return found


async def _login_refuses(client: httpx.AsyncClient, enrolled: Enrolled) -> None:
    response = await password_login(client, enrolled.account)
    assert_problem(response, 403, "mfa_required")
    assert "access_token" not in response.text


async def _refresh_refuses(client: httpx.AsyncClient, enrolled: Enrolled) -> None:
    # A refresh continues a finished sign-in; the half-finished one has no refresh token, and its
    # mfa_token is none.
    token = await mfa_token_for(client, enrolled.account)
    assert_problem(await client.post(f"{AUTH}/refresh", json={"refresh_token": token}), 401, "invalid_refresh_token")


async def _verify_refuses(client: httpx.AsyncClient, enrolled: Enrolled) -> None:
    token = await mfa_token_for(client, enrolled.account)
    right = code_at(enrolled.secret, datetime.now(UTC))
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    assert_problem(await client.post(f"{MFA}/verify", json={"mfa_token": token, "code": wrong}), 400, "invalid_code")


async def _passkey_refuses(client: httpx.AsyncClient, enrolled: Enrolled) -> None:
    token = await mfa_token_for(client, enrolled.account)
    bogus = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}
    for body in ({"credential": bogus}, {"mfa_token": token, "credential": bogus}):
        response = await client.post(f"{AUTH}/passkeys/authenticate", json=body)
        assert 400 <= response.status_code < 500, response.text
        assert "access_token" not in response.text


async def _email_code_refuses(client: httpx.AsyncClient, enrolled: Enrolled) -> None:
    from tests.routes.test_email_code import code_mails, code_of

    app = client._transport.app  # type: ignore[attr-defined]  # the app behind the test client
    requested = await client.post(f"{AUTH}/email-code/request", json={"email": enrolled.account.email})
    assert requested.status_code == 202, requested.text
    (mail,) = await code_mails(app, enrolled.account.email)
    response = await client.post(
        f"{AUTH}/email-code/verify", json={"email": enrolled.account.email, "code": code_of(mail)}
    )
    problem = assert_problem(response, 403, "mfa_required")
    assert "access_token" not in response.text
    assert problem["methods"] == ["totp", "recovery_code"]


# Each way to tokens, with the proof that an account with a second factor gets none without it.
# A new sign-in route fails this suite until it is listed here with its proof.
REFUSALS: dict[str, Callable[[httpx.AsyncClient, Enrolled], Awaitable[None]]] = {
    f"POST {AUTH}/login": _login_refuses,
    f"POST {AUTH}/refresh": _refresh_refuses,
    f"POST {MFA}/verify": _verify_refuses,
    f"POST {AUTH}/passkeys/authenticate": _passkey_refuses,
    f"POST {AUTH}/email-code/verify": _email_code_refuses,
}


class TestPolicy:
    async def test_every_token_issuing_route_is_known_to_the_policy_test(self, app: FastAPI) -> None:
        routes = token_issuing_routes(app)
        assert f"POST {AUTH}/login" in routes
        assert f"POST {MFA}/verify" in routes
        unknown = routes - set(REFUSALS)
        assert not unknown, f"token-issuing routes with no second-factor proof in REFUSALS: {sorted(unknown)}"

    @pytest.mark.parametrize("route", sorted(REFUSALS))
    async def test_no_route_hands_out_tokens_without_the_second_step(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller, route: str
    ) -> None:
        if route not in token_issuing_routes(app):
            pytest.skip(f"{route} is not served by this build")
        enrolled = await enroll(app, client, clock)
        await REFUSALS[route](client, enrolled)
        async with app.state.database.session() as session:
            # No session was opened for the account by the refused attempts: only the enrolling one.
            from keel.models import UserSession

            live = await session.exec(
                select(UserSession).where(
                    UserSession.user_id == enrolled.account.id, col(UserSession.revoked_at).is_(None)
                )
            )
            assert [row.id for row in live] == [
                jwt.decode(enrolled.tokens.access, options={"verify_signature": False})["sid"]
            ]
