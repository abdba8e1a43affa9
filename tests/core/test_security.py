"""Access-token checks end to end (every tampering is a 401 with a Bearer challenge), and the primitives."""

from __future__ import annotations

import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import time_machine
from fastapi import FastAPI
from jwt.warnings import InsecureKeyLengthWarning
from pydantic import SecretStr
from sqlmodel import col, delete

from keel.core.config import Settings
from keel.core.db import Database
from keel.core.security import (
    REQUIRED_CLAIMS,
    TokenError,
    _jwt_key,
    create_access_token,
    decode_access_token,
    password_hasher,
)
from keel.models import User
from tests.factories import Account, Tokens, assert_problem, login, signed_in

ME = "/api/v1/users/me"
UNIT_SECRET = "unit-test-secret-key-that-is-long-enough-42"


def session_id_of(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


def valid_claims(settings: Settings, account: Account, tokens: Tokens) -> dict[str, Any]:
    """Claims exactly like the service's own, for the account's real session."""
    now = int(time.time())
    return {
        "sub": str(account.id),
        "sid": session_id_of(tokens.access),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "type": "access",
    }


def mint(settings: Settings, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _jwt_key(settings.secret), algorithm="HS256")


async def get_me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {token}"})


def assert_unauthorized(response: httpx.Response, code: str) -> None:
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


class TestAccessTokenIsChecked:
    async def test_a_hand_made_token_with_every_claim_is_accepted(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        # The control for every rejection below: the same recipe, untampered, works.
        account, tokens = await signed_in(app, client)
        response = await get_me(client, mint(settings, valid_claims(settings, account, tokens)))
        assert response.status_code == 200, response.text
        assert response.json()["id"] == account.id

    async def test_no_authorization_header(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        response = await client.get(ME)
        assert_unauthorized(response, "not_authenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        ("authorization", "code"),
        [
            pytest.param("Bearer garbage", "invalid_token", id="garbage"),
            pytest.param("Bearer a.b.c", "invalid_token", id="three-garbage-parts"),
            pytest.param("Bearer eyJhbGciOiJIUzI1NiJ9..", "invalid_token", id="empty-payload"),
            pytest.param("Bearer", "not_authenticated", id="scheme-only"),
            pytest.param("Basic dXNlcjpwYXNzd29yZA==", "not_authenticated", id="basic-scheme"),
        ],
    )
    async def test_malformed_authorization(
        self, app: FastAPI, client: httpx.AsyncClient, authorization: str, code: str
    ) -> None:
        assert_unauthorized(await client.get(ME, headers={"Authorization": authorization}), code)

    async def test_alg_none(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
        account, tokens = await signed_in(app, client)
        token = jwt.encode(valid_claims(settings, account, tokens), "", algorithm="none")
        assert_unauthorized(await get_me(client, token), "invalid_token")

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param(_jwt_key(b"another-secret-key-that-is-long-enough-xyz"), id="another-key"),
            pytest.param(None, id="raw-secret-not-the-derived-key"),
        ],
    )
    async def test_signed_with_another_key(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings, key: bytes | None
    ) -> None:
        account, tokens = await signed_in(app, client)
        token = jwt.encode(valid_claims(settings, account, tokens), key or settings.secret, algorithm="HS256")
        assert_unauthorized(await get_me(client, token), "invalid_token")

    async def test_another_algorithm_with_the_right_key(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account, tokens = await signed_in(app, client)
        with warnings.catch_warnings():
            # PyJWT warns that a 32-byte key is short for HS512; the point here is only the algorithm.
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode(valid_claims(settings, account, tokens), _jwt_key(settings.secret), algorithm="HS512")
        assert_unauthorized(await get_me(client, token), "invalid_token")

    async def test_tampered_payload(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
        account, tokens = await signed_in(app, client)
        other_claims = {**valid_claims(settings, account, tokens), "sub": str(account.id + 1)}
        header, _, signature = tokens.access.split(".")
        _, payload, _ = mint(settings, other_claims).split(".")
        assert_unauthorized(await get_me(client, f"{header}.{payload}.{signature}"), "invalid_token")

    async def test_expired(self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller) -> None:
        _, tokens = await signed_in(app, client)
        assert (await get_me(client, tokens.access)).status_code == 200
        clock.shift(timedelta(minutes=15, seconds=30))
        assert_unauthorized(await get_me(client, tokens.access), "token_expired")

    @pytest.mark.parametrize(
        ("claim", "value"),
        [
            pytest.param("type", "refresh", id="type-refresh"),
            pytest.param("type", "ACCESS", id="type-case"),
            pytest.param("aud", "someone-else", id="audience"),
            pytest.param("aud", ["someone-else"], id="audience-list"),
            pytest.param("iss", "someone-else", id="issuer"),
            pytest.param("sub", "not-a-number", id="subject-not-numeric"),
            pytest.param("sub", 1, id="subject-not-a-string"),
            pytest.param("sid", "x" * 33, id="session-id-too-long"),
            pytest.param("exp", "tomorrow", id="exp-not-a-number"),
            pytest.param("iat", "yesterday", id="iat-not-a-number"),
        ],
    )
    async def test_wrong_claim(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings, claim: str, value: object
    ) -> None:
        account, tokens = await signed_in(app, client)
        claims = {**valid_claims(settings, account, tokens), claim: value}
        assert_unauthorized(await get_me(client, mint(settings, claims)), "invalid_token")

    @pytest.mark.parametrize("claim", ["sub", "sid", "jti", "iat", "exp", "iss", "aud", "type"])
    async def test_missing_claim(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings, claim: str) -> None:
        account, tokens = await signed_in(app, client)
        claims = valid_claims(settings, account, tokens)
        del claims[claim]
        assert_unauthorized(await get_me(client, mint(settings, claims)), "invalid_token")

    def test_the_missing_claim_table_covers_every_required_claim(self) -> None:
        assert set(REQUIRED_CLAIMS) == {"sub", "sid", "jti", "iat", "exp", "iss", "aud", "type"}

    async def test_refresh_token_as_bearer(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        assert_unauthorized(await get_me(client, tokens.refresh), "invalid_token")

    async def test_session_of_another_user(self, app: FastAPI, client: httpx.AsyncClient, settings: Settings) -> None:
        account, tokens = await signed_in(app, client)
        _, victim = await signed_in(app, client)
        claims = {**valid_claims(settings, account, tokens), "sid": session_id_of(victim.access)}
        assert_unauthorized(await get_me(client, mint(settings, claims)), "session_revoked")
        assert (await get_me(client, victim.access)).status_code == 200

    async def test_session_id_that_never_existed(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account, tokens = await signed_in(app, client)
        claims = {**valid_claims(settings, account, tokens), "sid": "no-such-session"}
        assert_unauthorized(await get_me(client, mint(settings, claims)), "session_revoked")

    async def test_user_deleted_through_the_api(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)
        assert (await get_me(client, tokens.access)).status_code == 200  # the session is now cached, where cached
        response = await client.request("DELETE", ME, headers=tokens.headers, json={"password": account.password})
        assert response.status_code == 204, response.text
        assert_unauthorized(await get_me(client, tokens.access), "session_revoked")

    async def test_user_row_gone_from_the_database(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        account, tokens = await signed_in(app, client)
        database: Database = app.state.database
        async with database.session() as session:
            await session.exec(delete(User).where(col(User.id) == account.id))
            await session.commit()
        assert_unauthorized(await get_me(client, tokens.access), "session_revoked")
        # Nor can a freshly signed token for that user and session bring it back.
        fresh = mint(settings, valid_claims(settings, account, tokens))
        assert_unauthorized(await get_me(client, fresh), "session_revoked")

    async def test_a_new_login_after_logout_does_not_revive_the_old_token(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account, tokens = await signed_in(app, client)
        assert (await client.post("/api/v1/auth/logout", headers=tokens.headers)).status_code == 204
        await login(client, account)
        assert_unauthorized(await get_me(client, tokens.access), "session_revoked")


# --- unit tests ------------------------------------------------------------------------------
@pytest.fixture
def unit_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with every default, whatever the environment of the machine running the tests."""
    for name in ("ARGON2_MEMORY_COST", "ARGON2_TIME_COST", "ARGON2_PARALLELISM", "ACCESS_TOKEN_TTL_SECONDS"):
        monkeypatch.delenv(f"KEEL_{name}", raising=False)
    return Settings(_env_file=None, environment="test", data_dir=tmp_path, secret_key=SecretStr(UNIT_SECRET))


class TestPasswordHasher:
    async def test_default_parameters_are_owasps_argon2id(self, unit_settings: Settings) -> None:
        hasher = password_hasher(unit_settings)
        hashed = await hasher.hash("correct horse battery staple")
        assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert await hasher.verify("correct horse battery staple", hashed) == (True, None)
        assert (await hasher.verify("Correct horse battery staple", hashed))[0] is False

    async def test_hashes_are_salted(self, unit_settings: Settings) -> None:
        hasher = password_hasher(unit_settings)
        assert await hasher.hash("same password") != await hasher.hash("same password")


class TestAccessTokens:
    def test_decode_round_trips_create(self, unit_settings: Settings) -> None:
        now = datetime.now(UTC)
        token = create_access_token(unit_settings, user_id=42, session_id="abc_DEF-123", amr=["pwd"], now=now)
        claims = decode_access_token(unit_settings, token)
        assert claims.user_id == 42
        assert claims.session_id == "abc_DEF-123"
        assert claims.issued_at == int(now.timestamp())
        assert claims.expires_at == claims.issued_at + 900
        assert len(claims.jti) == 32

    def test_each_token_has_its_own_id(self, unit_settings: Settings) -> None:
        now = datetime.now(UTC)
        first = create_access_token(unit_settings, user_id=1, session_id="s", amr=["pwd"], now=now)
        second = create_access_token(unit_settings, user_id=1, session_id="s", amr=["pwd"], now=now)
        assert decode_access_token(unit_settings, first).jti != decode_access_token(unit_settings, second).jti

    def test_expired_token_is_reported_as_expired(self, unit_settings: Settings) -> None:
        token = create_access_token(
            unit_settings, user_id=1, session_id="s", amr=["pwd"], now=datetime.now(UTC) - timedelta(minutes=16)
        )
        with pytest.raises(TokenError) as caught:
            decode_access_token(unit_settings, token)
        assert caught.value.expired is True

    def test_a_token_verified_before_still_expires_on_time(self, unit_settings: Settings) -> None:
        issued = datetime.now(UTC)
        token = create_access_token(unit_settings, user_id=1, session_id="s", amr=["pwd"], now=issued)
        assert decode_access_token(unit_settings, token).user_id == 1  # verified, and remembered

        with time_machine.travel(issued + timedelta(seconds=899), tick=False):
            assert decode_access_token(unit_settings, token).user_id == 1
        with time_machine.travel(issued + timedelta(seconds=900), tick=False), pytest.raises(TokenError) as caught:
            decode_access_token(unit_settings, token)
        assert caught.value.expired is True

    def test_a_token_verified_under_one_key_is_not_accepted_under_another(self, unit_settings: Settings) -> None:
        token = create_access_token(unit_settings, user_id=1, session_id="s", amr=["pwd"], now=datetime.now(UTC))
        assert decode_access_token(unit_settings, token).user_id == 1
        for changed in ({"secret_key": SecretStr("y" * 48)}, {"jwt_audience": "another-api"}, {"jwt_issuer": "other"}):
            with pytest.raises(TokenError):
                decode_access_token(unit_settings.model_copy(update=changed), token)

    def test_token_from_another_secret_is_rejected_but_not_as_expired(self, unit_settings: Settings) -> None:
        other = unit_settings.model_copy(update={"secret_key": SecretStr("x" * 48)})
        token = create_access_token(other, user_id=1, session_id="s", amr=["pwd"], now=datetime.now(UTC))
        with pytest.raises(TokenError) as caught:
            decode_access_token(unit_settings, token)
        assert caught.value.expired is False
