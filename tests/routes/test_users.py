"""The Users API: one's own account (read, edit, delete) and anyone's public profile."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, select

from keel.core.db import Database
from keel.models import RefreshToken, Role, UserSession
from tests.factories import Tokens, assert_problem, create_user, login, signed_in

ME = "/api/v1/users/me"
USER_READ_FIELDS = {"id", "email", "username", "full_name", "role", "is_active", "is_verified", "created_at"}
USER_PUBLIC_FIELDS = {"id", "username", "full_name", "created_at"}


def user_url(user_id: int | str) -> str:
    return f"/api/v1/users/{user_id}"


async def delete_me(client: httpx.AsyncClient, tokens: Tokens, body: dict[str, Any]) -> httpx.Response:
    return await client.request("DELETE", ME, json=body, headers=tokens.headers)


async def read_me(client: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    response = await client.get(ME, headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def session_ids(app: FastAPI, user_id: int) -> list[str]:
    database: Database = app.state.database
    async with database.session() as session:
        return list(await session.exec(select(UserSession.id).where(UserSession.user_id == user_id)))


async def refresh_token_count(app: FastAPI, ids: list[str]) -> int:
    database: Database = app.state.database
    async with database.session() as session:
        rows = await session.exec(select(RefreshToken.token_hash).where(col(RefreshToken.session_id).in_(ids)))
        return len(list(rows))


def assert_utc_timestamp(value: object) -> None:
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value


def error_locs(problem: dict[str, object]) -> list[object]:
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [error["loc"] for error in errors]


class TestReadMe:
    async def test_returns_exactly_the_user_read_fields(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client, username="ada_l", is_verified=False)

        body = await read_me(client, tokens)

        assert set(body) == USER_READ_FIELDS
        assert body["id"] == account.id
        assert body["email"] == account.email
        assert body["username"] == "ada_l"
        assert body["full_name"] is None
        assert body["role"] == "user"
        assert body["is_active"] is True
        assert body["is_verified"] is False
        assert_utc_timestamp(body["created_at"])
        assert "hashed_password" not in body

    async def test_reports_the_admin_role(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client, role=Role.ADMIN)

        assert (await read_me(client, tokens))["role"] == "admin"

    @pytest.mark.parametrize(
        ("headers", "code"),
        [
            ({}, "not_authenticated"),
            ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
        ],
        ids=["no-token", "garbage-token", "basic-auth"],
    )
    async def test_without_a_valid_token_is_401(
        self, client: httpx.AsyncClient, headers: dict[str, str], code: str
    ) -> None:
        response = await client.get(ME, headers=headers)

        assert_problem(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")


class TestUpdateMe:
    async def test_changes_username_and_full_name(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(
            ME, json={"username": "new_name", "full_name": "Ada Lovelace"}, headers=tokens.headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == USER_READ_FIELDS
        assert body["username"] == "new_name"
        assert body["full_name"] == "Ada Lovelace"
        assert body["email"] == account.email
        public = (await client.get(user_url(account.id))).json()
        assert public["username"] == "new_name"
        assert public["full_name"] == "Ada Lovelace"

    async def test_username_is_lower_cased(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": "Grace_Hopper"}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["username"] == "grace_hopper"
        assert (await read_me(client, tokens))["username"] == "grace_hopper"

    # The schema's pattern is the whole rule (found by the contract fuzzer): a username is taken as
    # sent, so one with spaces around it, or a trailing newline, is invalid rather than trimmed.
    @pytest.mark.parametrize("username", ["  Grace_Hopper ", "grace_hopper\n", "\tgrace"])
    async def test_username_is_not_trimmed(self, app: FastAPI, client: httpx.AsyncClient, username: str) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": username}, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert ["body", "username"] in error_locs(body)
        assert (await read_me(client, tokens))["username"] == account.username

    async def test_changing_only_full_name_keeps_username(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"full_name": "Only Name"}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["username"] == account.username
        assert response.json()["full_name"] == "Only Name"

    async def test_keeping_ones_own_username_is_not_a_conflict(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": account.username.upper()}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["username"] == account.username

    @pytest.mark.parametrize("requested", ["taken_name", "TAKEN_NAME", "Taken_Name"])
    async def test_taken_username_is_409(self, app: FastAPI, client: httpx.AsyncClient, requested: str) -> None:
        await create_user(app, username="taken_name")
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": requested}, headers=tokens.headers)

        assert_problem(response, 409, "username_taken")
        assert (await read_me(client, tokens))["username"] == account.username

    @pytest.mark.parametrize(
        "username",
        ["ab", "a" * 31, "has-dash", "has space", "dotted.name", "émile", "", 12345, ["list_name"]],
        ids=["too-short", "too-long", "dash", "space", "dot", "non-ascii", "empty", "integer", "list"],
    )
    async def test_invalid_username_is_422(self, app: FastAPI, client: httpx.AsyncClient, username: object) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": username}, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert ["body", "username"] in error_locs(body), body
        assert (await read_me(client, tokens))["username"] == account.username

    @pytest.mark.parametrize(
        "extra",
        [
            {"role": "admin"},
            {"email": "hijack@example.com"},
            {"is_verified": True},
            {"is_active": False},
            {"id": 999},
            {"hashed_password": "x"},
        ],
        ids=["role", "email", "is_verified", "is_active", "id", "hashed_password"],
    )
    async def test_unknown_fields_are_422_and_change_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, extra: dict[str, object]
    ) -> None:
        account, tokens = await signed_in(app, client, is_verified=False)
        before = await read_me(client, tokens)

        response = await client.patch(
            ME, json={"username": "sneaky_name", "full_name": "Sneaky", **extra}, headers=tokens.headers
        )

        body = assert_problem(response, 422, "validation_error")
        assert ["body", next(iter(extra))] in error_locs(body), body
        after = await read_me(client, tokens)
        assert after == before
        assert after["username"] == account.username
        assert after["role"] == "user"
        assert after["is_verified"] is False

    async def test_null_full_name_clears_it(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)
        await client.patch(ME, json={"full_name": "To Be Removed"}, headers=tokens.headers)

        response = await client.patch(ME, json={"full_name": None}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["full_name"] is None
        assert (await read_me(client, tokens))["full_name"] is None

    @pytest.mark.parametrize(
        ("submitted", "stored"),
        [
            ("  Ada   King \t Lovelace \n", "Ada King Lovelace"),
            ("Grace\n\nHopper", "Grace Hopper"),
            ("   ", None),
        ],
        ids=["spaces-and-tabs", "newlines", "only-whitespace"],
    )
    async def test_full_name_whitespace_is_collapsed(
        self, app: FastAPI, client: httpx.AsyncClient, submitted: str, stored: str | None
    ) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"full_name": submitted}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["full_name"] == stored
        assert (await read_me(client, tokens))["full_name"] == stored

    async def test_full_name_longer_than_100_is_422(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"full_name": "x" * 101}, headers=tokens.headers)

        assert_problem(response, 422, "validation_error")
        assert (await read_me(client, tokens))["full_name"] is None

    async def test_null_username_never_removes_it(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)

        response = await client.patch(ME, json={"username": None}, headers=tokens.headers)

        assert response.status_code in {200, 422}, response.text
        assert (await read_me(client, tokens))["username"] == account.username

    async def test_requires_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.patch(ME, json={"full_name": "Nobody"})

        assert_problem(response, 401, "not_authenticated")


class TestDeleteMe:
    async def test_wrong_password_is_400_and_deletes_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)

        response = await delete_me(client, tokens, {"password": account.password + "-wrong"})

        assert_problem(response, 400, "invalid_credentials")
        assert (await read_me(client, tokens))["id"] == account.id
        assert (await client.get(user_url(account.id))).status_code == 200
        await login(client, account)

    @pytest.mark.parametrize("body", [{"password": ""}, {"password": 123}, {"password": "x", "confirm": True}], ids=str)
    async def test_invalid_body_is_422_and_deletes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, object]
    ) -> None:
        account, tokens = await signed_in(app, client)

        response = await delete_me(client, tokens, body)

        assert_problem(response, 422, "validation_error")
        assert (await client.get(user_url(account.id))).status_code == 200

    async def test_right_password_deletes_the_account_and_its_sessions(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        other, other_tokens = await signed_in(app, client)
        account, tokens = await signed_in(app, client)
        second = await login(client, account, user_agent="second-device/1.0")
        # Both tokens have been used once, so a cache (with Redis) holds their sessions.
        await read_me(client, tokens)
        await read_me(client, second)
        sessions = await session_ids(app, account.id)
        assert len(sessions) == 2
        assert await refresh_token_count(app, sessions) == 2

        response = await delete_me(client, tokens, {"password": account.password})

        assert response.status_code == 204, response.text
        assert response.content == b""
        for refused in (tokens, second):
            after = await client.get(ME, headers=refused.headers)
            assert after.status_code == 401, after.text
            assert after.headers["www-authenticate"].startswith("Bearer")
        refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": second.refresh})
        assert_problem(refresh, 401, "invalid_refresh_token")
        relogin = await client.post(
            "/api/v1/auth/login", data={"username": account.email, "password": account.password}
        )
        assert_problem(relogin, 401, "invalid_credentials")
        assert_problem(await client.get(user_url(account.id)), 404, "user_not_found")
        assert await session_ids(app, account.id) == []
        assert await refresh_token_count(app, sessions) == 0
        # Nobody else is affected.
        assert (await read_me(client, other_tokens))["id"] == other.id

    async def test_the_email_and_username_are_free_again(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client, username="reused_name")
        assert (await delete_me(client, tokens, {"password": account.password})).status_code == 204

        again = await create_user(app, email=account.email, username="reused_name")

        await login(client, again)

    async def test_a_deleted_users_id_is_never_given_to_someone_else(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        # /users/{id} of a deleted account must stay 404, not start showing a stranger.
        account, tokens = await signed_in(app, client)
        assert (await delete_me(client, tokens, {"password": account.password})).status_code == 204

        newcomer = await create_user(app)

        assert newcomer.id != account.id
        assert_problem(await client.get(user_url(account.id)), 404, "user_not_found")

    async def test_the_only_active_admin_cannot_delete_themselves(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account, tokens = await signed_in(app, client, role=Role.ADMIN)

        response = await delete_me(client, tokens, {"password": account.password})

        assert_problem(response, 409, "last_admin")
        assert (await read_me(client, tokens))["role"] == "admin"

    async def test_an_admin_can_delete_themselves_when_another_admin_remains(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        await create_user(app, role=Role.ADMIN)
        account, tokens = await signed_in(app, client, role=Role.ADMIN)

        response = await delete_me(client, tokens, {"password": account.password})

        assert response.status_code == 204, response.text
        assert_problem(await client.get(user_url(account.id)), 404, "user_not_found")

    async def test_requires_a_token(self, client: httpx.AsyncClient) -> None:
        response = await client.request("DELETE", ME, json={"password": "whatever-it-is"})

        assert_problem(response, 401, "not_authenticated")


class TestReadPublicProfile:
    async def test_anonymous_caller_sees_the_public_fields_only(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app, username="public_ada")

        response = await client.get(user_url(account.id))

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == USER_PUBLIC_FIELDS
        assert "email" not in body
        assert account.email not in response.text
        assert body["id"] == account.id
        assert body["username"] == "public_ada"
        assert body["full_name"] is None
        assert_utc_timestamp(body["created_at"])

    async def test_signed_in_caller_sees_no_email_either(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        target = await create_user(app)
        _, tokens = await signed_in(app, client, role=Role.ADMIN)

        response = await client.get(user_url(target.id), headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert set(response.json()) == USER_PUBLIC_FIELDS
        assert target.email not in response.text

    async def test_own_profile_shows_the_full_name(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in(app, client)
        await client.patch(ME, json={"full_name": "Ada Lovelace"}, headers=tokens.headers)

        body = (await client.get(user_url(account.id))).json()

        assert body["full_name"] == "Ada Lovelace"
        assert "email" not in body

    @pytest.mark.parametrize("user_id", [987654, 2**31 - 1])
    async def test_unknown_id_is_404(self, app: FastAPI, client: httpx.AsyncClient, user_id: int) -> None:
        await create_user(app)

        assert_problem(await client.get(user_url(user_id)), 404, "user_not_found")

    @pytest.mark.parametrize("user_id", ["0", "-1", "abc", "1.5", "1e3", str(2**31), str(2**63)])
    async def test_invalid_id_is_422(self, client: httpx.AsyncClient, user_id: str) -> None:
        body = assert_problem(await client.get(user_url(user_id)), 422, "validation_error")

        assert error_locs(body) == [["path", "user_id"]]
