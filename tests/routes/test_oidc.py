"""Provider sign-in through HTTP against a real OpenID Connect provider (oidc-provider-mock on 127.0.0.1),
a local stub of GitHub's OAuth and API endpoints, and the ID token verifier with tokens signed here."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt as pyjwt
import pytest
import time_machine
import werkzeug.serving
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import SecretStr
from sqlmodel import col, select

from keel.core.config import OidcProviderSettings, Settings
from keel.core.oidc import OidcClient, ProviderError, verify_id_token
from keel.models import EmailKind, EmailOutbox, OidcFlow, User, UserSession
from keel.models import Identity as IdentityRow
from keel.services import outbox as outbox_service
from keel.services.identity import safe_next
from tests.factories import Account, activity_of, activity_types, assert_problem, create_user, login
from tests.routes.test_email_code import code_mails, code_of, other_code
from tests.routes.test_mfa import MFA, bearer, code_at, enroll

AUTH = "/api/v1/auth"
ISSUER_KEY = "mock"
# The mock provider (in a thread of this process, so under this process's warning filters) uses
# authlib APIs that warn they are deprecated; as errors they would turn its answers into 500s.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


# --- the providers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    """oidc-provider-mock, in a thread of this process, on a free port of 127.0.0.1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from oidc_provider_mock import app as mock_provider_app

    server = werkzeug.serving.make_server("127.0.0.1", 0, mock_provider_app(require_nonce=True), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _GitHubStub(BaseHTTPRequestHandler):
    """GitHub's token endpoint and the two API calls Keel makes, as its documentation describes them."""

    emails: ClassVar[list[dict[str, Any]]] = []
    seen: ClassVar[list[dict[str, list[str]]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        type(self).seen.append(form)
        if self.path != "/login/oauth/access_token" or form.get("code") != ["gh-code"]:
            self._json({"error": "bad_verification_code"})
            return
        self._json({"access_token": "gh-access", "token_type": "bearer", "scope": "read:user,user:email"})

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Bearer gh-access":
            self._json({"message": "Bad credentials"}, 401)
        elif self.path == "/user":
            self._json({"id": 4242, "login": "Octo-Cat"})
        elif self.path == "/user/emails":
            self._json(type(self).emails)
        else:
            self._json({"message": "Not Found"}, 404)


@pytest.fixture(scope="module")
def github_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHubStub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def settings(settings: Settings, provider_url: str, github_url: str) -> Settings:
    mock = OidcProviderSettings(
        id=ISSUER_KEY,
        name="Mock ID",
        issuer=provider_url,
        client_id="keel-client",
        client_secret=SecretStr("keel-secret"),
    )
    return settings.model_copy(
        update={
            "oidc_providers": (mock,),
            "github_client_id": "gh-client",
            "github_client_secret": SecretStr("gh-secret"),
            "github_oauth_url": github_url,
            "github_api_url": github_url,
        }
    )


def set_provider_user(provider_url: str, sub: str, **claims: object) -> None:
    response = httpx.put(f"{provider_url}/users/{sub}", json=claims)
    assert response.status_code == 204, response.text


# --- driving a browser through the flow -------------------------------------------------------------
async def start(client: httpx.AsyncClient, *, next_path: str | None = None) -> str:
    params = {"next": next_path} if next_path is not None else {}
    response = await client.get(f"{AUTH}/oidc/{ISSUER_KEY}/authorize", params=params)
    assert response.status_code == 302, response.text
    cookie = response.headers["set-cookie"]
    assert "keel_oidc=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/api/v1/auth/oidc" in cookie
    return response.headers["location"]


def at_provider(authorize_url: str, *, sub: str | None = None, deny: bool = False) -> str:
    """The user's answer on the provider's page; gives the callback path and query it redirects to."""
    form = {"action": "deny"} if deny else {"sub": sub}
    response = httpx.post(authorize_url, data=form)
    assert response.status_code == 302, response.text
    back = urlsplit(response.headers["location"])
    assert back.path == f"{AUTH}/oidc/{ISSUER_KEY}/callback"
    return f"{back.path}?{back.query}"


async def sign_in(
    client: httpx.AsyncClient, provider_url: str, sub: str, *, next_path: str | None = None
) -> httpx.Response:
    callback = at_provider(await start(client, next_path=next_path), sub=sub)
    return await client.get(callback)


def redirected_error(response: httpx.Response, page: str = "/signin") -> str:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == page
    assert "keel_refresh=" not in "".join(response.headers.get_list("set-cookie"))
    return parse_qs(location.query)["error"][0]


def refresh_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        match = re.match(r"keel_refresh=([^;]+);", header)
        if match:
            return match.group(1)
    return None


async def sessions_of(app: FastAPI, user_id: int) -> int:
    async with app.state.database.session() as session:
        return len(list(await session.exec(select(UserSession).where(UserSession.user_id == user_id))))


async def user_by_email(app: FastAPI, email: str) -> User | None:
    async with app.state.database.session() as session:
        found: User | None = (await session.exec(select(User).where(User.email == email))).first()
        return found


async def identities(app: FastAPI) -> list[IdentityRow]:
    async with app.state.database.session() as session:
        return list(await session.exec(select(IdentityRow).order_by(col(IdentityRow.id))))


async def link_directly(app: FastAPI, user_id: int, sub: str, provider: str = ISSUER_KEY) -> int:
    async with app.state.database.session() as session:
        row = IdentityRow(user_id=user_id, provider=provider, subject=sub, confirmed_at=datetime.now(UTC))
        session.add(row)
        await session.commit()
        assert row.id is not None
        return row.id


async def mailed_link_token(app: FastAPI, address: str) -> str:
    async with app.state.database.session() as session:
        row = (
            await session.exec(
                select(EmailOutbox)
                .where(EmailOutbox.to_address == address, EmailOutbox.kind == EmailKind.IDENTITY_LINK)
                .order_by(col(EmailOutbox.id).desc())
            )
        ).first()
        assert row is not None
        mail = await outbox_service.compose(session=session, settings=app.state.settings, row=row)
    assert mail is not None
    match = re.search(r"/link-identity\?token=([A-Za-z0-9_.\-]+)", mail.text)
    assert match, mail.text
    return match.group(1)


async def mail_kinds(app: FastAPI, address: str) -> list[EmailKind]:
    async with app.state.database.session() as session:
        return [row.kind for row in await session.exec(select(EmailOutbox).where(EmailOutbox.to_address == address))]


# --- the providers' list -----------------------------------------------------------------------------
async def test_the_configured_providers_are_listed(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{AUTH}/providers")
    assert response.status_code == 200
    assert response.json() == [{"id": "github", "name": "GitHub"}, {"id": ISSUER_KEY, "name": "Mock ID"}]


async def test_nothing_is_offered_unless_configured(tmp_path: Any) -> None:
    from keel.core.oidc import configured_providers
    from tests.conftest import base_settings

    assert configured_providers(base_settings(tmp_path)) == {}


async def test_an_unknown_provider_is_a_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{AUTH}/oidc/nope/authorize"), 404, "provider_not_found")


# --- the account-resolution rules --------------------------------------------------------------------
class TestResolution:
    async def test_a_new_provider_account_creates_a_verified_account_without_a_password(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "new-1", email="Fresh.Person@Example.com", email_verified=True)
        response = await sign_in(client, provider_url, "new-1", next_path="/todos?list=1")
        assert response.status_code == 302, response.text
        assert response.headers["location"] == "/todos?list=1"
        token = refresh_cookie(response)
        assert token is not None
        user = await user_by_email(app, "fresh.person@example.com")
        assert user is not None
        assert user.is_verified
        assert user.is_active
        assert user.username == "fresh_person"
        assert user.hashed_password.startswith("!unusable$")
        # The cookie works like a password sign-in's, and the session says how it was made.
        web = {"X-Keel-Client": "web", "Origin": "http://testserver"}
        refreshed = await client.post(f"{AUTH}/refresh", headers=web)
        assert refreshed.status_code == 200, refreshed.text
        assert pyjwt.decode(refreshed.json()["access_token"], options={"verify_signature": False})["amr"] == ["fed"]
        # No password signs in to it.
        login_attempt = await client.post(f"{AUTH}/login", data={"username": user.email, "password": "!unusable$"})
        assert login_attempt.status_code == 401
        [identity] = await identities(app)
        assert (identity.user_id, identity.provider, identity.subject) == (user.id, ISSUER_KEY, "new-1")

    async def test_a_taken_username_gets_a_suffix(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        await create_user(app, username="taken_name", email="someone@example.com")
        set_provider_user(provider_url, "new-2", email="taken.name@example.org", email_verified=True)
        assert (await sign_in(client, provider_url, "new-2")).status_code == 302
        user = await user_by_email(app, "taken.name@example.org")
        assert user is not None
        assert re.fullmatch(r"taken_name_\d{5}", user.username)

    async def test_a_linked_identity_signs_in_to_its_account(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="linked@example.com")
        await link_directly(app, account.id, "linked-1")
        # The provider's address no longer matters once linked.
        set_provider_user(provider_url, "linked-1", email="other@example.net", email_verified=False)
        response = await sign_in(client, provider_url, "linked-1")
        assert response.status_code == 302
        assert response.headers["location"] == "/"
        assert refresh_cookie(response) is not None
        assert await sessions_of(app, account.id) == 1
        assert await user_by_email(app, "other@example.net") is None

    async def test_a_verified_local_account_is_mailed_a_confirmation_and_linked_only_by_it(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="owner@example.com")
        set_provider_user(provider_url, "claimer-1", email="owner@example.com", email_verified=True)
        response = await sign_in(client, provider_url, "claimer-1")
        assert redirected_error(response) == "link_confirmation_sent"
        assert await sessions_of(app, account.id) == 0
        assert EmailKind.IDENTITY_LINK in await mail_kinds(app, account.email)
        # Not linked yet: signing in again signs in nothing (the mail is sent again, throttled).
        assert redirected_error(await sign_in(client, provider_url, "claimer-1")) == "link_confirmation_sent"
        assert await sessions_of(app, account.id) == 0
        owner = await login(client, account)
        assert (await client.get(f"{AUTH}/identities", headers=owner.headers)).json() == []

        token = await mailed_link_token(app, account.email)
        confirmed = await client.post(f"{AUTH}/identities/confirm", json={"token": token})
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["subject"] == "claimer-1"
        listed = (await client.get(f"{AUTH}/identities", headers=owner.headers)).json()
        assert [(row["provider"], row["subject"], row["email"]) for row in listed] == [
            (ISSUER_KEY, "claimer-1", "owner@example.com")
        ]
        assert EmailKind.IDENTITY_LINKED in await mail_kinds(app, account.email)
        assert "identity_linked" in await activity_types(app, account.id)
        # Now the provider account signs in to the owner's account.
        response = await sign_in(client, provider_url, "claimer-1")
        assert response.status_code == 302
        assert refresh_cookie(response) is not None
        assert await sessions_of(app, account.id) == 2

    async def test_a_confirmation_token_for_a_changed_address_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="moving@example.com")
        set_provider_user(provider_url, "claimer-2", email="moving@example.com", email_verified=True)
        await sign_in(client, provider_url, "claimer-2")
        token = await mailed_link_token(app, account.email)
        async with app.state.database.session() as session:
            user = await session.get(User, account.id)
            assert user is not None
            user.email = "moved@example.com"
            session.add(user)
            await session.commit()
        assert_problem(await client.post(f"{AUTH}/identities/confirm", json={"token": token}), 400, "invalid_token")
        assert_problem(await client.post(f"{AUTH}/identities/confirm", json={"token": "x.y.z"}), 400, "invalid_token")

    async def test_an_unverified_squatter_never_gains_the_identity(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        squatter = await create_user(app, email="victim@example.com", is_verified=False)
        set_provider_user(provider_url, "victim-1", email="victim@example.com", email_verified=True)
        assert redirected_error(await sign_in(client, provider_url, "victim-1")) == "email_taken"
        assert await identities(app) == []
        assert await sessions_of(app, squatter.id) == 0
        assert EmailKind.IDENTITY_LINK not in await mail_kinds(app, squatter.email)

    async def test_an_address_the_provider_did_not_verify_never_reaches_an_existing_account(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="target@example.com")
        set_provider_user(provider_url, "liar-1", email="target@example.com", email_verified=False)
        assert redirected_error(await sign_in(client, provider_url, "liar-1")) == "email_not_verified"
        assert await identities(app) == []
        assert await sessions_of(app, account.id) == 0
        assert await mail_kinds(app, account.email) == []

    async def test_an_unverified_address_no_one_holds_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "fresh-2", email="unproven@example.com", email_verified=False)
        assert redirected_error(await sign_in(client, provider_url, "fresh-2")) == "email_not_verified"
        assert await user_by_email(app, "unproven@example.com") is None
        assert await identities(app) == []
        assert await mail_kinds(app, "unproven@example.com") == []

    async def test_a_claim_by_password_reset_takes_the_identity_from_whoever_made_the_account(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        from keel.core import email_tokens

        squatter = await create_user(app, email="rightful@example.com", is_verified=False)
        await link_directly(app, squatter.id, "pre-hijack")
        user = await user_by_email(app, "rightful@example.com")
        assert user is not None
        assert user.id is not None
        binding = email_tokens.reset_binding(
            app.state.settings, hashed_password=user.hashed_password, email=user.email, verified=False
        )
        token = email_tokens.make(
            app.state.settings, email_tokens.Purpose.PASSWORD_RESET, user_id=user.id, value=binding
        )
        password = "Quiet-orchard-ladder-58"
        reset = await client.post(
            f"{AUTH}/password-reset/confirm",
            json={"token": token, "new_password": password, "confirm_password": password},
        )
        assert reset.status_code == 204, reset.text
        assert await identities(app) == []
        set_provider_user(provider_url, "pre-hijack", email="rightful@example.com", email_verified=False)
        assert redirected_error(await sign_in(client, provider_url, "pre-hijack")) == "email_not_verified"

    async def test_a_deactivated_account_stays_out(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        linked = await create_user(app, email="gone@example.com", is_active=False)
        await link_directly(app, linked.id, "gone-1")
        set_provider_user(provider_url, "gone-1", email="gone@example.com", email_verified=True)
        assert redirected_error(await sign_in(client, provider_url, "gone-1")) == "account_inactive"
        by_email = await create_user(app, email="dormant@example.com", is_active=False)
        set_provider_user(provider_url, "dormant-1", email="dormant@example.com", email_verified=True)
        assert redirected_error(await sign_in(client, provider_url, "dormant-1")) == "account_inactive"
        assert await sessions_of(app, linked.id) == await sessions_of(app, by_email.id) == 0
        assert await mail_kinds(app, by_email.email) == []
        # An address the provider did not verify learns nothing of the deactivated account.
        set_provider_user(provider_url, "dormant-2", email="dormant@example.com", email_verified=False)
        assert redirected_error(await sign_in(client, provider_url, "dormant-2")) == "email_not_verified"

    async def test_a_provider_account_without_an_address_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "anonymous-1")
        assert redirected_error(await sign_in(client, provider_url, "anonymous-1")) == "email_missing"
        async with app.state.database.session() as session:
            assert list(await session.exec(select(User))) == []

    @pytest.mark.parametrize(
        "address",
        [
            pytest.param("not-an-email", id="not an address"),
            pytest.param("x" * 250 + "@example.com", id="longer than 254"),
            pytest.param("someone@intranet.local", id="special-use domain"),
        ],
    )
    async def test_an_address_registration_would_refuse_creates_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str, address: str
    ) -> None:
        set_provider_user(provider_url, "odd-1", email=address, email_verified=True)
        assert redirected_error(await sign_in(client, provider_url, "odd-1")) == "email_missing"
        async with app.state.database.session() as session:
            assert list(await session.exec(select(User))) == []
        assert await identities(app) == []


# --- the flow's protections --------------------------------------------------------------------------
class TestFlow:
    async def test_the_authorization_request_uses_pkce_state_and_nonce(self, client: httpx.AsyncClient) -> None:
        query = parse_qs(urlsplit(await start(client)).query)
        assert query["response_type"] == ["code"]
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        assert len(query["state"][0]) >= 43
        assert len(query["nonce"][0]) >= 43
        assert query["client_id"] == ["keel-client"]
        assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
        assert query["redirect_uri"] == ["http://127.0.0.1:8000/api/v1/auth/oidc/mock/callback"]

    async def test_a_denied_consent_signs_in_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        callback = at_provider(await start(client), deny=True)
        assert "error=access_denied" in callback
        response = await client.get(callback)
        assert redirected_error(response) == "access_denied"
        assert "keel_oidc=; Path=/api/v1/auth/oidc; Max-Age=0" in response.headers["set-cookie"]
        async with app.state.database.session() as session:
            assert list(await session.exec(select(User))) == []

    async def test_a_state_that_is_not_this_flows_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "state-1", email="state@example.com", email_verified=True)
        callback = at_provider(await start(client), sub="state-1")
        forged = re.sub(r"state=[^&]+", "state=forged-state", callback)
        assert redirected_error(await client.get(forged)) == "state_mismatch"
        assert await user_by_email(app, "state@example.com") is None

    async def test_another_browser_cannot_finish_the_flow(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "state-2", email="fixation@example.com", email_verified=True)
        callback = at_provider(await start(client), sub="state-2")
        client.cookies.clear()  # the victim's browser has no flow cookie, or another one
        client.cookies.set("keel_oidc", "someone-elses", domain="testserver", path="/api/v1/auth/oidc")
        assert redirected_error(await client.get(callback)) == "state_mismatch"
        assert await user_by_email(app, "fixation@example.com") is None

    async def test_a_replayed_state_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "replay-1", email="replay@example.com", email_verified=True)
        start_url = await start(client)
        flow_cookie = client.cookies.get("keel_oidc")
        callback = at_provider(start_url, sub="replay-1")
        assert (await client.get(callback)).status_code == 302
        client.cookies.set("keel_oidc", flow_cookie or "", domain="testserver", path="/api/v1/auth/oidc")
        assert redirected_error(await client.get(callback)) == "state_mismatch"
        user = await user_by_email(app, "replay@example.com")
        assert user is not None
        assert user.id is not None
        assert await sessions_of(app, user.id) == 1

    async def test_an_id_token_with_another_nonce_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "nonce-1", email="nonce@example.com", email_verified=True)
        start_url = await start(client)
        async with app.state.database.session() as session:
            flow = (await session.exec(select(OidcFlow))).one()
            flow.nonce = "the-nonce-of-another-flow"
            session.add(flow)
            await session.commit()
        assert redirected_error(await client.get(at_provider(start_url, sub="nonce-1"))) == "invalid_id_token"
        assert await user_by_email(app, "nonce@example.com") is None

    async def test_an_expired_flow_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str, clock: time_machine.Traveller
    ) -> None:
        set_provider_user(provider_url, "slow-1", email="slow@example.com", email_verified=True)
        start_url = await start(client)
        callback = at_provider(start_url, sub="slow-1")
        clock.shift(timedelta(seconds=app.state.settings.oidc_flow_ttl_seconds + 1))
        assert redirected_error(await client.get(callback)) == "state_mismatch"

    @pytest.mark.parametrize(
        "query",
        [
            pytest.param({"state": "s" * 257, "code": "c"}, id="state"),
            pytest.param({"state": "s", "code": "c" * 2049}, id="code"),
            pytest.param({"error": "e" * 257}, id="error"),
        ],
    )
    async def test_an_oversize_query_value_is_a_state_mismatch_not_a_422(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str, query: dict[str, str]
    ) -> None:
        set_provider_user(provider_url, "big-1", email="big@example.com", email_verified=True)
        callback = urlsplit(at_provider(await start(client), sub="big-1"))
        response = await client.get(callback.path, params=query)
        assert redirected_error(response) == "state_mismatch"
        async with app.state.database.session() as session:
            assert list(await session.exec(select(User))) == []

    async def test_an_unreachable_provider_redirects_the_browser(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("unreachable", request=request)

        app.state.oidc.transport = httpx.MockTransport(down)
        response = await client.get(f"{AUTH}/oidc/{ISSUER_KEY}/authorize")
        assert redirected_error(response) == "provider_unavailable"
        assert "keel_oidc=" not in response.headers.get("set-cookie", "")

    @pytest.mark.parametrize(
        "target",
        [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "http:/evil",
            "/\t/evil.example",
            "evil",
            "/a\\b",
        ],
    )
    async def test_next_must_be_a_path_of_this_app(self, client: httpx.AsyncClient, target: str) -> None:
        response = await client.get(f"{AUTH}/oidc/{ISSUER_KEY}/authorize", params={"next": target})
        assert_problem(response, 422, "validation_error")
        assert safe_next(target) == "/"

    async def test_callback_redirects_stay_in_the_app(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{AUTH}/oidc/{ISSUER_KEY}/callback", params={"state": "x", "code": "y"})
        assert redirected_error(response) == "state_mismatch"
        assert response.headers["location"].startswith("/")


# --- the second factor -------------------------------------------------------------------------------
async def test_an_account_with_a_second_factor_stops_at_mfa_required(
    app: FastAPI, client: httpx.AsyncClient, provider_url: str, clock: time_machine.Traveller
) -> None:
    enrolled = await enroll(app, client, clock)
    identity_id = await link_directly(app, enrolled.account.id, "mfa-1")
    set_provider_user(provider_url, "mfa-1", email=enrolled.account.email, email_verified=True)
    before = await sessions_of(app, enrolled.account.id)

    response = await sign_in(client, provider_url, "mfa-1", next_path="/after")
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/signin/mfa"
    assert location.query == ""
    fragment = parse_qs(location.fragment)
    assert fragment["methods"] == ["totp,recovery_code"]
    assert refresh_cookie(response) is None
    assert await sessions_of(app, enrolled.account.id) == before
    # The token is a real pending sign-in: the second step finishes it, and the session says both.
    verified = await client.post(
        f"{MFA}/verify",
        json={"mfa_token": fragment["mfa_token"][0], "code": code_at(enrolled.secret, datetime.now(UTC))},
    )
    assert verified.status_code == 200, verified.text
    claims = pyjwt.decode(verified.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["fed", "otp", "mfa"]
    # The session remembers the identity it came through, across the second step.
    async with app.state.database.session() as session:
        opened = await session.get(UserSession, claims["sid"])
        assert opened is not None
        assert opened.identity_id == identity_id


async def test_the_callback_hands_out_only_the_http_only_cookie(
    app: FastAPI, client: httpx.AsyncClient, provider_url: str
) -> None:
    """No token in the redirect and no token-bearing answer in the schema: the policy test's premise."""
    set_provider_user(provider_url, "cookie-1", email="cookie@example.com", email_verified=True)
    response = await sign_in(client, provider_url, "cookie-1")
    assert response.status_code == 302
    assert response.headers["location"] == "/"
    assert response.headers["cache-control"] == "no-store"
    [cookie] = [h for h in response.headers.get_list("set-cookie") if h.startswith("keel_refresh=")]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/api/v1/auth" in cookie
    assert response.content == b""
    callback = app.openapi()["paths"][f"{AUTH}/oidc/{{provider}}/callback"]["get"]["responses"]
    assert not [status for status in callback if status.startswith("2")]


# --- linking from the account page, and unlinking ----------------------------------------------------
class TestIdentities:
    async def test_link_needs_a_recent_authentication(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        tokens = await login(client, await create_user(app))
        clock.shift(timedelta(seconds=app.state.settings.reauthentication_seconds + 5))
        response = await client.post(f"{AUTH}/identities/{ISSUER_KEY}/link", headers=bearer(tokens.access))
        assert_problem(response, 403, "reauthentication_required")

    async def test_the_signed_in_owner_links_at_once_whatever_the_address(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="linker@example.com")
        tokens = await login(client, account)
        set_provider_user(provider_url, "link-1", email="elsewhere@example.net", email_verified=False)
        response = await client.post(f"{AUTH}/identities/{ISSUER_KEY}/link", headers=tokens.headers)
        assert response.status_code == 200, response.text
        assert "keel_oidc=" in response.headers["set-cookie"]
        back = await client.get(at_provider(response.json()["authorize_url"], sub="link-1"))
        assert back.status_code == 302
        assert back.headers["location"] == "/account"
        assert refresh_cookie(back) is None  # linking opens no session
        [row] = (await client.get(f"{AUTH}/identities", headers=tokens.headers)).json()
        assert (row["subject"], row["email"]) == ("link-1", "elsewhere@example.net")
        assert await mail_kinds(app, account.email) == [EmailKind.IDENTITY_LINKED]  # the owner is told
        # And it signs in to this account from now on.
        assert (await sign_in(client, provider_url, "link-1")).status_code == 302
        assert await sessions_of(app, account.id) == 2
        linked = [row for row in await activity_of(app, account.id) if row.type == "identity_linked"]
        assert [json.loads(row.detail) for row in linked] == [{"provider": ISSUER_KEY}]
        last = (await activity_of(app, account.id))[-1]
        assert (last.type, json.loads(last.detail)) == ("sign_in", {"method": "provider", "amr": ["fed"]})

    async def test_a_link_whose_session_stopped_being_recent_is_refused(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        set_provider_user(provider_url, "late-1", email="late@example.com", email_verified=True)
        response = await client.post(f"{AUTH}/identities/{ISSUER_KEY}/link", headers=tokens.headers)
        callback = at_provider(response.json()["authorize_url"], sub="late-1")
        async with app.state.database.session() as session:  # the sign-in was longer ago than allowed
            for row in await session.exec(select(UserSession).where(UserSession.user_id == account.id)):
                row.authenticated_at = datetime.now(UTC) - timedelta(hours=1)
                session.add(row)
            await session.commit()
        assert redirected_error(await client.get(callback), "/account") == "reauthentication_required"
        assert await identities(app) == []

    async def test_an_identity_linked_elsewhere_is_not_moved(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        first = await create_user(app)
        await link_directly(app, first.id, "shared-1")
        tokens = await login(client, await create_user(app))
        set_provider_user(provider_url, "shared-1", email="shared@example.com", email_verified=True)
        response = await client.post(f"{AUTH}/identities/{ISSUER_KEY}/link", headers=tokens.headers)
        back = await client.get(at_provider(response.json()["authorize_url"], sub="shared-1"))
        assert redirected_error(back, "/account") == "identity_in_use"
        assert [row.user_id for row in await identities(app)] == [first.id]

    async def test_the_last_way_to_sign_in_cannot_be_unlinked(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "only-1", email="only@example.com", email_verified=True)
        response = await sign_in(client, provider_url, "only-1")
        web = {"X-Keel-Client": "web", "Origin": "http://testserver"}
        access = (await client.post(f"{AUTH}/refresh", headers=web)).json()["access_token"]
        [row] = (await client.get(f"{AUTH}/identities", headers=bearer(access))).json()
        assert response.status_code == 302
        refused = await client.delete(f"{AUTH}/identities/{row['id']}", headers=bearer(access))
        assert_problem(refused, 409, "last_sign_in_method")
        # With a second identity, the first may go.
        user = await user_by_email(app, "only@example.com")
        assert user is not None
        assert user.id is not None
        await link_directly(app, user.id, "gh-77", provider="github")
        assert (await client.delete(f"{AUTH}/identities/{row['id']}", headers=bearer(access))).status_code == 204
        [left] = (await client.get(f"{AUTH}/identities", headers=bearer(access))).json()
        assert left["provider"] == "github"
        assert_problem(
            await client.delete(f"{AUTH}/identities/{left['id']}", headers=bearer(access)), 409, "last_sign_in_method"
        )

    async def test_unlinking_ends_the_sessions_it_signed_in_and_mails_the_owner(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        account = await create_user(app, email="unlinker@example.com")
        identity_id = await link_directly(app, account.id, "gone-1")
        set_provider_user(provider_url, "gone-1", email="unlinker@example.com", email_verified=True)
        # A session signed in through the provider (cookie mode), and one signed in with the password.
        assert (await sign_in(client, provider_url, "gone-1")).status_code == 302
        web = {"X-Keel-Client": "web", "Origin": "http://testserver"}
        through_provider = (await client.post(f"{AUTH}/refresh", headers=web)).json()["access_token"]
        sid = pyjwt.decode(through_provider, options={"verify_signature": False})["sid"]
        async with app.state.database.session() as session:
            opened = await session.get(UserSession, sid)
            assert opened is not None
            assert opened.identity_id == identity_id
        tokens = await login(client, account)
        assert (await client.get("/api/v1/users/me", headers=bearer(through_provider))).status_code == 200

        unlinked = await client.delete(f"{AUTH}/identities/{identity_id}", headers=tokens.headers)

        assert unlinked.status_code == 204, unlinked.text
        # At once, in every worker: the access token and the refresh cookie of that session are dead.
        assert (await client.get("/api/v1/users/me", headers=bearer(through_provider))).status_code == 401
        assert (await client.post(f"{AUTH}/refresh", headers=web)).status_code == 401
        # The caller's own session goes on.
        assert (await client.get("/api/v1/users/me", headers=tokens.headers)).status_code == 200
        assert await mail_kinds(app, account.email) == [EmailKind.IDENTITY_UNLINKED]
        async with app.state.database.session() as session:
            row = (await session.exec(select(EmailOutbox).where(EmailOutbox.to_address == account.email))).one()
            mail = await outbox_service.compose(session=session, settings=app.state.settings, row=row)
        assert mail is not None
        assert mail.subject == "A provider was disconnected from your account"
        assert f"{app.state.settings.public_url}/account" in mail.text

    async def test_an_account_with_a_password_may_unlink_its_only_identity(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account: Account = await create_user(app)
        identity_id = await link_directly(app, account.id, "pw-1")
        tokens = await login(client, account)
        other = await login(client, await create_user(app))
        assert_problem(
            await client.delete(f"{AUTH}/identities/{identity_id}", headers=other.headers), 404, "identity_not_found"
        )
        assert (await client.delete(f"{AUTH}/identities/{identity_id}", headers=tokens.headers)).status_code == 204
        assert await identities(app) == []
        assert (await activity_types(app, account.id))[-1] == "identity_unlinked"


# --- an account without a password: never stuck at reauthentication_required ----------------------
async def stale(app: FastAPI, user_id: int) -> None:
    """The account's sessions signed in longer ago than a sensitive change allows."""
    async with app.state.database.session() as session:
        for row in await session.exec(select(UserSession).where(UserSession.user_id == user_id)):
            row.authenticated_at = datetime.now(UTC) - timedelta(hours=1)
            session.add(row)
        await session.commit()


async def emailed_code(app: FastAPI, client: httpx.AsyncClient, address: str) -> str:
    response = await client.post(f"{AUTH}/email-code/request", json={"email": address})
    assert response.status_code == 202, response.text
    return code_of((await code_mails(app, address))[-1])


class TestPasswordlessAccount:
    async def test_an_emailed_code_reauthenticates_it_to_link_unlink_and_delete(
        self, app: FastAPI, client: httpx.AsyncClient, provider_url: str
    ) -> None:
        set_provider_user(provider_url, "nopw-1", email="nopw@example.com", email_verified=True)
        assert (await sign_in(client, provider_url, "nopw-1")).status_code == 302
        user = await user_by_email(app, "nopw@example.com")
        assert user is not None
        assert user.id is not None
        web = {"X-Keel-Client": "web", "Origin": "http://testserver"}
        headers = bearer((await client.post(f"{AUTH}/refresh", headers=web)).json()["access_token"])
        await stale(app, user.id)
        link = f"{AUTH}/identities/{ISSUER_KEY}/link"
        assert_problem(await client.post(link, headers=headers), 403, "reauthentication_required")
        me = "/api/v1/users/me"
        assert_problem(await client.request("DELETE", me, json={}, headers=headers), 403, "reauthentication_required")
        # No password proves anything for it.
        refused = await client.post(f"{AUTH}/reauthenticate", json={"password": "!unusable$"}, headers=headers)
        assert_problem(refused, 400, "invalid_credentials")

        code = await emailed_code(app, client, user.email)
        wrong = await client.post(f"{AUTH}/reauthenticate", json={"email_code": other_code(code)}, headers=headers)
        assert_problem(wrong, 400, "invalid_code")
        right = await client.post(f"{AUTH}/reauthenticate", json={"email_code": code}, headers=headers)
        assert right.status_code == 204, right.text
        again = await client.post(f"{AUTH}/reauthenticate", json={"email_code": code}, headers=headers)
        assert_problem(again, 400, "invalid_code")  # single use

        # Now recently authenticated: it links a second provider account and unlinks the first.
        set_provider_user(provider_url, "nopw-2", email="nopw@example.com", email_verified=True)
        started = await client.post(link, headers=headers)
        assert started.status_code == 200, started.text
        back = await client.get(at_provider(started.json()["authorize_url"], sub="nopw-2"))
        assert back.headers["location"] == "/account"
        first, second = (await client.get(f"{AUTH}/identities", headers=headers)).json()
        assert (first["subject"], second["subject"]) == ("nopw-1", "nopw-2")
        assert (await client.delete(f"{AUTH}/identities/{first['id']}", headers=headers)).status_code == 204
        # And it deletes the account without a password to give.
        deleted = await client.request("DELETE", me, json={}, headers=headers)
        assert deleted.status_code == 204, deleted.text
        assert await user_by_email(app, "nopw@example.com") is None

    async def test_a_code_of_another_account_does_not_reauthenticate(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        mine = await create_user(app)
        theirs = await create_user(app)
        tokens = await login(client, mine)
        code = await emailed_code(app, client, theirs.email)
        refused = await client.post(f"{AUTH}/reauthenticate", json={"email_code": code}, headers=tokens.headers)
        assert_problem(refused, 400, "invalid_code")
        # Still theirs to sign in with.
        signed_in = await client.post(f"{AUTH}/email-code/verify", json={"email": theirs.email, "code": code})
        assert signed_in.status_code == 200, signed_in.text

    async def test_an_account_with_a_password_still_deletes_only_with_it(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account = await create_user(app)
        tokens = await login(client, account)
        me = "/api/v1/users/me"
        missing = assert_problem(
            await client.request("DELETE", me, json={}, headers=tokens.headers), 400, "invalid_credentials"
        )
        assert missing["detail"] == "This account's password is required."
        assert (await user_by_email(app, account.email)) is not None
        deleted = await client.request("DELETE", me, json={"password": account.password}, headers=tokens.headers)
        assert deleted.status_code == 204, deleted.text


# --- GitHub: OAuth 2.0 without an ID token -----------------------------------------------------------
class TestGitHub:
    async def _sign_in(self, client: httpx.AsyncClient, code: str = "gh-code") -> httpx.Response:
        started = await client.get(f"{AUTH}/oidc/github/authorize")
        assert started.status_code == 302
        authorize = urlsplit(started.headers["location"])
        query = parse_qs(authorize.query)
        assert authorize.path == "/login/oauth/authorize"
        assert query["code_challenge_method"] == ["S256"]
        assert "nonce" not in query
        return await client.get(f"{AUTH}/oidc/github/callback", params={"code": code, "state": query["state"][0]})

    async def test_the_verified_primary_address_signs_up(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        _GitHubStub.emails = [
            {"email": "secondary@example.com", "primary": False, "verified": True},
            {"email": "Octo@Example.com", "primary": True, "verified": True},
        ]
        _GitHubStub.seen.clear()
        response = await self._sign_in(client)
        assert response.status_code == 302, response.text
        user = await user_by_email(app, "octo@example.com")
        assert user is not None
        assert user.is_verified
        assert user.username == "octo_cat"
        [identity] = await identities(app)
        assert (identity.provider, identity.subject) == ("github", "4242")
        [form] = _GitHubStub.seen
        assert len(form["code_verifier"][0]) >= 43
        assert form["client_id"] == ["gh-client"]

    async def test_an_unverified_primary_address_does_not_reach_an_account(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        await create_user(app, email="octo@example.com")
        _GitHubStub.emails = [{"email": "octo@example.com", "primary": True, "verified": False}]
        assert redirected_error(await self._sign_in(client)) == "email_not_verified"
        assert await identities(app) == []

    async def test_a_code_github_refuses_signs_in_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        assert redirected_error(await self._sign_in(client, code="wrong")) == "provider_error"
        assert await identities(app) == []


# --- the ID token verifier, with tokens signed here ---------------------------------------------------
class TestIdTokenVerifier:
    ISSUER = "https://id.example"
    CLIENT = "keel-client"
    NONCE = "n-0S6_WzA2Mj"

    @pytest.fixture
    def key(self) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": "k1"})

    def token(self, key: RSAKey, **changes: object) -> str:
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.ISSUER,
            "aud": self.CLIENT,
            "sub": "248289761001",
            "iat": now,
            "exp": now + 300,
            "nonce": self.NONCE,
            "email": "jane@example.com",
            "email_verified": True,
        }
        claims.update(changes)
        return jwt.encode({"alg": "RS256", "kid": key.kid}, {k: v for k, v in claims.items() if v is not None}, key)

    def verify(self, key: RSAKey, token: str) -> dict[str, Any]:
        public = RSAKey.import_key(key.as_dict(private=False))
        return verify_id_token(
            token, keys=KeySet([public]), issuer=self.ISSUER, client_id=self.CLIENT, nonce=self.NONCE
        )

    def test_a_right_token_gives_its_claims(self, key: RSAKey) -> None:
        assert self.verify(key, self.token(key))["sub"] == "248289761001"

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"aud": "another-client"}, id="wrong audience"),
            pytest.param({"aud": ["another-client", "keel-client"]}, id="several audiences without azp"),
            pytest.param({"iss": "https://evil.example"}, id="wrong issuer"),
            pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
            pytest.param({"nonce": "another-nonce"}, id="nonce mismatch"),
            pytest.param({"nonce": None}, id="no nonce"),
            pytest.param({"sub": None}, id="no subject"),
        ],
    )
    def test_a_wrong_claim_is_refused(self, key: RSAKey, changes: dict[str, object]) -> None:
        with pytest.raises(ProviderError) as caught:
            self.verify(key, self.token(key, **changes))
        assert caught.value.code == "invalid_id_token"

    def test_a_signature_by_another_key_is_refused(self, key: RSAKey) -> None:
        intruder = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # even claiming the same key id
        with pytest.raises(ProviderError):
            self.verify(key, self.token(intruder))

    def test_a_tampered_payload_is_refused(self, key: RSAKey) -> None:
        header, payload, signature = self.token(key).split(".")
        forged = self.token(key, sub="someone-else").split(".")[1]
        with pytest.raises(ProviderError):
            self.verify(key, f"{header}.{forged[:-2]}{payload[-2:]}.{signature}")
        with pytest.raises(ProviderError):
            self.verify(key, f"{header}.{forged}.{signature}")

    def test_an_unsigned_or_hmac_token_is_refused(self, key: RSAKey) -> None:
        from joserfc.jwk import OctKey

        hmac_token = jwt.encode(
            {"alg": "HS256"},
            {"iss": self.ISSUER, "aud": self.CLIENT, "sub": "x"},
            OctKey.import_key("a-client-secret-long-enough-to-be-a-key"),
        )
        with pytest.raises(ProviderError):
            self.verify(key, hmac_token)
        with pytest.raises(ProviderError):
            self.verify(key, "not-a-token")


# --- an issuer that ends with "/" (Auth0) ----------------------------------------------------------------
class TestTrailingSlashIssuer:
    ISSUER = "https://tenant.example/"

    def entry(self) -> OidcProviderSettings:
        return OidcProviderSettings(
            id="auth0", name="Auth0", issuer=self.ISSUER, client_id="keel-client", client_secret=SecretStr("s")
        )

    def test_the_issuer_is_kept_as_configured(self) -> None:
        assert self.entry().issuer == self.ISSUER

    async def test_discovery_and_the_iss_check_use_it(self, settings: Settings) -> None:
        asked: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            asked.append(str(request.url))
            base = "https://tenant.example"
            return httpx.Response(
                200,
                json={
                    "issuer": self.ISSUER,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/oauth/token",
                    "jwks_uri": f"{base}/.well-known/jwks.json",
                },
            )

        client = OidcClient(settings.model_copy(update={"oidc_providers": (self.entry(),)}))
        client.transport = httpx.MockTransport(answer)
        provider = client.providers["auth0"]
        assert provider.issuer == self.ISSUER
        document = await client.discovery(provider)
        assert asked == ["https://tenant.example/.well-known/openid-configuration"]
        assert document["issuer"] == self.ISSUER
        key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        keys = KeySet([RSAKey.import_key(key.as_dict(private=False))])
        now = int(time.time())

        def token(iss: str) -> str:
            claims = {"iss": iss, "aud": "keel-client", "sub": "auth0|1", "iat": now, "exp": now + 300, "nonce": "n"}
            return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)

        claims = verify_id_token(
            token(self.ISSUER), keys=keys, issuer=provider.issuer, client_id="keel-client", nonce="n"
        )
        assert claims["sub"] == "auth0|1"
        with pytest.raises(ProviderError):
            verify_id_token(
                token("https://tenant.example"), keys=keys, issuer=provider.issuer, client_id="keel-client", nonce="n"
            )


# --- client authentication at the token endpoint, as the discovery document allows -----------------
class TestTokenEndpointAuthentication:
    ISSUER = "https://idp.example"

    async def exchange(self, settings: Settings, document_extra: dict[str, object]) -> list[httpx.Request]:
        """Run a code exchange against a provider answering with `document_extra`; the token requests made."""
        token_requests: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/token":
                token_requests.append(request)
                return httpx.Response(400, json={"error": "invalid_grant"})
            return httpx.Response(
                200,
                json={
                    "issuer": self.ISSUER,
                    "authorization_endpoint": f"{self.ISSUER}/authorize",
                    "token_endpoint": f"{self.ISSUER}/token",
                    "jwks_uri": f"{self.ISSUER}/jwks",
                    **document_extra,
                },
            )

        entry = OidcProviderSettings(
            id="idp", name="IdP", issuer=self.ISSUER, client_id="keel client", client_secret=SecretStr("s3cr:et")
        )
        client = OidcClient(settings.model_copy(update={"oidc_providers": (entry,)}))
        client.transport = httpx.MockTransport(answer)
        with pytest.raises(ProviderError) as refused:
            await client.finish(
                client.providers["idp"], code="c", code_verifier="v" * 43, redirect_uri="http://x/cb", nonce="n"
            )
        assert refused.value.code == "provider_error"
        return token_requests

    @pytest.mark.parametrize(
        "document_extra",
        [
            pytest.param({}, id="none named: the default, basic"),
            pytest.param({"token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"]}),
        ],
    )
    async def test_client_secret_basic_is_preferred(
        self, settings: Settings, document_extra: dict[str, object]
    ) -> None:
        [request] = await self.exchange(settings, document_extra)
        # Each part form-encoded before Basic (RFC 6749 section 2.3.1); no secret in the body.
        assert request.headers["authorization"] == "Basic " + base64.b64encode(b"keel%20client:s3cr%3Aet").decode()
        form = parse_qs(request.content.decode())
        assert "client_secret" not in form
        assert form["client_id"] == ["keel client"]

    async def test_client_secret_post_when_it_is_the_only_one(self, settings: Settings) -> None:
        methods: dict[str, object] = {
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"]
        }
        [request] = await self.exchange(settings, methods)
        assert "authorization" not in request.headers
        assert parse_qs(request.content.decode())["client_secret"] == ["s3cr:et"]

    async def test_a_provider_that_takes_no_client_secret_gets_no_request(self, settings: Settings) -> None:
        assert await self.exchange(settings, {"token_endpoint_auth_methods_supported": ["private_key_jwt"]}) == []
