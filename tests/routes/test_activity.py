"""The security activity log: a row for each kind of change, written with it or not at all, and its pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import select

from keel.core import email_tokens
from keel.core.client_ip import parse_networks
from keel.core.config import Settings
from keel.main import create_app
from keel.models import Activity, EmailKind, EmailOutbox, Role, User, UserSession
from keel.services import activity as activity_service
from keel.services import outbox as outbox_service
from keel.services import signin
from tests.factories import (
    Account,
    Tokens,
    activity_of,
    activity_types,
    assert_problem,
    create_user,
    login,
    utc_timestamp,
)
from tests.routes.test_email_code import requested_code, verify
from tests.routes.test_mfa import code_at, enroll, mfa_token_for
from tests.routes.test_passkeys import add_passkey, authenticate, authenticator, sign_in_options, with_passkey
from tests.routes.test_tokens import TOKENS, make_token
from tests.webauthn_authenticator import SoftAuthenticator

__all__ = ["authenticator"]  # the fixture, used by the passkey tests here

AUTH = "/api/v1/auth"
ACTIVITY = "/api/v1/users/me/activity"
FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0"
NEW_PASSWORD = "Copper-meadow-falcon-71"


def detail(row: Activity) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(row.detail)
    return value


async def last(app: FastAPI, user_id: int, type: str | None = None) -> Activity:
    rows = [row for row in await activity_of(app, user_id) if type is None or row.type == type]
    assert rows, "no activity recorded"
    return rows[-1]


class TestUserAgents:
    @pytest.mark.parametrize(
        ("header", "described"),
        [
            (FIREFOX, "Firefox on macOS"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Windows",
            ),
            ("python-httpx/0.28.1", "python-httpx/0.28.1"),
            ("", None),
            (None, None),
        ],
    )
    def test_a_user_agent_is_described_in_words(self, header: str | None, described: str | None) -> None:
        assert activity_service.describe(header) == described


class TestSignIns:
    async def test_a_password_sign_in_records_its_method_amr_address_and_device(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        await login(client, account, user_agent=FIREFOX)
        row = await last(app, account.id)
        assert (row.type, detail(row)) == ("sign_in", {"method": "password", "amr": ["pwd"]})
        assert (row.ip, row.user_agent) == ("203.0.113.7", "Firefox on macOS")

    async def test_the_address_is_the_one_a_trusted_proxy_forwards_for(self, settings: Settings) -> None:
        behind = settings.model_copy(update={"trusted_proxies": parse_networks("203.0.113.7")})
        application = create_app(behind)
        async with application.router.lifespan_context(application):
            account = await create_user(application)
            transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                response = await http.post(
                    f"{AUTH}/login",
                    data={"username": account.email, "password": account.password},
                    headers={"X-Forwarded-For": "192.0.2.1, 198.51.100.9"},
                )
            assert response.status_code == 200, response.text
            assert (await last(application, account.id)).ip == "198.51.100.9"

    async def test_a_wrong_password_on_an_existing_account_is_recorded(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        response = await client.post(f"{AUTH}/login", data={"username": account.email, "password": "Wrong-pass-1234"})
        assert_problem(response, 401, "invalid_credentials")
        row = await last(app, account.id)
        assert (row.type, detail(row)) == ("sign_in_failed", {"method": "password", "reason": "wrong_password"})

    async def test_a_second_factor_sign_in_records_the_whole_amr(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        token = await mfa_token_for(client, enrolled.account)
        response = await client.post(
            f"{AUTH}/mfa/verify", json={"mfa_token": token, "code": code_at(enrolled.secret, datetime.now(UTC))}
        )
        assert response.status_code == 200, response.text
        row = await last(app, enrolled.account.id, "sign_in")
        assert detail(row) == {"method": "password", "amr": ["pwd", "otp", "mfa"]}

    async def test_a_passkey_sign_in_is_recorded(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, _, _ = await with_passkey(app, client, authenticator)
        options = await sign_in_options(client)
        response = await authenticate(client, authenticator.get(options))
        assert response.status_code == 200, response.text
        row = await last(app, account.id, "sign_in")
        assert detail(row)["method"] == "passkey"
        assert "hwk" in detail(row)["amr"]

    async def test_an_email_code_sign_in_and_a_wrong_code_are_recorded(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        code = await requested_code(app, client, account)
        wrong = "000000" if code != "000000" else "111111"
        assert_problem(await verify(client, account.email, wrong), 400, "invalid_code")
        assert (await client.post(f"{AUTH}/email-code/verify", json={"email": account.email, "code": code})).is_success
        failed, signed_in = (await activity_of(app, account.id))[-2:]
        assert (failed.type, detail(failed)) == ("sign_in_failed", {"method": "email_code", "reason": "wrong_code"})
        assert (signed_in.type, detail(signed_in)) == ("sign_in", {"method": "email_code", "amr": ["otp"]})

    async def test_a_sign_in_that_fails_to_commit_records_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await create_user(app)

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("the token pair could not be made")

        # `pair` runs last inside the sign-in's transaction, after the session and activity rows.
        monkeypatch.setattr(signin, "pair", broken)
        response = await client.post(f"{AUTH}/login", data={"username": account.email, "password": account.password})
        assert response.status_code == 500
        assert await activity_of(app, account.id) == []
        async with app.state.database.session() as session:
            assert list(await session.exec(select(UserSession).where(UserSession.user_id == account.id))) == []


class TestAccountChanges:
    async def test_a_password_change_is_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        response = await client.post(
            f"{AUTH}/password-change",
            json={"current_password": account.password, "new_password": NEW_PASSWORD},
            headers=tokens.headers,
        )
        assert response.status_code == 204, response.text
        assert (await last(app, account.id)).type == "password_changed"

    async def test_a_password_change_that_fails_records_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)

        async def broken(**kwargs: object) -> None:
            raise RuntimeError("the outbox is broken")

        # The mail is queued after the activity row, in the same transaction.
        monkeypatch.setattr(outbox_service, "enqueue", broken)
        response = await client.post(
            f"{AUTH}/password-change",
            json={"current_password": account.password, "new_password": NEW_PASSWORD},
            headers=tokens.headers,
        )
        assert response.status_code == 500
        assert await activity_types(app, account.id) == ["sign_in"]

    async def test_a_password_reset_is_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        async with app.state.database.session() as session:
            user = await session.get(User, account.id)
            assert user is not None
        binding = email_tokens.reset_binding(
            app.state.settings, hashed_password=user.hashed_password, email=user.email, verified=True
        )
        token = email_tokens.make(
            app.state.settings, email_tokens.Purpose.PASSWORD_RESET, user_id=account.id, value=binding
        )
        response = await client.post(
            f"{AUTH}/password-reset/confirm",
            json={"token": token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
        )
        assert response.status_code == 204, response.text
        assert await activity_types(app, account.id) == ["password_reset"]

    async def test_turning_the_authenticator_app_on_and_off_is_recorded(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        assert (await last(app, enrolled.account.id)).type == "mfa_enabled"
        response = await client.delete(f"{AUTH}/mfa/totp", headers=enrolled.tokens.headers)
        assert response.status_code == 204, response.text
        row = await last(app, enrolled.account.id)
        assert (row.type, detail(row)) == ("mfa_disabled", {"method": "totp"})

    async def test_adding_and_removing_a_passkey_is_recorded(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        account, tokens, passkey = await with_passkey(app, client, authenticator)
        added = await last(app, account.id)
        assert (added.type, detail(added)) == ("passkey_added", {"name": "Laptop"})
        response = await client.delete(f"{AUTH}/passkeys/{passkey['id']}", headers=tokens.headers)
        assert response.status_code == 204, response.text
        removed = await last(app, account.id)
        assert (removed.type, detail(removed)) == ("passkey_removed", {"name": "Laptop"})

    async def test_a_passkey_refused_as_a_duplicate_records_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, authenticator: SoftAuthenticator
    ) -> None:
        await with_passkey(app, client, authenticator)
        other = await create_user(app)
        tokens = await login(client, other)
        again = await add_passkey(client, tokens, authenticator, reuse=authenticator.credentials[0])
        assert_problem(again, 400, "invalid_credential")
        assert await activity_types(app, other.id) == ["sign_in"]

    async def test_ending_sessions_is_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        other = await login(client, account, user_agent=FIREFOX)
        tokens = await login(client, account)
        sessions = (await client.get(f"{AUTH}/sessions", headers=tokens.headers)).json()
        firefox = next(row["id"] for row in sessions if not row["current"])
        assert (await client.delete(f"{AUTH}/sessions/{firefox}", headers=tokens.headers)).status_code == 204
        row = await last(app, account.id)
        assert (row.type, detail(row)) == ("session_revoked", {"device": "Firefox on macOS"})
        assert (await client.post(f"{AUTH}/logout-all", headers=tokens.headers)).status_code == 204
        row = await last(app, account.id)
        assert (row.type, detail(row)) == ("session_revoked", {"sessions": "all"})
        assert other.access


class TestAdminChanges:
    async def test_a_role_change_and_a_deactivation_are_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        account = await create_user(app)
        path = f"/api/v1/admin/users/{account.id}"
        assert (await client.patch(path, json={"role": "admin"}, headers=admin.headers)).status_code == 200
        assert (await client.patch(path, json={"is_active": False}, headers=admin.headers)).status_code == 200
        role, deactivated = await activity_of(app, account.id)
        assert (role.type, detail(role)) == ("role_changed", {"from": "user", "to": "admin", "by": "admin"})
        assert (deactivated.type, detail(deactivated)) == ("account_deactivated", {"by": "admin"})

    async def test_an_admins_mfa_reset_is_recorded(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        enrolled = await enroll(app, client, clock)
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        response = await client.post(f"/api/v1/admin/users/{enrolled.account.id}/mfa/reset", headers=admin.headers)
        assert response.status_code == 204, response.text
        row = await last(app, enrolled.account.id)
        assert (row.type, detail(row)) == ("mfa_disabled", {"method": "all", "by": "admin"})


class TestReading:
    async def _signed_in_thrice(self, app: FastAPI, client: httpx.AsyncClient) -> tuple[Account, Tokens]:
        account = await create_user(app)
        for _ in range(2):
            await login(client, account, user_agent=FIREFOX)
        return account, await login(client, account, user_agent=FIREFOX)

    async def test_the_owner_pages_it_newest_first(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _, tokens = await self._signed_in_thrice(app, client)
        first = await client.get(ACTIVITY, params={"limit": 2}, headers=tokens.headers)
        assert first.status_code == 200, first.text
        page = first.json()
        assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
        newest = page["items"][0]
        assert set(newest) == {"id", "type", "created_at", "ip", "user_agent", "detail"}
        assert (newest["type"], newest["user_agent"], newest["ip"]) == ("sign_in", "Firefox on macOS", "203.0.113.7")
        assert newest["detail"] == {"method": "password", "amr": ["pwd"]}
        utc_timestamp(newest["created_at"])
        ids = [item["id"] for item in page["items"]]
        rest = (await client.get(ACTIVITY, params={"limit": 2, "offset": 2}, headers=tokens.headers)).json()
        ids += [item["id"] for item in rest["items"]]
        assert ids == sorted(ids, reverse=True)
        assert len(ids) == 3
        past = (await client.get(ACTIVITY, params={"offset": 10}, headers=tokens.headers)).json()
        assert (past["items"], past["total"]) == ([], 3)

    async def test_it_is_the_callers_own(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        await self._signed_in_thrice(app, client)
        stranger = await login(client, await create_user(app))
        page = (await client.get(ACTIVITY, headers=stranger.headers)).json()
        assert page["total"] == 1

    async def test_it_needs_a_sign_in_and_a_sane_page(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        assert (await client.get(ACTIVITY)).status_code == 401
        tokens = await login(client, await create_user(app))
        assert_problem(await client.get(ACTIVITY, params={"limit": 0}, headers=tokens.headers), 422, "validation_error")

    async def test_an_admin_reads_anyones_and_no_one_else_does(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await self._signed_in_thrice(app, client)
        admin = await login(client, await create_user(app, role=Role.ADMIN))
        path = f"/api/v1/admin/users/{account.id}/activity"
        page = await client.get(path, headers=admin.headers)
        assert page.status_code == 200, page.text
        assert page.json()["total"] == 3
        assert_problem(await client.get(path, headers=tokens.headers), 403, "forbidden")
        assert_problem(
            await client.get("/api/v1/admin/users/999999/activity", headers=admin.headers), 404, "user_not_found"
        )

    async def test_an_old_row_keeps_its_order(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account, tokens = await self._signed_in_thrice(app, client)
        async with app.state.database.session() as session:
            await activity_service.record(
                session,
                user_id=account.id,
                type="sign_in",
                detail={"method": "password"},
                where=activity_service.Where(None, None),
                now=datetime.now(UTC) - timedelta(days=2),
            )
            await session.commit()
        items = (await client.get(ACTIVITY, headers=tokens.headers)).json()["items"]
        assert items[-1]["ip"] is None
        assert len(items) == 4


class TestNewDevice:
    async def _notices(self, app: FastAPI, user_id: int) -> list[EmailOutbox]:
        async with app.state.database.session() as session:
            rows = await session.exec(
                select(EmailOutbox).where(EmailOutbox.user_id == user_id, EmailOutbox.kind == EmailKind.NEW_DEVICE)
            )
            return list(rows)

    async def test_the_first_sign_in_is_no_news(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await login(client, account)
        assert await activity_types(app, account.id) == ["sign_in"]
        assert await self._notices(app, account.id) == []

    async def test_a_new_api_client_is_mailed_once_and_the_same_one_not_again(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        await login(client, account)
        await login(client, account, user_agent=FIREFOX)
        await login(client, account, user_agent=FIREFOX)
        [notice] = await self._notices(app, account.id)
        assert await activity_types(app, account.id) == ["sign_in", "sign_in", "new_device", "sign_in"]
        new = next(row for row in await activity_of(app, account.id) if row.type == "new_device")
        assert notice.activity_id == new.id
        assert detail(new) == {"method": "password", "notified": True}
        async with app.state.database.session() as session:
            mail = await outbox_service.compose(session=session, settings=app.state.settings, row=notice)
        assert mail is not None
        assert "Firefox on macOS" in mail.text
        assert "203.0.113.7" in mail.text
        assert f"{app.state.settings.public_url}/account#activity" in mail.text

    async def test_the_same_agent_on_another_network_is_new(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await login(client, account)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
            await login(elsewhere, account)
        near = httpx.ASGITransport(app=app, client=("203.0.113.99", 1))
        async with httpx.AsyncClient(transport=near, base_url="http://testserver") as same_network:
            await login(same_network, account)
        assert (await activity_types(app, account.id)).count("new_device") == 1

    async def test_notices_are_throttled_per_account(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await login(client, account)
        await login(client, account, user_agent=FIREFOX)
        await login(client, account, user_agent="curl/8.5.0")
        assert len(await self._notices(app, account.id)) == 1
        news = [detail(row) for row in await activity_of(app, account.id) if row.type == "new_device"]
        assert [row["notified"] for row in news] == [True, False]

    async def test_a_browser_is_known_by_its_device_cookie(self, app: FastAPI, settings: Settings) -> None:
        account = await create_user(app)
        web = {"X-Keel-Client": "web", "Origin": settings.public_url, "User-Agent": FIREFOX}
        form = {"username": account.email, "password": account.password}
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as browser:
            first = await browser.post(f"{AUTH}/login", data=form, headers=web)
            assert first.status_code == 200, first.text
            cookie = next(value for value in first.headers.get_list("set-cookie") if value.startswith("keel_device="))
            assert "HttpOnly" in cookie
            assert "Max-Age=34560000" in cookie
            # The browser moves to another network: its cookie still says who it is.
            browser._transport = httpx.ASGITransport(app=app, client=("192.0.2.50", 1))
            again = await browser.post(f"{AUTH}/login", data=form, headers=web)
            assert again.status_code == 200, again.text
            assert not [value for value in again.headers.get_list("set-cookie") if value.startswith("keel_device=")]
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as other_browser:
            other = await other_browser.post(f"{AUTH}/login", data=form, headers=web)
            assert other.status_code == 200, other.text
        assert await activity_types(app, account.id) == ["sign_in", "sign_in", "sign_in", "new_device"]
        assert len(await self._notices(app, account.id)) == 1

    async def test_a_malformed_device_cookie_is_ignored(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        await login(client, account)
        form = {"username": account.email, "password": account.password}
        response = await client.post(f"{AUTH}/login", data=form, headers={"Cookie": "keel_device=not;valid"})
        assert response.status_code == 200, response.text
        # Known by its user agent and network, as before: nothing new.
        assert await activity_types(app, account.id) == ["sign_in", "sign_in"]


class TestPersonalTokens:
    async def test_making_and_revoking_a_token_are_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        created = await make_token(client, tokens, ["todos:read"], name="deploy script")
        made = await last(app, account.id)
        assert made.type == "token_created"
        assert json.loads(made.detail or "{}") == {"name": "deploy script", "scopes": ["todos:read"]}

        assert (await client.delete(f"{TOKENS}/{created['id']}", headers=tokens.headers)).status_code == 204
        revoked = await last(app, account.id)
        assert revoked.type == "token_revoked"
        assert json.loads(revoked.detail or "{}") == {"token_id": created["id"]}
