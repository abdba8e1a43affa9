"""Email journeys through HTTP with a real SMTP server (aiosmtpd): verification, reset, notices, bad tokens."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import time_machine
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import text
from sqlmodel import col, select

from keel.core import email_tokens
from keel.core.config import Settings
from keel.core.email_tokens import Purpose
from keel.core.security import PasswordHasher
from keel.main import create_app
from keel.models import EmailKind, EmailOutbox, User
from tests.factories import Account, Tokens, assert_problem, create_user, login
from tests.services.test_statement_counts import count_statements

PUBLIC_URL = "https://keel.example"
ATTACKER_HOST = "attacker.example"
AUTH = "/api/v1/auth"
ME = "/api/v1/users/me"
POSTS = "/api/v1/posts"
STRONG_PASSWORD = "Velvet-harbor-lantern-93"
NEW_PASSWORD = "Quartz-meadow-bicycle-57"
LINK = re.compile(r"https?://[^\s\"'<>]+")
VERIFY_PAGE = "/verify-email"
RESET_PAGE = "/reset-password"


# --- the SMTP server -----------------------------------------------------------------------------
@dataclass
class Received:
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def to(self) -> str:
        return str(self.message["To"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        assert body.get_content_type() == f"text/{subtype}"
        return str(body.get_content())

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")

    def token(self, page: str) -> str:
        """The token of the one link to `page` (a KEEL_PUBLIC_URL page), identical in both parts."""
        found: list[str] = LINK.findall(self.text)
        links = {link for link in found if urlsplit(link).path == page}
        assert len(links) == 1, self.text
        (link,) = links
        assert link.startswith(f"{PUBLIC_URL}{page}?token="), link
        assert link in self.html
        tokens = parse_qs(urlsplit(link).query)["token"]
        assert len(tokens) == 1
        return tokens[0]


class Collector:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[Received] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.received.append(Received(rcpt_tos=list(envelope.rcpt_tos), raw=raw, message=message))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    collector: Collector

    def inbox(self, address: str) -> list[Received]:
        return [mail for mail in self.collector.received if address in mail.rcpt_tos]

    @property
    def received(self) -> list[Received]:
        return self.collector.received


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(port=int(controller.port), collector=collector)
    finally:
        controller.stop()


@pytest.fixture
async def app(settings: Settings, smtp: SmtpServer) -> AsyncIterator[FastAPI]:
    """The app of conftest, but sending through the test's SMTP server, with links on a public URL."""
    mail_settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none", "public_url": PUBLIC_URL}
    )
    application = create_app(mail_settings)
    async with application.router.lifespan_context(application):
        yield application


# --- helpers -------------------------------------------------------------------------------------
@dataclass
class Flow:
    app: FastAPI
    client: httpx.AsyncClient
    smtp: SmtpServer
    accounts: list[Account] = field(default_factory=list)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """Call the API, then wait until every email it queued has been handed to the SMTP server."""
        response = await self.client.post(path, **kwargs)
        await self.app.state.dispatcher.drain()
        return response

    async def outbox(self) -> list[EmailOutbox]:
        async with self.app.state.database.session() as session:
            return list(await session.exec(select(EmailOutbox).order_by(col(EmailOutbox.id))))

    async def kinds(self, address: str) -> list[EmailKind]:
        return [row.kind for row in await self.outbox() if row.to_address == address]

    async def user(self, user_id: int) -> User:
        async with self.app.state.database.session() as session:
            user: User | None = await session.get(User, user_id)
            assert user is not None
            return user

    async def register(self, username: str, email: str | None = None) -> Account:
        email = email or f"{username}@example.com"
        body = {"email": email, "username": username, "password": STRONG_PASSWORD}
        response = await self.post(f"{AUTH}/register", json=body)
        assert response.status_code == 202, response.text
        async with self.app.state.database.session() as session:
            user = (await session.exec(select(User).where(User.username == username))).one()
            assert user.id is not None
        return Account(id=user.id, email=email.lower(), username=username, password=STRONG_PASSWORD)

    def last_mail(self, address: str, subject: str) -> Received:
        found = [mail for mail in self.smtp.inbox(address) if mail.subject == subject]
        assert found, f"no {subject!r} mail for {address}: {[m.subject for m in self.smtp.inbox(address)]}"
        return found[-1]

    async def verify_token(self, account: Account) -> str:
        """A fresh verification link for the account, through the resend endpoint."""
        tokens = await login(self.client, account)
        response = await self.post(f"{AUTH}/verify-email/request", headers=tokens.headers)
        assert response.status_code == 202, response.text
        return self.last_mail(account.email, VERIFY_SUBJECT).token(VERIFY_PAGE)

    async def reset_token(self, account: Account) -> str:
        response = await self.post(f"{AUTH}/password-reset/request", json={"email": account.email})
        assert response.status_code == 202, response.text
        return self.last_mail(account.email, RESET_SUBJECT).token(RESET_PAGE)


VERIFY_SUBJECT = "Confirm your email address"
SIGNUP_ATTEMPT_SUBJECT = "Someone tried to sign up with your email address"
RESET_SUBJECT = "Reset your password"
NO_ACCOUNT_SUBJECT = "Password reset requested"
CHANGED_SUBJECT = "Your password was changed"
LOCKED_SUBJECT = "Signing in to your account is paused after wrong passwords"


@pytest.fixture
def flow(app: FastAPI, client: httpx.AsyncClient, smtp: SmtpServer) -> Flow:
    return Flow(app=app, client=client, smtp=smtp)


def registration(username: str, email: str | None = None) -> dict[str, str]:
    return {"email": email or f"{username}@example.com", "username": username, "password": STRONG_PASSWORD}


def reset_body(token: str, new_password: str = NEW_PASSWORD, confirm: str | None = None) -> dict[str, str]:
    return {
        "token": token,
        "new_password": new_password,
        "confirm_password": new_password if confirm is None else confirm,
    }


async def confirm(flow: Flow, purpose: Purpose, token: str) -> httpx.Response:
    if purpose is Purpose.VERIFY_EMAIL:
        return await flow.post(f"{AUTH}/verify-email/confirm", json={"token": token})
    return await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))


async def issue(flow: Flow, purpose: Purpose, username: str = "holder") -> tuple[Account, str]:
    """A registered, unverified account and a genuine token of this purpose for it."""
    account = await flow.register(username)
    if purpose is Purpose.VERIFY_EMAIL:
        return account, flow.last_mail(account.email, VERIFY_SUBJECT).token(VERIFY_PAGE)
    return account, await flow.reset_token(account)


async def assert_token_did_nothing(flow: Flow, purpose: Purpose, account: Account) -> None:
    user = await flow.user(account.id)
    if purpose is Purpose.VERIFY_EMAIL:
        assert not user.is_verified
    else:
        await login(flow.client, account)  # the old password still works
        assert CHANGED_SUBJECT not in {mail.subject for mail in flow.smtp.inbox(account.email)}


async def publish(client: httpx.AsyncClient, tokens: Tokens) -> httpx.Response:
    return await client.post(
        f"{POSTS}/", json={"title": "Hello", "content": "First post", "published": True}, headers=tokens.headers
    )


def flip(token: str, part: str) -> str:
    """Change one character in the middle of the payload, timestamp or signature of a token."""
    payload, timestamp, signature = token.rsplit(".", 2)
    pieces = {"payload": payload, "timestamp": timestamp, "signature": signature}
    piece = pieces[part]
    middle = len(piece) // 2
    pieces[part] = piece[:middle] + ("A" if piece[middle] != "A" else "B") + piece[middle + 1 :]
    tampered = ".".join([pieces["payload"], pieces["timestamp"], pieces["signature"]])
    assert tampered != token
    return tampered


# --- verification ------------------------------------------------------------------------------
class TestVerification:
    async def test_registering_sends_a_link_over_smtp_that_verifies_the_account(self, flow: Flow) -> None:
        response = await flow.post(f"{AUTH}/register", json=registration("newcomer"), headers={"Host": ATTACKER_HOST})

        assert response.status_code == 202, response.text
        (mail,) = flow.smtp.received
        assert mail.rcpt_tos == ["newcomer@example.com"]
        assert mail.to == "newcomer@example.com"
        assert mail.subject == VERIFY_SUBJECT
        assert mail.message.get_content_type() == "multipart/alternative"
        assert "newcomer" in mail.text
        assert ATTACKER_HOST not in mail.text
        assert ATTACKER_HOST not in mail.html
        token = mail.token(VERIFY_PAGE)

        account = Account(id=0, email="newcomer@example.com", username="newcomer", password=STRONG_PASSWORD)
        tokens = await login(flow.client, account)
        me = await flow.client.get(ME, headers=tokens.headers)
        assert me.json()["is_verified"] is False
        assert_problem(await publish(flow.client, tokens), 403, "email_not_verified")

        confirmed = await flow.post(f"{AUTH}/verify-email/confirm", json={"token": token})

        assert confirmed.status_code == 200, confirmed.text
        body = confirmed.json()
        assert body["email"] == "newcomer@example.com"
        assert body["username"] == "newcomer"
        assert body["is_verified"] is True
        assert "hashed_password" not in body
        # The session opened before verifying sees the change at once.
        me = await flow.client.get(ME, headers=tokens.headers)
        assert me.status_code == 200
        assert me.json()["is_verified"] is True
        assert (await publish(flow.client, tokens)).status_code == 201

    async def test_confirming_again_is_harmless(self, flow: Flow) -> None:
        account, token = await issue(flow, Purpose.VERIFY_EMAIL)
        first = await confirm(flow, Purpose.VERIFY_EMAIL, token)

        again = await confirm(flow, Purpose.VERIFY_EMAIL, token)

        assert first.status_code == again.status_code == 200
        assert again.json()["is_verified"] is True
        assert again.json()["id"] == account.id

    async def test_an_existing_address_gets_the_same_answer_and_its_owner_a_notice(
        self, flow: Flow, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        hashes: list[str] = []
        original = PasswordHasher.hash

        async def counting_hash(self: PasswordHasher, password: str) -> str:
            hashes.append(password)
            return await original(self, password)

        monkeypatch.setattr(PasswordHasher, "hash", counting_hash)

        first = await flow.post(f"{AUTH}/register", json=registration("alice"))
        assert len(hashes) == 1
        second = await flow.post(f"{AUTH}/register", json=registration("mallory", "ALICE@Example.com"))

        assert len(hashes) == 2  # the second attempt hashed its password too, once
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        assert first.headers["content-type"] == second.headers["content-type"]
        assert [(row.kind, row.to_address) for row in await flow.outbox()] == [
            (EmailKind.VERIFY_EMAIL, "alice@example.com"),
            (EmailKind.SIGNUP_ATTEMPT, "alice@example.com"),
        ]
        async with flow.app.state.database.session() as session:
            usernames = list(await session.exec(select(User.username)))
        assert usernames == ["alice"]
        verify, notice = flow.smtp.inbox("alice@example.com")
        assert verify.subject == VERIFY_SUBJECT
        assert notice.subject == SIGNUP_ATTEMPT_SUBJECT
        assert notice.to == "alice@example.com"
        for part in (notice.text, notice.html):
            assert VERIFY_PAGE not in part
            assert f"{PUBLIC_URL}/forgot-password" in part
        # alice has not confirmed her address: the notice's one token is a link to claim the account.
        assert notice.token(RESET_PAGE)
        assert notice.text.count("token=") == 1


# --- registration reveals nothing about an address; an unconfirmed one can be claimed -----------
OWNER_PASSWORD = "Saffron-glacier-tandem-71"


def answer(response: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    """All of a response a client can compare, except the request id that differs every time."""
    body = {key: value for key, value in response.json().items() if key != "request_id"}
    return response.status_code, response.headers["content-type"], body


class TestRegistrationRevealsNoAccount:
    """An attacker registers the victim's address with a fresh username, then another address with it."""

    @pytest.mark.parametrize("victim_state", ["verified", "unverified"])
    @pytest.mark.parametrize("order", ["victim-first", "other-first"])
    async def test_the_username_answer_is_the_same_whether_the_address_has_an_account(
        self, flow: Flow, victim_state: str, order: str
    ) -> None:
        await create_user(
            flow.app, email="victim@example.com", username="victim", is_verified=victim_state == "verified"
        )

        async def probe(victim: str, username: str) -> list[tuple[int, str, dict[str, Any]]]:
            attempts = [registration(username, victim), registration(username, f"other_{username}@example.com")]
            if order == "other-first":
                attempts.reverse()
            return [answer(await flow.post(f"{AUTH}/register", json=body)) for body in attempts]

        registered = await probe("victim@example.com", "probe_one")
        new = await probe("fresh@example.com", "probe_two")

        assert registered == new
        statuses = [status for status, _, _ in registered]
        assert statuses == [202, 409]
        assert registered[1][2]["code"] == "username_taken"

    async def test_registering_a_known_or_a_new_address_does_the_same_work(self, flow: Flow) -> None:
        await create_user(flow.app, email="known@example.com", username="known")
        await flow.post(f"{AUTH}/register", json=registration("warm_up"))  # connections, caches

        with count_statements(flow.app) as known:
            assert (
                await flow.post(f"{AUTH}/register", json=registration("first", "known@example.com"))
            ).status_code == 202
        with count_statements(flow.app) as new:
            assert (
                await flow.post(f"{AUTH}/register", json=registration("second", "new@example.com"))
            ).status_code == 202

        # One write of the same size either way: the new account, or the reservation of its username.
        assert any(statement.split()[0] == "INSERT" for statement in known), known  # the count saw them
        assert [statement.split()[0] for statement in known] == [statement.split()[0] for statement in new]
        assert await flow.kinds("known@example.com") == [EmailKind.SIGNUP_ATTEMPT]
        assert await flow.kinds("new@example.com") == [EmailKind.VERIFY_EMAIL]


class TestSquattedAddress:
    """Someone registered the victim's address first; the victim can still make the account theirs."""

    async def squat(self, flow: Flow) -> tuple[Account, Tokens]:
        squatter = await flow.register("squatter", "victim@example.com")
        tokens = await login(flow.client, squatter)
        named = await flow.client.patch(ME, json={"full_name": "Victim (official)"}, headers=tokens.headers)
        assert named.status_code == 200, named.text
        return squatter, tokens

    async def assert_claimed(self, flow: Flow, squatter: Account, squatter_tokens: Tokens) -> Tokens:
        assert (await flow.client.get(ME, headers=squatter_tokens.headers)).status_code == 401
        refreshed = await flow.client.post(f"{AUTH}/refresh", json={"refresh_token": squatter_tokens.refresh})
        assert refreshed.status_code == 401
        stale = await flow.client.post(
            f"{AUTH}/login", data={"username": squatter.email, "password": squatter.password}
        )
        assert_problem(stale, 401, "invalid_credentials")
        owner = await login(flow.client, Account(squatter.id, squatter.email, squatter.username, NEW_PASSWORD))
        me = (await flow.client.get(ME, headers=owner.headers)).json()
        assert (me["id"], me["is_verified"], me["full_name"]) == (squatter.id, True, None)
        assert (await publish(flow.client, owner)).status_code == 201
        return owner

    async def test_the_owner_registering_gets_a_link_that_claims_the_account(self, flow: Flow) -> None:
        squatter, squatter_tokens = await self.squat(flow)

        response = await flow.post(
            f"{AUTH}/register",
            json={"email": "victim@example.com", "username": "rightful", "password": OWNER_PASSWORD},
        )

        assert response.status_code == 202
        notice = flow.last_mail("victim@example.com", SIGNUP_ATTEMPT_SUBJECT)
        token = notice.token(RESET_PAGE)
        # Changing the password does not spoil the owner's link: the squatter cannot keep it from them.
        changed = await flow.post(
            f"{AUTH}/password-change",
            json={"current_password": squatter.password, "new_password": "Amber-willow-canyon-18"},
            headers=squatter_tokens.headers,
        )
        assert changed.status_code == 204, changed.text

        claimed = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))

        assert claimed.status_code == 204, claimed.text
        owner = await self.assert_claimed(flow, squatter, squatter_tokens)
        # The username the owner asked for was kept for this account, and for no one else.
        taken = await flow.post(f"{AUTH}/register", json=registration("rightful", "someone@example.com"))
        assert_problem(taken, 409, "username_taken")
        renamed = await flow.client.patch(ME, json={"username": "rightful"}, headers=owner.headers)
        assert renamed.status_code == 200, renamed.text
        # The link works once.
        again = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token, "Amber-willow-canyon-18"))
        assert_problem(again, 400, "invalid_token")

    async def test_a_password_reset_claims_the_account(self, flow: Flow) -> None:
        squatter, squatter_tokens = await self.squat(flow)
        token = await flow.reset_token(squatter)

        claimed = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))

        assert claimed.status_code == 204, claimed.text
        await self.assert_claimed(flow, squatter, squatter_tokens)

    async def test_a_confirmed_account_is_not_claimed_by_a_registration(self, flow: Flow) -> None:
        account = await create_user(flow.app, email="owner@example.com", username="owner")

        await flow.post(f"{AUTH}/register", json=registration("intruder", "owner@example.com"))

        notice = flow.last_mail("owner@example.com", SIGNUP_ATTEMPT_SUBJECT)
        for part in (notice.text, notice.html):
            assert "token=" not in part
            assert f"{PUBLIC_URL}/login" in part
        await login(flow.client, account)


class TestVerificationRequest:
    async def test_an_unverified_user_gets_a_new_link(self, flow: Flow) -> None:
        account = await create_user(flow.app, is_verified=False)
        tokens = await login(flow.client, account)

        response = await flow.post(f"{AUTH}/verify-email/request", headers=tokens.headers)

        assert response.status_code == 202, response.text
        assert isinstance(response.json()["detail"], str)
        assert await flow.kinds(account.email) == [EmailKind.VERIFY_EMAIL]
        (mail,) = flow.smtp.inbox(account.email)
        assert mail.subject == VERIFY_SUBJECT
        assert (await confirm(flow, Purpose.VERIFY_EMAIL, mail.token(VERIFY_PAGE))).status_code == 200
        assert (await flow.user(account.id)).is_verified

    async def test_a_verified_user_is_told_so_and_nothing_is_sent(self, flow: Flow) -> None:
        account = await create_user(flow.app, is_verified=True)
        tokens = await login(flow.client, account)

        response = await flow.post(f"{AUTH}/verify-email/request", headers=tokens.headers)

        assert_problem(response, 409, "already_verified")
        assert await flow.outbox() == []
        assert flow.smtp.received == []

    async def test_anonymous_callers_are_refused(self, flow: Flow) -> None:
        response = await flow.post(f"{AUTH}/verify-email/request")

        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert await flow.outbox() == []


# --- password reset ------------------------------------------------------------------------------
class TestPasswordReset:
    async def test_the_link_sets_a_new_password_and_ends_every_session(self, flow: Flow) -> None:
        account = await create_user(flow.app, username="resetter")
        sessions = [await login(flow.client, account) for _ in range(2)]

        requested = await flow.post(f"{AUTH}/password-reset/request", json={"email": account.email.upper()})

        assert requested.status_code == 202, requested.text
        assert await flow.kinds(account.email) == [EmailKind.PASSWORD_RESET]
        (mail,) = flow.smtp.received
        assert mail.rcpt_tos == [account.email]
        assert mail.subject == RESET_SUBJECT
        token = mail.token(RESET_PAGE)

        done = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))

        assert done.status_code == 204, done.text
        assert done.content == b""
        new = await login(flow.client, Account(account.id, account.email, account.username, NEW_PASSWORD))
        assert (await flow.client.get(ME, headers=new.headers)).status_code == 200
        old = await flow.client.post(f"{AUTH}/login", data={"username": account.email, "password": account.password})
        assert_problem(old, 401, "invalid_credentials")
        for tokens in sessions:
            assert (await flow.client.get(ME, headers=tokens.headers)).status_code == 401
            refreshed = await flow.client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh})
            assert refreshed.status_code == 401
        notice = flow.last_mail(account.email, CHANGED_SUBJECT)
        assert "token=" not in notice.text
        assert await flow.kinds(account.email) == [EmailKind.PASSWORD_RESET, EmailKind.PASSWORD_CHANGED]

        again = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token, "Amber-willow-canyon-18"))

        assert_problem(again, 400, "invalid_token")
        await login(flow.client, Account(account.id, account.email, account.username, NEW_PASSWORD))

    async def test_known_and_unknown_addresses_get_the_same_answer_and_one_email_each(self, flow: Flow) -> None:
        account = await create_user(flow.app, email="known@example.com")

        known = await flow.post(f"{AUTH}/password-reset/request", json={"email": "known@example.com"})
        unknown = await flow.post(f"{AUTH}/password-reset/request", json={"email": "Nobody@Example.com"})

        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        rows = await flow.outbox()
        assert [(row.kind, row.to_address, row.user_id) for row in rows] == [
            (EmailKind.PASSWORD_RESET, "known@example.com", account.id),
            (EmailKind.RESET_NO_ACCOUNT, "nobody@example.com", None),
        ]
        (reset,) = flow.smtp.inbox("known@example.com")
        (no_account,) = flow.smtp.inbox("nobody@example.com")
        assert reset.subject == RESET_SUBJECT
        reset.token(RESET_PAGE)
        assert no_account.subject == NO_ACCOUNT_SUBJECT
        for part in (no_account.text, no_account.html):
            assert "token=" not in part
            assert f"{PUBLIC_URL}/signup" in part

    async def test_a_mismatched_confirmation_changes_nothing(self, flow: Flow) -> None:
        account = await create_user(flow.app)
        token = await flow.reset_token(account)

        response = await flow.post(
            f"{AUTH}/password-reset/confirm", json=reset_body(token, confirm="Quartz-meadow-bicycle-58")
        )

        assert_problem(response, 400, "passwords_do_not_match")
        await login(flow.client, account)
        assert (await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))).status_code == 204

    @pytest.mark.parametrize(
        "new_password",
        [
            pytest.param(lambda account: "short", id="too-short"),
            pytest.param(lambda account: "password123", id="common"),
            pytest.param(lambda account: "x" * 129, id="too-long"),
            pytest.param(lambda account: account.email, id="same-as-email"),
            pytest.param(lambda account: "letmein123", id="guessable"),
            pytest.param(lambda account: "Weakling1987!", id="built-from-username"),
        ],
    )
    async def test_a_weak_new_password_is_invalid_input(
        self, flow: Flow, new_password: Callable[[Account], str]
    ) -> None:
        account = await create_user(flow.app, email="weakling@example.com", username="weakling")
        token = await flow.reset_token(account)

        response = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token, new_password(account)))

        assert_problem(response, 422, "validation_error")
        await login(flow.client, account)
        assert await flow.kinds(account.email) == [EmailKind.PASSWORD_RESET]


class TestAccountLockNotice:
    async def wrong_passwords(self, flow: Flow, account: Account, count: int) -> list[int]:
        statuses = []
        for n in range(count):
            # A fresh address every few tries: the per-address limits are not what is tested here.
            transport = httpx.ASGITransport(app=flow.app, client=(f"198.51.100.{n // 4 + 1}", 51000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                response = await http.post(
                    f"{AUTH}/login", data={"username": account.email, "password": "Not-the-password-11"}
                )
            statuses.append(response.status_code)
        await flow.app.state.dispatcher.drain()
        return statuses

    async def test_the_owner_is_told_once_with_a_way_out(self, flow: Flow) -> None:
        account = await create_user(flow.app, email="target@example.com", username="target")

        statuses = await self.wrong_passwords(flow, account, 14)

        assert statuses == [401] * 10 + [429] * 4
        (notice,) = [mail for mail in flow.smtp.inbox(account.email) if mail.subject == LOCKED_SUBJECT]
        for part in (notice.text, notice.html):
            assert "target" in part
            assert f"{PUBLIC_URL}/forgot-password" in part
            assert "token=" not in part
            assert "Not-the-password-11" not in part

    async def test_a_password_reset_lifts_the_lock(self, flow: Flow) -> None:
        account = await create_user(flow.app, email="target@example.com", username="target")
        assert (await self.wrong_passwords(flow, account, 11))[-1] == 429
        token = await flow.reset_token(account)

        done = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))
        signed_in = await flow.client.post(f"{AUTH}/login", data={"username": account.email, "password": NEW_PASSWORD})

        assert done.status_code == 204, done.text
        assert signed_in.status_code == 200, signed_in.text


class TestPasswordChangeNotice:
    async def test_changing_the_password_sends_the_notice(self, flow: Flow) -> None:
        account = await create_user(flow.app)
        tokens = await login(flow.client, account)

        response = await flow.post(
            f"{AUTH}/password-change",
            json={"current_password": account.password, "new_password": NEW_PASSWORD},
            headers=tokens.headers,
        )

        assert response.status_code == 204, response.text
        assert await flow.kinds(account.email) == [EmailKind.PASSWORD_CHANGED]
        (mail,) = flow.smtp.received
        assert mail.rcpt_tos == [account.email]
        assert mail.subject == CHANGED_SUBJECT
        assert f"{PUBLIC_URL}/forgot-password" in mail.text
        assert "token=" not in mail.text

    async def test_a_refused_change_sends_nothing(self, flow: Flow) -> None:
        account = await create_user(flow.app)
        tokens = await login(flow.client, account)

        response = await flow.post(
            f"{AUTH}/password-change",
            json={"current_password": "Not-the-password-11", "new_password": NEW_PASSWORD},
            headers=tokens.headers,
        )

        assert_problem(response, 400, "invalid_credentials")
        assert await flow.outbox() == []
        assert flow.smtp.received == []


# --- bad tokens ----------------------------------------------------------------------------------
BOTH = pytest.mark.parametrize("purpose", [Purpose.VERIFY_EMAIL, Purpose.PASSWORD_RESET], ids=["verify", "reset"])


class TestBadTokens:
    @BOTH
    @pytest.mark.parametrize("part", ["payload", "timestamp", "signature"])
    async def test_a_tampered_token_is_invalid(self, flow: Flow, purpose: Purpose, part: str) -> None:
        account, token = await issue(flow, purpose)

        response = await confirm(flow, purpose, flip(token, part))

        assert_problem(response, 400, "invalid_token")
        await assert_token_did_nothing(flow, purpose, account)

    @pytest.mark.parametrize(
        ("purpose", "after", "status", "code"),
        [
            (Purpose.VERIFY_EMAIL, timedelta(hours=47, minutes=59), 200, None),
            (Purpose.VERIFY_EMAIL, timedelta(hours=48, minutes=1), 400, "expired_token"),
            (Purpose.PASSWORD_RESET, timedelta(minutes=29), 204, None),
            (Purpose.PASSWORD_RESET, timedelta(minutes=31), 400, "expired_token"),
        ],
        ids=["verify-in-time", "verify-expired", "reset-in-time", "reset-expired"],
    )
    async def test_tokens_expire(
        self,
        flow: Flow,
        clock: time_machine.Traveller,
        purpose: Purpose,
        after: timedelta,
        status: int,
        code: str | None,
    ) -> None:
        account, token = await issue(flow, purpose)
        clock.shift(after)

        response = await confirm(flow, purpose, token)

        if code is None:
            assert response.status_code == status, response.text
        else:
            assert_problem(response, status, code)
            await assert_token_did_nothing(flow, purpose, account)

    @BOTH
    async def test_a_token_of_the_other_purpose_is_invalid(self, flow: Flow, purpose: Purpose) -> None:
        account = await flow.register("twofold")
        verify = flow.last_mail(account.email, VERIFY_SUBJECT).token(VERIFY_PAGE)
        reset = await flow.reset_token(account)
        other = reset if purpose is Purpose.VERIFY_EMAIL else verify

        response = await confirm(flow, purpose, other)

        assert_problem(response, 400, "invalid_token")
        await assert_token_did_nothing(flow, purpose, account)

    @BOTH
    async def test_the_purposes_use_different_salts(self, flow: Flow, purpose: Purpose) -> None:
        """Even a payload that fits the endpoint is refused when it was signed for the other purpose."""
        account = await flow.register("salted")
        settings: Settings = flow.app.state.settings
        user = await flow.user(account.id)
        if purpose is Purpose.VERIFY_EMAIL:
            forged = email_tokens.make(settings, Purpose.PASSWORD_RESET, user_id=account.id, value=account.email)
        else:
            fingerprint = email_tokens.password_fingerprint(settings, user.hashed_password)
            forged = email_tokens.make(settings, Purpose.VERIFY_EMAIL, user_id=account.id, value=fingerprint)

        response = await confirm(flow, purpose, forged)

        assert_problem(response, 400, "invalid_token")
        await assert_token_did_nothing(flow, purpose, account)

    async def test_a_reset_token_works_once(self, flow: Flow) -> None:
        account, token = await issue(flow, Purpose.PASSWORD_RESET)
        assert (await confirm(flow, Purpose.PASSWORD_RESET, token)).status_code == 204

        again = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token, "Amber-willow-canyon-18"))

        assert_problem(again, 400, "invalid_token")
        await login(flow.client, Account(account.id, account.email, account.username, NEW_PASSWORD))

    async def test_a_reset_token_dies_when_the_password_changes_another_way(self, flow: Flow) -> None:
        # A confirmed account's link is bound to its password (an unconfirmed one's to its address:
        # see TestSquattedAddress).
        account = await create_user(flow.app, username="holder")
        token = await flow.reset_token(account)
        tokens = await login(flow.client, account)
        changed = await flow.post(
            f"{AUTH}/password-change",
            json={"current_password": account.password, "new_password": "Amber-willow-canyon-18"},
            headers=tokens.headers,
        )
        assert changed.status_code == 204

        assert_problem(await confirm(flow, Purpose.PASSWORD_RESET, token), 400, "invalid_token")

    async def test_a_verification_token_for_a_former_address_is_invalid(self, flow: Flow) -> None:
        account, token = await issue(flow, Purpose.VERIFY_EMAIL)
        async with flow.app.state.database.session() as session:
            user = await session.get(User, account.id)
            assert user is not None
            user.email = "moved@example.com"
            session.add(user)
            await session.commit()

        response = await confirm(flow, Purpose.VERIFY_EMAIL, token)

        assert_problem(response, 400, "invalid_token")
        assert not (await flow.user(account.id)).is_verified

    @BOTH
    @pytest.mark.parametrize(
        "forge",
        [
            pytest.param(lambda settings, purpose: "garbage", id="garbage"),
            pytest.param(lambda settings, purpose: "a.b.c", id="three-dots"),
            pytest.param(lambda settings, purpose: "." * 40, id="dots"),
            pytest.param(lambda settings, purpose: "x" * 512, id="longest"),
            pytest.param(
                lambda settings, purpose: email_tokens.make(settings, purpose, user_id=987654, value="x@example.com"),
                id="unknown-user",
            ),
            pytest.param(
                lambda settings, purpose: email_tokens._serializer(settings, purpose).dumps({"u": "1", "v": 2}),
                id="signed-but-malformed",
            ),
            pytest.param(
                lambda settings, purpose: email_tokens._serializer(settings, purpose).dumps(["not", "a", "dict"]),
                id="signed-list",
            ),
        ],
    )
    async def test_garbage_is_invalid(
        self, flow: Flow, purpose: Purpose, forge: Callable[[Settings, Purpose], str]
    ) -> None:
        account = await flow.register("target")

        response = await confirm(flow, purpose, forge(flow.app.state.settings, purpose))

        assert_problem(response, 400, "invalid_token")
        await assert_token_did_nothing(flow, purpose, account)

    @BOTH
    @pytest.mark.parametrize("token", ["", "x" * 513], ids=["empty", "too-long"])
    async def test_a_missing_token_is_invalid_input(self, flow: Flow, purpose: Purpose, token: str) -> None:
        response = await confirm(flow, purpose, token)

        body = assert_problem(response, 422, "validation_error")
        assert isinstance(body["errors"], list)
        assert ["body", "token"] in [error["loc"] for error in body["errors"]]


# --- throttle ------------------------------------------------------------------------------------
@dataclass
class Sender:
    """Asks for one throttled email to `address` through the API, as a user would."""

    flow: Flow
    address: str
    send: Callable[[Sender], Awaitable[httpx.Response]]
    tokens: Tokens | None = None

    async def __call__(self) -> httpx.Response:
        return await self.send(self)


async def resend_verification(sender: Sender) -> httpx.Response:
    assert sender.tokens is not None
    return await sender.flow.post(f"{AUTH}/verify-email/request", headers=sender.tokens.headers)


async def request_reset(sender: Sender) -> httpx.Response:
    return await sender.flow.post(f"{AUTH}/password-reset/request", json={"email": sender.address})


THROTTLED = pytest.mark.parametrize(
    ("kind", "send", "has_account"),
    [
        (EmailKind.VERIFY_EMAIL, resend_verification, True),
        (EmailKind.PASSWORD_RESET, request_reset, True),
        (EmailKind.RESET_NO_ACCOUNT, request_reset, False),
    ],
    ids=["verification", "reset", "reset-no-account"],
)


class TestThrottle:
    @THROTTLED
    async def test_a_fourth_email_in_an_hour_is_answered_but_not_sent(
        self,
        flow: Flow,
        clock: time_machine.Traveller,
        kind: EmailKind,
        send: Callable[[Sender], Awaitable[httpx.Response]],
        has_account: bool,
    ) -> None:
        address = "busy@example.com"
        sender = Sender(flow, address, send)
        account = await create_user(flow.app, email=address, is_verified=False) if has_account else None
        if account is not None:
            sender.tokens = await login(flow.client, account)
        answers = [await sender() for _ in range(3)]
        assert await flow.kinds(address) == [kind] * 3
        assert len(flow.smtp.inbox(address)) == 3

        fourth = await sender()

        assert fourth.status_code == 202
        assert {response.json()["detail"] for response in [*answers, fourth]} == {fourth.json()["detail"]}
        assert await flow.kinds(address) == [kind] * 3
        assert len(flow.smtp.inbox(address)) == 3

        clock.shift(timedelta(hours=1, minutes=1))
        if account is not None:
            sender.tokens = await login(flow.client, account)
        later = await sender()

        assert later.status_code == 202
        assert await flow.kinds(address) == [kind] * 4
        assert len(flow.smtp.inbox(address)) == 4

    async def test_the_limit_is_per_address(self, flow: Flow) -> None:
        for _ in range(4):
            await flow.post(f"{AUTH}/password-reset/request", json={"email": "first@example.com"})

        await flow.post(f"{AUTH}/password-reset/request", json={"email": "second@example.com"})

        assert len(await flow.kinds("first@example.com")) == 3
        assert await flow.kinds("second@example.com") == [EmailKind.RESET_NO_ACCOUNT]

    async def test_the_limit_counts_registration_emails_too(self, flow: Flow) -> None:
        await flow.register("counted")
        for n in range(2):  # each with its own username: the first reserves its own
            await flow.post(f"{AUTH}/register", json=registration(f"copycat_{n}", "counted@example.com"))

        await flow.post(f"{AUTH}/password-reset/request", json={"email": "counted@example.com"})

        assert await flow.kinds("counted@example.com") == [
            EmailKind.VERIFY_EMAIL,
            EmailKind.SIGNUP_ATTEMPT,
            EmailKind.SIGNUP_ATTEMPT,
        ]

    async def test_security_notices_are_never_held_back(self, flow: Flow) -> None:
        account = await create_user(flow.app)
        token = await flow.reset_token(account)
        for _ in range(3):
            await flow.post(f"{AUTH}/password-reset/request", json={"email": account.email})

        done = await flow.post(f"{AUTH}/password-reset/confirm", json=reset_body(token))

        assert done.status_code == 204, done.text
        assert (await flow.kinds(account.email)).count(EmailKind.PASSWORD_CHANGED) == 1
        flow.last_mail(account.email, CHANGED_SUBJECT)


# --- where the token goes, and where it never does ---------------------------------------------
class TestTokenExposure:
    @BOTH
    async def test_the_token_appears_only_in_the_query_string_of_a_public_url_page(
        self, flow: Flow, purpose: Purpose
    ) -> None:
        account, token = await issue(flow, purpose)
        page = VERIFY_PAGE if purpose is Purpose.VERIFY_EMAIL else RESET_PAGE
        link = f"{PUBLIC_URL}{page}?token={token}"
        (mail,) = [m for m in flow.smtp.inbox(account.email) if token in m.text]

        for part in (mail.text, mail.html):
            assert part.count(token) == part.count(link) >= 1
            for found in LINK.findall(part):
                split = urlsplit(found)
                assert f"{split.scheme}://{split.netloc}" == PUBLIC_URL
                assert token not in split.path
                assert token not in (split.fragment or "")
        for name, value in mail.message.items():
            assert token not in str(value), name
        page_response = await flow.client.get(page, params={"token": token})
        assert page_response.status_code == 200
        assert page_response.headers["content-type"].startswith("text/html")

    async def test_the_outbox_never_stores_a_token(self, flow: Flow) -> None:
        account = await flow.register("stored")
        tokens = [
            flow.last_mail(account.email, VERIFY_SUBJECT).token(VERIFY_PAGE),
            await flow.reset_token(account),
        ]
        async with flow.app.state.database.session() as session:
            rows = (await session.exec(text("SELECT * FROM email_outbox"))).all()

        assert len(rows) == 2
        for row in rows:
            for value in row:
                for token in tokens:
                    assert token not in str(value)
                    assert token.rsplit(".", 1)[-1] not in str(value)  # not even its signature
