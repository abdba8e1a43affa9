"""Passkeys through the API with a software authenticator: adding and managing them, signing in with
one alone, and finishing a password sign-in with one, on SQLite and on PostgreSQL with Redis."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, select, update

from keel.core.config import Settings
from keel.main import create_app
from keel.models import EmailKind, EmailOutbox, Passkey, TotpCredential, User, UserSession, utcnow
from keel.services.passkey import MAX_PASSKEYS
from tests.factories import DEFAULT_PASSWORD, Account, Tokens, assert_problem, create_user, login
from tests.routes.transports import WEB, assert_cookie_set, jarless_client
from tests.webauthn_authenticator import SoftAuthenticator, b64url

PASSKEYS = "/api/v1/auth/passkeys"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/users/me"


# --- helpers -----------------------------------------------------------------------------------
@pytest.fixture
def authenticator(settings: Settings) -> SoftAuthenticator:
    return SoftAuthenticator(origin=settings.public_url)


async def add_passkey(
    client: httpx.AsyncClient, tokens: Tokens, authenticator: SoftAuthenticator, name: str = "Laptop", **knobs: Any
) -> httpx.Response:
    options = await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json(), **knobs)
    return await client.post(
        f"{PASSKEYS}/register", json={"credential": credential, "name": name}, headers=tokens.headers
    )


async def with_passkey(
    app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, **user: Any
) -> tuple[Account, Tokens, dict[str, Any]]:
    account = await create_user(app, **user)
    tokens = await login(client, account)
    created = await add_passkey(client, tokens, authenticator)
    assert created.status_code == 201, created.text
    return account, tokens, created.json()


async def sign_in_options(client: httpx.AsyncClient, mfa_token: str | None = None) -> dict[str, Any]:
    body = {} if mfa_token is None else {"mfa_token": mfa_token}
    response = await client.post(f"{PASSKEYS}/authenticate/options", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    options: dict[str, Any] = response.json()
    return options


async def authenticate(
    client: httpx.AsyncClient, credential: dict[str, Any], mfa_token: str | None = None, **kwargs: Any
) -> httpx.Response:
    body: dict[str, Any] = {"credential": credential}
    if mfa_token is not None:
        body["mfa_token"] = mfa_token
    return await client.post(f"{PASSKEYS}/authenticate", json=body, **kwargs)


async def password_sign_in(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    """A password sign-in of an account with a second factor: 403 mfa_required."""
    response = await client.post(LOGIN, data={"username": account.email, "password": DEFAULT_PASSWORD})
    return assert_problem(response, 403, "mfa_required")


def amr_of(access_token: str) -> list[str]:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    amr: list[str] = claims["amr"]
    return amr


async def stored_passkeys(app: FastAPI, user_id: int) -> list[Passkey]:
    async with app.state.database.session() as session:
        return list(await session.exec(select(Passkey).where(Passkey.user_id == user_id).order_by(col(Passkey.id))))


async def mails(app: FastAPI, user_id: int) -> list[EmailKind]:
    async with app.state.database.session() as session:
        rows = await session.exec(
            select(EmailOutbox).where(EmailOutbox.user_id == user_id).order_by(col(EmailOutbox.id))
        )
        return [row.kind for row in rows]


async def session_rows(app: FastAPI, user_id: int) -> list[UserSession]:
    async with app.state.database.session() as session:
        return list(await session.exec(select(UserSession).where(UserSession.user_id == user_id)))


async def enable_totp(app: FastAPI, user_id: int) -> None:
    async with app.state.database.session() as session:
        session.add(TotpCredential(user_id=user_id, secret="sealed", confirmed_at=utcnow()))
        await session.commit()


# --- registering ---------------------------------------------------------------------------------
class TestRegister:
    async def test_a_passkey_is_added_and_listed(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, settings: Settings
    ) -> None:
        account = await create_user(app, username="ada", email="ada@example.com")
        tokens = await login(client, account)
        options = await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)
        assert options.status_code == 200
        assert options.headers["cache-control"] == "no-store"
        body = options.json()
        assert body["rp"] == {"id": "127.0.0.1", "name": "Keel"}
        assert body["user"]["name"] == "ada@example.com"
        assert body["user"]["displayName"] == "ada"
        assert body["authenticatorSelection"]["userVerification"] == "required"
        assert body["excludeCredentials"] == []

        credential = authenticator.create(body)
        created = await client.post(
            f"{PASSKEYS}/register", json={"credential": credential, "name": "Phone"}, headers=tokens.headers
        )

        assert created.status_code == 201, created.text
        passkey = created.json()
        assert set(passkey) == {"id", "name", "created_at", "last_used_at"}
        assert (passkey["name"], passkey["last_used_at"]) == ("Phone", None)
        listed = await client.get(PASSKEYS, headers=tokens.headers)
        assert listed.json() == [passkey]
        (row,) = await stored_passkeys(app, account.id)
        assert (row.credential_id, row.sign_count, row.transports) == (credential["id"], 0, "hybrid,internal")

    async def test_the_next_options_exclude_the_passkeys_already_added(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        _, tokens, _ = await with_passkey(app, client, authenticator)
        options = (await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)).json()
        assert options["excludeCredentials"] == [
            {"id": authenticator.credentials[0].b64_id, "type": "public-key", "transports": ["hybrid", "internal"]}
        ]

    async def test_adding_one_ends_the_other_sessions_and_mails_the_owner(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account = await create_user(app)
        elsewhere = await login(client, account)
        tokens = await login(client, account)

        assert (await add_passkey(client, tokens, authenticator)).status_code == 201

        assert_problem(await client.get(ME, headers=elsewhere.headers), 401, "session_revoked")
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200
        assert await mails(app, account.id) == [EmailKind.SECOND_FACTOR_ADDED]

    async def test_options_need_a_recent_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        tokens = await login(client, await create_user(app))
        clock.shift(timedelta(minutes=11))
        response = await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)
        assert_problem(response, 403, "reauthentication_required")

    async def test_anonymous_callers_are_refused(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(f"{PASSKEYS}/register/options"), 401, "not_authenticated")
        assert_problem(
            await client.post(f"{PASSKEYS}/register", json={"credential": {}, "name": "x"}), 401, "not_authenticated"
        )
        assert_problem(await client.get(PASSKEYS), 401, "not_authenticated")

    async def test_a_challenge_answers_only_the_session_that_asked_and_only_once(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account = await create_user(app)
        first, second = await login(client, account), await login(client, account)
        options = (await client.post(f"{PASSKEYS}/register/options", headers=first.headers)).json()
        credential = authenticator.create(options)
        body = {"credential": credential, "name": "Laptop"}

        other_session = await client.post(f"{PASSKEYS}/register", json=body, headers=second.headers)
        assert_problem(other_session, 400, "invalid_credential")
        # Presented by the wrong session, the challenge is spent all the same.
        assert_problem(
            await client.post(f"{PASSKEYS}/register", json=body, headers=first.headers), 400, "invalid_credential"
        )
        assert await stored_passkeys(app, account.id) == []

    async def test_another_accounts_session_cannot_use_the_challenge(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        mine = await login(client, await create_user(app))
        theirs = await login(client, await create_user(app))
        options = (await client.post(f"{PASSKEYS}/register/options", headers=mine.headers)).json()
        body = {"credential": authenticator.create(options), "name": "Laptop"}
        assert_problem(
            await client.post(f"{PASSKEYS}/register", json=body, headers=theirs.headers), 400, "invalid_credential"
        )

    @pytest.mark.parametrize(
        "knobs",
        [
            pytest.param({"origin": "https://evil.example"}, id="another origin"),
            pytest.param({"challenge": b64url(b"\x00" * 32)}, id="a challenge never issued"),
            pytest.param({"user_verified": False}, id="no user verification"),
            pytest.param({"rp_id": "evil.example"}, id="another relying party"),
        ],
    )
    async def test_an_answer_that_does_not_verify_is_400(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, knobs: dict[str, Any]
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        assert_problem(await add_passkey(client, tokens, authenticator, **knobs), 400, "invalid_credential")
        assert await stored_passkeys(app, account.id) == []
        assert await mails(app, account.id) == []

    @pytest.mark.parametrize(
        "credential",
        [{}, {"id": 1}, {"response": "x"}, {"id": "a", "rawId": "a", "type": "public-key", "response": {}}],
    )
    async def test_a_malformed_credential_is_400_not_500(
        self, app: FastAPI, client: httpx.AsyncClient, credential: dict[str, Any]
    ) -> None:
        tokens = await login(client, await create_user(app))
        await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)
        response = await client.post(
            f"{PASSKEYS}/register", json={"credential": credential, "name": "x"}, headers=tokens.headers
        )
        assert_problem(response, 400, "invalid_credential")

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "Laptop"},
            {"credential": {}, "name": ""},
            {"credential": {}, "name": "  "},
            {"credential": [], "name": "x"},
            {"credential": {}, "name": "x" * 65},
            {"credential": {}, "name": "x", "user_id": 1},
        ],
    )
    async def test_a_body_that_breaks_the_schema_is_422(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        tokens = await login(client, await create_user(app))
        assert_problem(
            await client.post(f"{PASSKEYS}/register", json=body, headers=tokens.headers), 422, "validation_error"
        )

    async def test_a_credential_already_registered_is_refused_for_any_account(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await with_passkey(app, client, authenticator)
        other = await create_user(app)
        tokens = await login(client, other)
        response = await add_passkey(client, tokens, authenticator, reuse=authenticator.credentials[0])
        assert_problem(response, 400, "invalid_credential")
        assert await stored_passkeys(app, other.id) == []
        assert (await client.get(ME, headers=tokens.headers)).status_code == 200  # nothing was revoked

    async def test_an_account_holds_a_bounded_number_of_passkeys(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        async with app.state.database.session() as session:
            for n in range(MAX_PASSKEYS):
                session.add(Passkey(user_id=account.id, credential_id=f"c{n}", public_key="k", name=f"key {n}"))
            await session.commit()
        response = await add_passkey(client, tokens, authenticator)
        problem = assert_problem(response, 422, "validation_error")
        assert problem["errors"] == [
            {
                "loc": ["body", "credential"],
                "msg": f"An account can have at most {MAX_PASSKEYS} passkeys; remove one first.",
                "type": "too_many_passkeys",
            }
        ]


# --- managing ------------------------------------------------------------------------------------
class TestManage:
    async def test_rename(self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator) -> None:
        _, tokens, passkey = await with_passkey(app, client, authenticator)
        response = await client.patch(
            f"{PASSKEYS}/{passkey['id']}", json={"name": "Work laptop"}, headers=tokens.headers
        )
        assert response.status_code == 200
        assert response.json() == {**passkey, "name": "Work laptop"}

    async def test_remove_ends_the_other_sessions_and_mails_the_owner(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, tokens, passkey = await with_passkey(app, client, authenticator)
        options = await sign_in_options(client)
        elsewhere = (await authenticate(client, authenticator.get(options))).json()

        response = await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=tokens.headers)

        assert response.status_code == 204
        assert (await client.get(PASSKEYS, headers=tokens.headers)).json() == []
        assert_problem(
            await client.get(ME, headers={"Authorization": f"Bearer {elsewhere['access_token']}"}),
            401,
            "session_revoked",
        )
        assert await mails(app, account.id) == [EmailKind.SECOND_FACTOR_ADDED, EmailKind.SECOND_FACTOR_REMOVED]
        # Gone for signing in too.
        assert_problem(
            await authenticate(client, authenticator.get(await sign_in_options(client))), 400, "invalid_credential"
        )

    async def test_remove_needs_a_recent_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, clock: time_machine.Traveller
    ) -> None:
        _, tokens, passkey = await with_passkey(app, client, authenticator)
        clock.shift(timedelta(minutes=11))
        assert_problem(
            await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=tokens.headers), 403, "reauthentication_required"
        )
        assert len((await client.get(PASSKEYS, headers=tokens.headers)).json()) == 1

    async def test_someone_elses_passkey_is_not_found(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        _, _, passkey = await with_passkey(app, client, authenticator)
        intruder = await login(client, await create_user(app))
        url = f"{PASSKEYS}/{passkey['id']}"
        assert_problem(
            await client.patch(url, json={"name": "mine"}, headers=intruder.headers), 404, "passkey_not_found"
        )
        assert_problem(await client.delete(url, headers=intruder.headers), 404, "passkey_not_found")
        assert (await client.get(PASSKEYS, headers=intruder.headers)).json() == []
        assert_problem(await client.delete(f"{PASSKEYS}/999999", headers=intruder.headers), 404, "passkey_not_found")


# --- signing in with a passkey alone ---------------------------------------------------------------
class TestPasskeySignIn:
    async def test_no_email_is_typed_and_the_session_says_how_it_signed_in(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        options = await sign_in_options(client)
        assert options["allowCredentials"] == []
        assert options["userVerification"] == "required"

        response = await authenticate(client, authenticator.get(options))

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        tokens = response.json()
        assert amr_of(tokens["access_token"]) == ["hwk", "user", "mfa"]
        me = await client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["id"] == account.id
        (listed,) = (await client.get(PASSKEYS, headers={"Authorization": f"Bearer {tokens['access_token']}"})).json()
        assert listed["last_used_at"] is not None
        (row,) = await stored_passkeys(app, account.id)
        assert row.sign_count == 1
        amrs = {row.amr for row in await session_rows(app, account.id)}
        assert "hwk user mfa" in amrs

    async def test_it_is_complete_on_its_own_for_an_account_with_another_second_factor(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        await enable_totp(app, account.id)
        response = await authenticate(client, authenticator.get(await sign_in_options(client)))
        assert response.status_code == 200, response.text

    async def test_the_session_counts_as_recently_authenticated(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await with_passkey(app, client, authenticator)
        tokens = (await authenticate(client, authenticator.get(await sign_in_options(client)))).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert (await client.post(f"{PASSKEYS}/register/options", headers=headers)).status_code == 200

    async def test_the_web_app_gets_the_refresh_token_as_its_cookie(
        self, app: FastAPI, settings: Settings, authenticator: SoftAuthenticator
    ) -> None:
        async with jarless_client(app) as client:
            await with_passkey(app, client, authenticator)
            credential = authenticator.get(await sign_in_options(client))
            refused = await authenticate(client, credential, headers={**WEB, "Origin": "https://evil.example"})
            assert_problem(refused, 403, "csrf_rejected")
            credential = authenticator.get(await sign_in_options(client))
            response = await authenticate(client, credential, headers=WEB)
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"] is None
        assert_cookie_set(response, max_age=settings.session_idle_ttl_seconds)

    async def test_a_response_is_good_once(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await with_passkey(app, client, authenticator)
        credential = authenticator.get(await sign_in_options(client))
        assert (await authenticate(client, credential)).status_code == 200
        assert_problem(await authenticate(client, credential), 400, "invalid_credential")

    async def test_a_cloned_authenticator_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        for _ in range(3):
            assert (await authenticate(client, authenticator.get(await sign_in_options(client)))).status_code == 200
        clone = authenticator.get(await sign_in_options(client), sign_count=2)
        assert_problem(await authenticate(client, clone), 400, "invalid_credential")
        (row,) = await stored_passkeys(app, account.id)
        assert row.sign_count == 3

    async def test_of_two_sign_ins_with_one_counter_value_one_wins(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await with_passkey(app, client, authenticator)
        first = authenticator.get(await sign_in_options(client), sign_count=1)
        second = authenticator.get(await sign_in_options(client), sign_count=1)
        outcomes = await asyncio.gather(authenticate(client, first), authenticate(client, second))
        assert sorted(response.status_code for response in outcomes) == [200, 400]

    @pytest.mark.parametrize(
        "knobs",
        [
            pytest.param({"origin": "https://evil.example"}, id="another origin"),
            pytest.param({"user_verified": False}, id="no user verification"),
            pytest.param({"wrong_key": True}, id="signed by another key"),
            pytest.param({"user_handle": None}, id="no user handle"),
            pytest.param({"user_handle": (999).to_bytes(8, "big")}, id="another user's handle"),
            pytest.param({"challenge": b64url(b"\x02" * 32)}, id="a challenge never issued"),
        ],
    )
    async def test_an_answer_that_does_not_verify_is_400(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, knobs: dict[str, Any]
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        response = await authenticate(client, authenticator.get(await sign_in_options(client), **knobs))
        assert_problem(response, 400, "invalid_credential")
        assert len(await session_rows(app, account.id)) == 1  # only the one that added the passkey

    async def test_an_unknown_passkey_is_400(self, client: httpx.AsyncClient, settings: Settings) -> None:
        stranger = SoftAuthenticator(origin=settings.public_url)
        options = await sign_in_options(client)
        stranger.create(
            {
                "rp": {"id": options["rpId"]},
                "user": {"id": "AA"},
                "challenge": "AA",
                "authenticatorSelection": {"residentKey": "required"},
            }
        )
        assert_problem(await authenticate(client, stranger.get(options)), 400, "invalid_credential")

    async def test_a_deactivated_account_cannot_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        async with app.state.database.session() as session:
            await session.exec(update(User).where(col(User.id) == account.id).values(is_active=False))
            await session.commit()
        response = await authenticate(client, authenticator.get(await sign_in_options(client)))
        assert_problem(response, 403, "inactive_user")

    @pytest.mark.parametrize("credential", [{}, {"response": {"clientDataJSON": "!!"}}, {"id": None}])
    async def test_a_malformed_credential_is_400_not_500(
        self, client: httpx.AsyncClient, credential: dict[str, Any]
    ) -> None:
        assert_problem(await authenticate(client, credential), 400, "invalid_credential")

    async def test_options_take_no_body_or_an_empty_one(self, client: httpx.AsyncClient) -> None:
        assert (await client.post(f"{PASSKEYS}/authenticate/options")).status_code == 200
        assert (await client.post(f"{PASSKEYS}/authenticate/options", json={})).status_code == 200
        assert_problem(
            await client.post(f"{PASSKEYS}/authenticate/options", json={"user_id": 1}), 422, "validation_error"
        )


# --- a passkey as the second step ---------------------------------------------------------------
class TestSecondFactor:
    async def test_a_password_sign_in_finishes_with_a_passkey(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        problem = await password_sign_in(client, account)
        assert "passkey" in problem["methods"]
        mfa_token = problem["mfa_token"]
        assert isinstance(mfa_token, str)

        options = await sign_in_options(client, mfa_token)
        assert options["allowCredentials"] == [
            {"id": authenticator.credentials[0].b64_id, "type": "public-key", "transports": ["hybrid", "internal"]}
        ]
        response = await authenticate(client, authenticator.get(options, user_handle=None), mfa_token)

        assert response.status_code == 200, response.text
        assert amr_of(response.json()["access_token"]) == ["pwd", "hwk", "user", "mfa"]
        # The mfa_token is spent.
        assert_problem(
            await client.post(f"{PASSKEYS}/authenticate/options", json={"mfa_token": mfa_token}),
            401,
            "invalid_mfa_token",
        )

    async def test_many_password_and_passkey_sign_ins_never_lock_the_account(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        authenticator: SoftAuthenticator,
        clock: time_machine.Traveller,
    ) -> None:
        """The password check is counted until the second step finishes; finishing starts the count over."""
        account, _, _ = await with_passkey(app, client, authenticator)
        for _ in range(12):  # more than the ten checks an account may run without finishing
            clock.shift(timedelta(seconds=61))  # past the per-minute sign-in windows: only the lock is left
            mfa_token = (await password_sign_in(client, account))["mfa_token"]
            options = await sign_in_options(client, mfa_token)
            response = await authenticate(client, authenticator.get(options, user_handle=None), mfa_token)
            assert response.status_code == 200, response.text

    async def test_removing_the_last_passkey_drops_the_recovery_codes(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        _, tokens, passkey = await with_passkey(app, client, authenticator)
        headers = {"Authorization": f"Bearer {tokens.access}"}
        codes = await client.post("/api/v1/auth/mfa/recovery-codes", headers=headers)
        assert codes.status_code == 200, codes.text
        assert (await client.delete(f"{PASSKEYS}/{passkey['id']}", headers=headers)).status_code == 204
        status = (await client.get("/api/v1/auth/mfa", headers=headers)).json()
        assert status == {"totp": False, "passkeys": 0, "recovery_codes_left": 0}

    async def test_another_accounts_passkey_does_not_finish_it_and_counts_as_a_failure(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator, settings: Settings
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        theirs = SoftAuthenticator(origin=settings.public_url)
        await with_passkey(app, client, theirs)
        mfa_token = str((await password_sign_in(client, account))["mfa_token"])

        for _ in range(5):
            options = await sign_in_options(client, mfa_token)
            # Their passkey answers a challenge bound to this sign-in, as if it were allowed.
            allowed = {**options, "allowCredentials": [{"id": theirs.credentials[0].b64_id}]}
            wrong = theirs.get(allowed, user_handle=None)
            assert_problem(await authenticate(client, wrong, mfa_token), 400, "invalid_credential")

        # The fifth failure ended the pending sign-in.
        assert_problem(
            await client.post(f"{PASSKEYS}/authenticate/options", json={"mfa_token": mfa_token}),
            401,
            "invalid_mfa_token",
        )

    async def test_a_challenge_for_a_passkey_sign_in_does_not_finish_a_pending_one(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        mfa_token = str((await password_sign_in(client, account))["mfa_token"])
        credential = authenticator.get(await sign_in_options(client))
        assert_problem(await authenticate(client, credential, mfa_token), 400, "invalid_credential")

    async def test_a_pending_sign_ins_challenge_is_not_a_passkey_sign_in(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        mfa_token = str((await password_sign_in(client, account))["mfa_token"])
        credential = authenticator.get(await sign_in_options(client, mfa_token))
        assert_problem(await authenticate(client, credential), 400, "invalid_credential")

    @pytest.mark.parametrize("mfa_token", ["not-a-token", "x" * 128])
    async def test_an_unknown_mfa_token_is_401(self, client: httpx.AsyncClient, mfa_token: str) -> None:
        response = await client.post(f"{PASSKEYS}/authenticate/options", json={"mfa_token": mfa_token})
        assert_problem(response, 401, "invalid_mfa_token")
        assert_problem(await authenticate(client, {}, mfa_token), 401, "invalid_mfa_token")

    async def test_an_account_without_passkeys_gets_no_options(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await enable_totp(app, account.id)
        mfa_token = str((await password_sign_in(client, account))["mfa_token"])
        response = await client.post(f"{PASSKEYS}/authenticate/options", json={"mfa_token": mfa_token})
        assert_problem(response, 400, "invalid_credential")


async def test_passkey_sign_ins_count_against_the_addresss_sign_in_limit(
    settings: Settings, authenticator: SoftAuthenticator
) -> None:
    limited = create_app(settings.model_copy(update={"rate_limit_login_ip": "2/minute"}))
    async with limited.router.lifespan_context(limited), jarless_client(limited) as client:
        for _ in range(2):
            assert_problem(await authenticate(client, {}), 400, "invalid_credential")
        response = await authenticate(client, {})
        assert response.status_code == 429
        assert "Retry-After" in response.headers


# --- proving it is you again with a passkey -------------------------------------------------------
class TestReauthentication:
    async def stale(self, app: FastAPI, account: Account) -> None:
        """The account has no password, and its sessions signed in longer ago than a change allows."""
        async with app.state.database.session() as session:
            user = await session.get(User, account.id)
            assert user is not None
            user.hashed_password = "!unusable$x"
            session.add(user)
            await session.exec(
                update(UserSession)
                .where(col(UserSession.user_id) == account.id)
                .values(authenticated_at=utcnow() - timedelta(hours=1))
            )
            await session.commit()

    async def test_a_passkey_only_account_reauthenticates_with_its_passkey(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, tokens, _ = await with_passkey(app, client, authenticator)
        await self.stale(app, account)
        assert_problem(
            await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers), 403, "reauthentication_required"
        )
        options = await client.post(f"{PASSKEYS}/reauthenticate/options", headers=tokens.headers)
        assert options.status_code == 200, options.text
        assert options.headers["cache-control"] == "no-store"
        assert [entry["id"] for entry in options.json()["allowCredentials"]] == [
            authenticator.pick(options.json()).b64_id
        ]

        answered = await client.post(
            f"{PASSKEYS}/reauthenticate", json={"credential": authenticator.get(options.json())}, headers=tokens.headers
        )

        assert answered.status_code == 204, answered.text
        assert (await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers)).status_code == 200
        # The challenge was for one answer.
        replay = await client.post(
            f"{PASSKEYS}/reauthenticate", json={"credential": authenticator.get(options.json())}, headers=tokens.headers
        )
        assert_problem(replay, 400, "invalid_credential")

    async def test_a_challenge_of_another_session_or_a_sign_in_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, tokens, _ = await with_passkey(app, client, authenticator)
        # Another session of the same account, signed in with the passkey.
        other = (await authenticate(client, authenticator.get(await sign_in_options(client)))).json()["access_token"]
        await self.stale(app, account)
        asked = await client.post(f"{PASSKEYS}/reauthenticate/options", headers={"Authorization": f"Bearer {other}"})
        assert asked.status_code == 200, asked.text
        theirs = asked.json()
        refused = await client.post(
            f"{PASSKEYS}/reauthenticate", json={"credential": authenticator.get(theirs)}, headers=tokens.headers
        )
        assert_problem(refused, 400, "invalid_credential")
        sign_in = await sign_in_options(client)
        refused = await client.post(
            f"{PASSKEYS}/reauthenticate", json={"credential": authenticator.get(sign_in)}, headers=tokens.headers
        )
        assert_problem(refused, 400, "invalid_credential")
        assert_problem(
            await client.post(f"{PASSKEYS}/register/options", headers=tokens.headers), 403, "reauthentication_required"
        )

    async def test_another_accounts_passkey_is_refused_and_no_passkey_is_a_400(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        _, tokens, _ = await with_passkey(app, client, authenticator)
        bare = await login(client, await create_user(app))
        assert_problem(
            await client.post(f"{PASSKEYS}/reauthenticate/options", headers=bare.headers), 404, "passkey_not_found"
        )
        asked = await client.post(f"{PASSKEYS}/reauthenticate/options", headers=tokens.headers)
        assert asked.status_code == 200, asked.text
        mine = asked.json()
        stranger = SoftAuthenticator(origin=app.state.settings.public_url)
        stranger_tokens = await login(client, await create_user(app))
        assert (await add_passkey(client, stranger_tokens, stranger)).status_code == 201
        mine["allowCredentials"] = []  # let the stranger's authenticator answer with its own passkey
        refused = await client.post(
            f"{PASSKEYS}/reauthenticate", json={"credential": stranger.get(mine)}, headers=tokens.headers
        )
        assert_problem(refused, 400, "invalid_credential")
