"""The Admin API: searching accounts, changing role, activation and verification, deleting."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import col, func, select, update

from keel.core.db import Database
from keel.core.security import decode_access_token
from keel.models import PersonalAccessToken, Role, User, UserSession, utcnow
from keel.services import session as session_service
from tests.factories import Account, Tokens, assert_problem, create_user, login, signed_in, utc_timestamp

USERS = "/api/v1/admin/users"
ME = "/api/v1/users/me"
USER_READ_FIELDS = {"id", "email", "username", "full_name", "role", "is_active", "is_verified", "created_at"}
# What the admin endpoints answer: a UserRead and when the account last used Keel.
ADMIN_USER_READ_FIELDS = USER_READ_FIELDS | {"last_seen_at"}


def admin_user_url(user_id: int | str) -> str:
    return f"{USERS}/{user_id}"


async def signed_in_admin(app: FastAPI, client: httpx.AsyncClient, **kwargs: object) -> tuple[Account, Tokens]:
    return await signed_in(app, client, role=Role.ADMIN, **kwargs)


async def active_token(client: httpx.AsyncClient, account: Account) -> Tokens:
    """Sign in and use the token once, so a session cache (with Redis) already holds it."""
    tokens = await login(client, account)
    response = await client.get(ME, headers=tokens.headers)
    assert response.status_code == 200, response.text
    return tokens


async def me(client: httpx.AsyncClient, tokens: Tokens) -> dict[str, Any]:
    response = await client.get(ME, headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def list_users(client: httpx.AsyncClient, tokens: Tokens, **params: str | int) -> dict[str, Any]:
    response = await client.get(USERS, params=params, headers=tokens.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def error_locs(problem: dict[str, object]) -> list[object]:
    errors = problem["errors"]
    assert isinstance(errors, list)
    return [error["loc"] for error in errors]


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", USERS, None),
    ("PATCH", "/api/v1/admin/users/{target}", {"role": "admin"}),
    ("DELETE", "/api/v1/admin/users/{target}", None),
]
ADMIN_CALL_IDS = ["list", "update", "delete"]


class TestAccessControl:
    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS, ids=ADMIN_CALL_IDS)
    async def test_a_non_admin_gets_403_and_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        await create_user(app, role=Role.ADMIN)
        account, tokens = await signed_in(app, client)

        response = await client.request(method, path.format(target=account.id), json=body, headers=tokens.headers)

        assert_problem(response, 403, "forbidden")
        after = await me(client, tokens)
        assert after["role"] == "user"
        assert after["id"] == account.id

    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS, ids=ADMIN_CALL_IDS)
    async def test_anonymous_gets_401(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        target = await create_user(app)

        response = await client.request(method, path.format(target=target.id), json=body)

        assert_problem(response, 401, "not_authenticated")
        assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get(f"/api/v1/users/{target.id}")).status_code == 200

    async def test_an_unverified_admin_is_still_an_admin(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in_admin(app, client, is_verified=False)

        assert (await client.get(USERS, headers=tokens.headers)).status_code == 200


class TestListUsers:
    async def test_returns_a_page_of_user_reads(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        admin, tokens = await signed_in_admin(app, client)
        other = await create_user(app, is_verified=False)

        body = await list_users(client, tokens)

        assert set(body) == {"items", "total", "limit", "offset"}
        assert body["total"] == 2
        assert body["limit"] == 20
        assert body["offset"] == 0
        assert [item["id"] for item in body["items"]] == [admin.id, other.id]
        assert all(set(item) == ADMIN_USER_READ_FIELDS for item in body["items"])
        listed_other = body["items"][1]
        assert listed_other["email"] == other.email
        assert listed_other["role"] == "user"
        assert listed_other["is_verified"] is False

    async def test_last_seen_is_the_latest_use_of_a_session_or_a_token(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in_admin(app, client)
        never = await create_user(app)
        sailor = await create_user(app)
        hours_ago = utcnow() - timedelta(hours=3)
        minutes_ago = utcnow() - timedelta(minutes=5)
        database: Database = app.state.database
        async with database.session() as session:
            session.add(UserSession(id="a" * 32, user_id=sailor.id, last_used_at=hours_ago, expires_at=utcnow()))
            session.add(
                PersonalAccessToken(
                    user_id=sailor.id, name="cli", token_hash="b" * 64, scopes="todos:read", last_used_at=minutes_ago
                )
            )
            # A token made and never used says nothing about when its owner was last here.
            session.add(PersonalAccessToken(user_id=never.id, name="unused", token_hash="c" * 64, scopes="todos:read"))
            await session.commit()

        items = {item["id"]: item for item in (await list_users(client, tokens))["items"]}

        assert items[never.id]["last_seen_at"] is None
        # The token, used after the session: minutes ago, not hours.
        assert abs(utc_timestamp(items[sailor.id]["last_seen_at"]) - minutes_ago) < timedelta(seconds=1)
        # The session, used later than the token, wins.
        async with database.session() as session:
            await session.exec(
                update(UserSession).where(col(UserSession.user_id) == sailor.id).values(last_used_at=utcnow())
            )
            await session.commit()
        changed = await client.patch(admin_user_url(sailor.id), json={"is_verified": True}, headers=tokens.headers)
        assert changed.status_code == 200, changed.text
        assert utc_timestamp(changed.json()["last_seen_at"]) > minutes_ago

    async def test_a_sign_in_and_a_refresh_count_as_seen(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in_admin(app, client)
        sailor = await create_user(app)
        before = utcnow()
        mine = await login(client, sailor)

        first = await list_users(client, tokens, q=sailor.email)
        seen = utc_timestamp(first["items"][0]["last_seen_at"])
        assert seen >= before - timedelta(seconds=1)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": mine.refresh})
        assert refreshed.status_code == 200, refreshed.text
        second = await list_users(client, tokens, q=sailor.email)
        assert utc_timestamp(second["items"][0]["last_seen_at"]) >= seen

    async def test_pages_with_limit_and_offset(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        admin, tokens = await signed_in_admin(app, client)
        others = [await create_user(app) for _ in range(24)]
        ids = [admin.id, *(account.id for account in others)]

        first = await list_users(client, tokens)
        second = await list_users(client, tokens, limit=20, offset=20)
        narrow = await list_users(client, tokens, limit=3, offset=5)
        beyond = await list_users(client, tokens, offset=100)

        assert first["total"] == second["total"] == narrow["total"] == beyond["total"] == 25
        assert [item["id"] for item in first["items"]] == ids[:20]
        assert [item["id"] for item in second["items"]] == ids[20:]
        assert (second["limit"], second["offset"]) == (20, 20)
        assert [item["id"] for item in narrow["items"]] == ids[5:8]
        assert (narrow["limit"], narrow["offset"]) == (3, 5)
        assert beyond["items"] == []

    async def test_limit_100_is_allowed(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in_admin(app, client)

        body = await list_users(client, tokens, limit=100)

        assert body["limit"] == 100
        assert body["total"] == 1

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": 0},
            {"limit": 101},
            {"limit": -1},
            {"offset": -1},
            {"limit": "ten"},
            {"role": "superuser"},
            {"is_active": "maybe"},
            {"q": "x" * 255},
        ],
        ids=["limit-0", "limit-101", "limit-negative", "offset-negative", "limit-text", "role", "is_active", "q-long"],
    )
    async def test_invalid_query_is_422(
        self, app: FastAPI, client: httpx.AsyncClient, params: dict[str, str | int]
    ) -> None:
        _, tokens = await signed_in_admin(app, client)

        response = await client.get(USERS, params=params, headers=tokens.headers)

        body = assert_problem(response, 422, "validation_error")
        assert ["query", next(iter(params))] in error_locs(body), body

    @pytest.fixture
    async def population(self, app: FastAPI) -> dict[str, Account]:
        """Usernames without underscores except where one is wanted; one email with odd characters."""
        return {
            "root": await create_user(app, username="root", email="root@example.com", role=Role.ADMIN),
            "alice": await create_user(app, username="alice", email="alice.smith@example.org"),
            "bob": await create_user(app, username="bobby", email="BOB@Example.COM", is_active=False),
            "snake": await create_user(app, username="snake_case", email="snake@example.com"),
            "percent": await create_user(app, username="percent", email="p100@example.net"),
            "other_admin": await create_user(
                app, username="carol", email="carol@example.net", role=Role.ADMIN, is_active=False
            ),
        }

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"q": "alice"}, ["alice"]),
            ({"q": "ALICE"}, ["alice"]),
            ({"q": "Smith@EXAMPLE"}, ["alice"]),
            ({"q": "example.org"}, ["alice"]),
            ({"q": "bob@example.com"}, ["bob"]),
            ({"q": "obb"}, ["bob"]),
            ({"q": "_"}, ["snake"]),
            ({"q": "e_c"}, ["snake"]),
            ({"q": "%"}, []),
            ({"q": "p%0"}, []),
            ({"q": "p_00"}, []),
            ({"q": "\\"}, []),
            ({"q": "nobody"}, []),
            ({"q": "example.net"}, ["percent", "other_admin"]),
            ({"role": "admin"}, ["root", "other_admin"]),
            ({"role": "user"}, ["alice", "bob", "snake", "percent"]),
            ({"is_active": "false"}, ["bob", "other_admin"]),
            ({"is_active": "true"}, ["root", "alice", "snake", "percent"]),
            ({"role": "admin", "is_active": "true"}, ["root"]),
            ({"q": "example.net", "role": "user"}, ["percent"]),
            ({"q": "o", "is_active": "false", "role": "user"}, ["bob"]),
            ({"q": ""}, ["root", "alice", "bob", "snake", "percent", "other_admin"]),
        ],
        ids=lambda value: str(value) if isinstance(value, dict) else "",
    )
    async def test_filters(
        self,
        client: httpx.AsyncClient,
        population: dict[str, Account],
        params: dict[str, str],
        expected: list[str],
    ) -> None:
        tokens = await login(client, population["root"])

        body = await list_users(client, tokens, **params)

        assert [item["id"] for item in body["items"]] == [population[name].id for name in expected]
        assert body["total"] == len(expected)

    async def test_emails_are_stored_lower_cased_and_matched_as_such(
        self, client: httpx.AsyncClient, population: dict[str, Account]
    ) -> None:
        tokens = await login(client, population["root"])

        body = await list_users(client, tokens, q="BOB@")

        assert [item["email"] for item in body["items"]] == ["bob@example.com"]


class TestUpdateUser:
    async def test_promotion_to_admin_revokes_the_users_tokens(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        old = await active_token(client, target)

        response = await client.patch(admin_user_url(target.id), json={"role": "admin"}, headers=admin_tokens.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == ADMIN_USER_READ_FIELDS
        assert body["id"] == target.id
        assert body["role"] == "admin"
        assert_refused(await client.get(ME, headers=old.headers))
        assert_refused(await client.get(USERS, headers=old.headers))
        new = await login(client, target)
        assert (await me(client, new))["role"] == "admin"
        assert (await client.get(USERS, headers=new.headers)).status_code == 200

    async def test_demotion_revokes_and_removes_admin_rights(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app, role=Role.ADMIN)
        old = await active_token(client, target)
        assert (await client.get(USERS, headers=old.headers)).status_code == 200

        response = await client.patch(admin_user_url(target.id), json={"role": "user"}, headers=admin_tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["role"] == "user"
        assert_refused(await client.get(USERS, headers=old.headers))
        new = await login(client, target)
        assert_problem(await client.get(USERS, headers=new.headers), 403, "forbidden")

    async def test_an_admin_may_step_down_when_another_admin_remains(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        await create_user(app, role=Role.ADMIN)
        account, tokens = await signed_in_admin(app, client)

        response = await client.patch(admin_user_url(account.id), json={"role": "user"}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["role"] == "user"
        assert_refused(await client.get(ME, headers=tokens.headers))

    async def test_deactivation_revokes_tokens_and_blocks_login(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        old = await active_token(client, target)

        response = await client.patch(
            admin_user_url(target.id), json={"is_active": False}, headers=admin_tokens.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False
        assert_refused(await client.get(ME, headers=old.headers))
        refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": old.refresh})
        assert_problem(refresh, 403, "inactive_user")  # the holder of the session learns why it ended
        relogin = await client.post("/api/v1/auth/login", data={"username": target.email, "password": target.password})
        assert_problem(relogin, 403, "inactive_user")
        listed = await list_users(client, admin_tokens, is_active="false")
        assert [item["id"] for item in listed["items"]] == [target.id]

    async def test_reactivation_lets_the_user_sign_in_again(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app, is_active=False)

        response = await client.patch(admin_user_url(target.id), json={"is_active": True}, headers=admin_tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is True
        tokens = await login(client, target)
        assert (await me(client, tokens))["is_active"] is True

    async def test_deactivation_then_reactivation_does_not_revive_old_tokens(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        old = await active_token(client, target)

        for active in (False, True):
            response = await client.patch(
                admin_user_url(target.id), json={"is_active": active}, headers=admin_tokens.headers
            )
            assert response.status_code == 200, response.text

        assert_refused(await client.get(ME, headers=old.headers))
        refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": old.refresh})
        assert_problem(refresh, 401, "invalid_refresh_token")

    async def test_verification_is_seen_at_once_and_keeps_tokens_valid(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app, is_verified=False)
        tokens = await active_token(client, target)
        assert (await me(client, tokens))["is_verified"] is False

        response = await client.patch(
            admin_user_url(target.id), json={"is_verified": True}, headers=admin_tokens.headers
        )

        assert response.status_code == 200, response.text
        assert response.json()["is_verified"] is True
        assert (await me(client, tokens))["is_verified"] is True
        # The per-request check (which gates publishing and voting) must not keep a stale state.
        claims = decode_access_token(app.state.settings, tokens.access)
        principal = await session_service.authenticate(
            database=app.state.database, cache=app.state.session_cache, claims=claims
        )
        assert principal.user_id == target.id
        assert principal.is_verified is True

    async def test_unverifying_keeps_tokens_valid(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app, is_verified=True)
        tokens = await active_token(client, target)

        response = await client.patch(
            admin_user_url(target.id), json={"is_verified": False}, headers=admin_tokens.headers
        )

        assert response.status_code == 200, response.text
        assert (await me(client, tokens))["is_verified"] is False
        claims = decode_access_token(app.state.settings, tokens.access)
        principal = await session_service.authenticate(
            database=app.state.database, cache=app.state.session_cache, claims=claims
        )
        assert principal.is_verified is False

    async def test_setting_the_same_role_does_not_sign_out(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        tokens = await active_token(client, target)

        response = await client.patch(
            admin_user_url(target.id), json={"role": "user", "is_active": True}, headers=admin_tokens.headers
        )

        assert response.status_code == 200, response.text
        assert (await me(client, tokens))["role"] == "user"

    async def test_several_fields_at_once(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app, is_verified=False)

        response = await client.patch(
            admin_user_url(target.id),
            json={"role": "admin", "is_verified": True, "is_active": True},
            headers=admin_tokens.headers,
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["role"], body["is_verified"], body["is_active"]) == ("admin", True, True)

    async def test_unknown_user_is_404(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in_admin(app, client)

        response = await client.patch(admin_user_url(424242), json={"role": "admin"}, headers=tokens.headers)

        assert_problem(response, 404, "user_not_found")

    @pytest.mark.parametrize(
        "body",
        [
            {"email": "new@example.com"},
            {"username": "renamed"},
            {"hashed_password": "x"},
            {"id": 1},
            {"role": "admin", "full_name": "Sneaky"},
        ],
        ids=["email", "username", "hashed_password", "id", "valid-plus-unknown"],
    )
    async def test_unknown_fields_are_422_and_change_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        tokens = await active_token(client, target)
        before = await me(client, tokens)

        response = await client.patch(admin_user_url(target.id), json=body, headers=admin_tokens.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert isinstance(problem["errors"], list)
        assert await me(client, tokens) == before

    @pytest.mark.parametrize(
        "body",
        [{"role": "root"}, {"is_active": "maybe"}, {"is_verified": [True]}],
        ids=["role", "is_active", "is_verified"],
    )
    async def test_invalid_values_are_422(self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)

        response = await client.patch(admin_user_url(target.id), json=body, headers=admin_tokens.headers)

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize(
        "body", [{"is_active": 0}, {"is_active": "false"}, {"is_verified": 0}], ids=["zero", "text", "verified-zero"]
    )
    async def test_flags_are_json_booleans_only(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        # 0 and "false" used to be coerced, so they deactivated the account (found by the contract fuzzer).
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        before = await me(client, await login(client, target))

        response = await client.patch(admin_user_url(target.id), json=body, headers=admin_tokens.headers)

        problem = assert_problem(response, 422, "validation_error")
        assert error_locs(problem) == [["body", next(iter(body))]]
        assert await me(client, await login(client, target)) == before

    @pytest.mark.parametrize("user_id", ["0", "-3", "abc", str(2**31)])
    async def test_invalid_id_is_422(self, app: FastAPI, client: httpx.AsyncClient, user_id: str) -> None:
        _, tokens = await signed_in_admin(app, client)

        response = await client.patch(admin_user_url(user_id), json={"role": "user"}, headers=tokens.headers)

        assert_problem(response, 422, "validation_error")

    @pytest.mark.parametrize("body", [{"role": "user"}, {"is_active": False}], ids=["demote", "deactivate"])
    async def test_the_only_active_admin_cannot_be_removed(
        self, app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        # Another admin that is inactive does not count.
        await create_user(app, role=Role.ADMIN, is_active=False)
        account, tokens = await signed_in_admin(app, client)

        response = await client.patch(admin_user_url(account.id), json=body, headers=tokens.headers)

        assert_problem(response, 409, "last_admin")
        after = await me(client, tokens)
        assert (after["role"], after["is_active"]) == ("admin", True)

    async def test_an_admin_can_be_removed_while_another_active_admin_remains(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        _, tokens = await signed_in_admin(app, client)
        other = await create_user(app, role=Role.ADMIN)

        response = await client.patch(admin_user_url(other.id), json={"is_active": False}, headers=tokens.headers)

        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False


class TestDeleteUser:
    async def test_deletes_the_user_and_refuses_their_token(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        bystander = await create_user(app)
        tokens = await active_token(client, target)

        response = await client.delete(admin_user_url(target.id), headers=admin_tokens.headers)

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert_refused(await client.get(ME, headers=tokens.headers))
        assert_problem(await client.get(f"/api/v1/users/{target.id}"), 404, "user_not_found")
        relogin = await client.post("/api/v1/auth/login", data={"username": target.email, "password": target.password})
        assert_problem(relogin, 401, "invalid_credentials")
        listed = await list_users(client, admin_tokens)
        assert target.id not in [item["id"] for item in listed["items"]]
        assert bystander.id in [item["id"] for item in listed["items"]]

    async def test_deleting_twice_is_404(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        target = await create_user(app)
        assert (await client.delete(admin_user_url(target.id), headers=admin_tokens.headers)).status_code == 204

        response = await client.delete(admin_user_url(target.id), headers=admin_tokens.headers)

        assert_problem(response, 404, "user_not_found")

    async def test_another_admin_can_be_deleted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, admin_tokens = await signed_in_admin(app, client)
        other = await create_user(app, role=Role.ADMIN)

        response = await client.delete(admin_user_url(other.id), headers=admin_tokens.headers)

        assert response.status_code == 204, response.text

    async def test_the_last_admin_cannot_be_deleted(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await signed_in_admin(app, client)

        response = await client.delete(admin_user_url(account.id), headers=tokens.headers)

        assert_problem(response, 409, "last_admin")
        assert (await me(client, tokens))["role"] == "admin"

    async def test_unknown_user_is_404(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await signed_in_admin(app, client)

        assert_problem(await client.delete(admin_user_url(424242), headers=tokens.headers), 404, "user_not_found")


async def active_admins(app: FastAPI) -> int:
    database: Database = app.state.database
    async with database.session() as session:
        statement = select(func.count()).select_from(User).where(User.role == Role.ADMIN, col(User.is_active))
        return (await session.exec(statement)).one()


# Each admin removes themselves, all at once: one of them must be refused. Removing oneself keeps the
# outcome exact, since no request can find its own session already ended by another.
SELF_REMOVALS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "/api/v1/admin/users/{me}", {"role": "user"}),
    ("PATCH", "/api/v1/admin/users/{me}", {"is_active": False}),
    ("DELETE", "/api/v1/admin/users/{me}", None),
    ("DELETE", ME, {"password": "{password}"}),
]


class TestLastAdminUnderConcurrency:
    @pytest.mark.parametrize(
        ("method", "path", "body"), SELF_REMOVALS, ids=["demote", "deactivate", "admin-delete", "delete-own"]
    )
    async def test_simultaneous_self_removals_leave_one_admin(
        self, app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        admins = [await signed_in_admin(app, client) for _ in range(6)]

        def request(account: Account, tokens: Tokens) -> Any:
            json = {key: account.password if value == "{password}" else value for key, value in (body or {}).items()}
            return client.request(method, path.format(me=account.id), json=json or None, headers=tokens.headers)

        responses = await asyncio.gather(*(request(account, tokens) for account, tokens in admins))

        statuses = sorted(response.status_code for response in responses)
        assert statuses.count(409) == 1, statuses
        assert len([s for s in statuses if s in (200, 204)]) == len(admins) - 1, statuses
        assert_problem(next(r for r in responses if r.status_code == 409), 409, "last_admin")
        assert await active_admins(app) == 1

    async def test_two_admins_demoting_each_other_keep_one(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        leftover: Account | None = None
        for _ in range(3):
            first, first_tokens = await signed_in_admin(app, client)
            second, second_tokens = await signed_in_admin(app, client)
            if leftover is not None:  # back to exactly two active admins
                response = await client.patch(
                    admin_user_url(leftover.id), json={"role": "user"}, headers=first_tokens.headers
                )
                assert response.status_code == 200, response.text

            responses = await asyncio.gather(
                client.patch(admin_user_url(second.id), json={"role": "user"}, headers=first_tokens.headers),
                client.patch(admin_user_url(first.id), json={"role": "user"}, headers=second_tokens.headers),
            )

            statuses = [response.status_code for response in responses]
            assert statuses.count(200) == 1, statuses
            # The loser is refused by the guard, or (if the winner's demotion came first) finds its session ended.
            assert {status for status in statuses if status != 200} <= {401, 409}, statuses
            assert await active_admins(app) == 1
            leftover = first if statuses[0] == 200 else second
