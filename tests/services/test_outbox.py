"""Outbox delivery: claims, retries with backoff, what the relay picks, transports, the in-process dispatcher."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import time_machine
from fastapi import FastAPI
from sqlmodel import col, delete, select

from keel.core.config import Settings
from keel.core.mail import FileTransport, Mail, MailError, SmtpTransport, Transport, to_message, transport_for
from keel.models import EmailKind, EmailOutbox, OutboxStatus, User, utcnow
from keel.services import outbox as outbox_service
from keel.tasks.inprocess import InProcessDispatcher
from tests.factories import Account, create_user, login

AUTH = "/api/v1/auth"
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
STRONG_PASSWORD = "Velvet-harbor-lantern-93"


class FakeTransport:
    """Records what it is asked to send; raises `MailError` (or anything) instead when told to."""

    def __init__(self, error: Exception | None = None, delay: float = 0.0) -> None:
        self.error = error
        self.delay = delay
        self.calls = 0
        self.sent: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.sent.append(mail)


# --- helpers -------------------------------------------------------------------------------------
async def add_row(app: FastAPI, **values: Any) -> int:
    async with app.state.database.session() as session:
        row = EmailOutbox(**{"kind": EmailKind.PASSWORD_CHANGED, "to_address": "nobody@example.com", **values})
        session.add(row)
        await session.commit()
        assert row.id is not None
        return row.id


async def add_user_row(app: FastAPI, kind: EmailKind = EmailKind.VERIFY_EMAIL, **values: Any) -> tuple[Account, int]:
    account = await create_user(app, is_verified=False)
    return account, await add_row(app, kind=kind, to_address=account.email, user_id=account.id, **values)


async def get_row(app: FastAPI, outbox_id: int) -> EmailOutbox | None:
    async with app.state.database.session() as session:
        row: EmailOutbox | None = await session.get(EmailOutbox, outbox_id)
        return row


async def the_row(app: FastAPI, outbox_id: int) -> EmailOutbox:
    row = await get_row(app, outbox_id)
    assert row is not None
    return row


async def deliver(
    app: FastAPI, transport: Transport, outbox_id: int, settings: Settings | None = None
) -> OutboxStatus | None:
    async with app.state.database.session() as session:
        return await outbox_service.deliver(
            session=session, settings=settings or app.state.settings, transport=transport, outbox_id=outbox_id
        )


async def due(app: FastAPI, limit: int = 100) -> list[int]:
    async with app.state.database.session() as session:
        return await outbox_service.due_ids(session=session, settings=app.state.settings, limit=limit)


def read_eml(path: Path) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    assert body is not None
    assert body.get_content_type() == f"text/{subtype}"
    return str(body.get_content())


def eml_files(settings: Settings) -> list[Path]:
    return sorted(settings.mail_dir.glob("*.eml")) if settings.mail_dir.exists() else []


def plain_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"environment": "test", "data_dir": tmp_path, "secret_key": TEST_SECRET, **overrides}
    return Settings(**values)


# --- claiming ------------------------------------------------------------------------------------
class TestClaim:
    async def test_a_row_is_sent_once_however_often_it_is_delivered(self, app: FastAPI) -> None:
        account, outbox_id = await add_user_row(app)
        transport = FakeTransport()

        first = await deliver(app, transport, outbox_id)
        second = await deliver(app, transport, outbox_id)

        assert first is OutboxStatus.SENT
        assert second is None
        (mail,) = transport.sent
        assert mail.to == account.email
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.SENT
        assert row.attempts == 1
        assert row.sent_at is not None
        assert row.last_error is None

    async def test_two_workers_at_once_send_one_email(self, app: FastAPI) -> None:
        _, outbox_id = await add_user_row(app)
        transport = FakeTransport(delay=0.05)

        results = await asyncio.gather(*(deliver(app, transport, outbox_id) for _ in range(3)))

        assert sorted(results, key=str) == sorted([OutboxStatus.SENT, None, None], key=str)
        assert transport.calls == 1
        assert (await the_row(app, outbox_id)).attempts == 1

    async def test_a_row_claimed_by_another_worker_within_the_lease_is_left_alone(self, app: FastAPI) -> None:
        lease = app.state.settings.outbox_claim_lease_seconds
        claimed_at = utcnow() - timedelta(seconds=lease - 10)
        _, outbox_id = await add_user_row(app, status=OutboxStatus.SENDING, claimed_at=claimed_at, attempts=1)
        transport = FakeTransport()

        assert await deliver(app, transport, outbox_id) is None

        assert transport.calls == 0
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.SENDING
        assert row.attempts == 1
        assert row.claimed_at == claimed_at

    async def test_a_claim_older_than_the_lease_is_taken_over(self, app: FastAPI) -> None:
        lease = app.state.settings.outbox_claim_lease_seconds
        claimed_at = utcnow() - timedelta(seconds=lease + 10)
        _, outbox_id = await add_user_row(app, status=OutboxStatus.SENDING, claimed_at=claimed_at, attempts=1)
        transport = FakeTransport()

        assert await deliver(app, transport, outbox_id) is OutboxStatus.SENT

        assert len(transport.sent) == 1
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.SENT
        assert row.attempts == 2
        assert row.claimed_at is not None
        assert row.claimed_at > claimed_at

    @pytest.mark.parametrize("status", [OutboxStatus.SENT, OutboxStatus.FAILED])
    async def test_finished_rows_are_not_sent_again(self, app: FastAPI, status: OutboxStatus) -> None:
        _, outbox_id = await add_user_row(app, status=status, attempts=1)
        transport = FakeTransport()

        assert await deliver(app, transport, outbox_id) is None

        assert transport.calls == 0
        assert (await the_row(app, outbox_id)).status is status

    async def test_an_unknown_id_is_nothing_to_do(self, app: FastAPI) -> None:
        transport = FakeTransport()

        assert await deliver(app, transport, 424242) is None
        assert transport.calls == 0


class CrashAfterSending:
    """Hands each message to `transport`, then dies as a worker killed before its `sent` commit would."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def send(self, mail: Mail) -> None:
        await self.transport.send(mail)
        raise WorkerKilled


class WorkerKilled(BaseException):
    """Not an Exception: nothing between the send and the commit may catch it."""


async def deliver_twice_crashing_after_the_first_send(
    app: FastAPI, transport: Transport, outbox_id: int, clock: time_machine.Traveller
) -> None:
    with pytest.raises(WorkerKilled):
        await deliver(app, CrashAfterSending(transport), outbox_id)
    assert (await the_row(app, outbox_id)).status is OutboxStatus.SENDING
    # The claim runs out, so the relay hands the row to another worker, which sends it again.
    clock.shift(timedelta(seconds=app.state.settings.outbox_claim_lease_seconds + 1))
    assert outbox_id in await due(app)
    assert await deliver(app, transport, outbox_id) is OutboxStatus.SENT
    assert (await the_row(app, outbox_id)).attempts == 2


class TestRedelivery:
    """SMTP is at least once: a worker dying between the server's 250 and the `sent` commit means the
    message goes out again. The second copy is the same message: same Message-ID, same link."""

    @pytest.mark.parametrize(
        "kind", [EmailKind.VERIFY_EMAIL, EmailKind.PASSWORD_RESET, EmailKind.PASSWORD_CHANGED, EmailKind.SIGNUP_ATTEMPT]
    )
    async def test_a_resent_email_has_the_same_message_id_and_link(
        self, app: FastAPI, clock: time_machine.Traveller, kind: EmailKind
    ) -> None:
        _, outbox_id = await add_user_row(app, kind=kind)
        transport = FakeTransport()

        await deliver_twice_crashing_after_the_first_send(app, transport, outbox_id, clock)

        first, second = transport.sent
        sender = app.state.settings.mail_from
        assert to_message(first, sender)["Message-ID"] == to_message(second, sender)["Message-ID"]
        assert (first.link, first.text, first.html) == (second.link, second.text, second.html)

    async def test_the_message_id_names_the_row_and_the_public_host(self, app: FastAPI) -> None:
        _, outbox_id = await add_user_row(app)
        transport = FakeTransport()

        await deliver(app, transport, outbox_id)

        message_id = str(to_message(transport.sent[0], app.state.settings.mail_from)["Message-ID"])
        host = urlsplit(app.state.settings.public_url).hostname
        assert re.fullmatch(rf"<outbox-{outbox_id}\.[0-9A-Za-z]+@{re.escape(str(host))}>", message_id), message_id

    async def test_different_rows_have_different_message_ids(self, app: FastAPI) -> None:
        account = await create_user(app, is_verified=False)
        ids = [
            await add_row(app, kind=EmailKind.PASSWORD_CHANGED, to_address=account.email, user_id=account.id)
            for _ in range(3)
        ]
        transport = FakeTransport()

        for outbox_id in ids:
            await deliver(app, transport, outbox_id)

        sender = app.state.settings.mail_from
        assert len({str(to_message(mail, sender)["Message-ID"]) for mail in transport.sent}) == 3

    async def test_the_resent_link_still_works(
        self, app: FastAPI, client: httpx.AsyncClient, clock: time_machine.Traveller
    ) -> None:
        _, outbox_id = await add_user_row(app, kind=EmailKind.VERIFY_EMAIL)
        transport = FakeTransport()
        await deliver_twice_crashing_after_the_first_send(app, transport, outbox_id, clock)
        link = transport.sent[1].link
        assert link is not None

        response = await client.post(f"{AUTH}/verify-email/confirm", json={"token": link.split("token=", 1)[1]})

        assert response.status_code == 200, response.text
        assert response.json()["is_verified"] is True

    async def test_two_eml_files_of_one_resent_row_carry_the_same_message_id_and_link(
        self, app: FastAPI, settings: Settings, clock: time_machine.Traveller
    ) -> None:
        _, outbox_id = await add_user_row(app, kind=EmailKind.PASSWORD_RESET)
        transport = transport_for(settings)
        assert isinstance(transport, FileTransport)

        await deliver_twice_crashing_after_the_first_send(app, transport, outbox_id, clock)

        first, second = map(read_eml, eml_files(settings))
        assert first["Message-ID"] == second["Message-ID"]
        assert part(first, "plain") == part(second, "plain")
        assert "reset-password?token=" in part(first, "plain")


# --- failures and backoff ------------------------------------------------------------------------
class TestFailure:
    async def test_a_failure_goes_back_to_pending_with_the_error_and_a_later_time(self, app: FastAPI) -> None:
        _, outbox_id = await add_user_row(app)
        transport = FakeTransport(MailError("SMTPServerDisconnected: gone"))
        base = app.state.settings.outbox_retry_base_seconds
        before = utcnow()

        assert await deliver(app, transport, outbox_id) is OutboxStatus.PENDING

        after = utcnow()
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.PENDING
        assert row.attempts == 1
        assert row.last_error == "SMTPServerDisconnected: gone"
        assert row.sent_at is None
        assert before + timedelta(seconds=base / 2) <= row.next_attempt_at <= after + timedelta(seconds=base)

    async def test_a_later_success_clears_the_error(self, app: FastAPI) -> None:
        _, outbox_id = await add_user_row(app)
        await deliver(app, FakeTransport(MailError("try later")), outbox_id)
        transport = FakeTransport()

        assert await deliver(app, transport, outbox_id) is OutboxStatus.SENT

        row = await the_row(app, outbox_id)
        assert row.attempts == 2
        assert row.last_error is None
        assert len(transport.sent) == 1

    async def test_after_the_last_attempt_the_row_fails_and_keeps_the_error(self, app: FastAPI) -> None:
        settings = app.state.settings.model_copy(update={"outbox_max_attempts": 3})
        _, outbox_id = await add_user_row(app)
        transport = FakeTransport(MailError("550 mailbox unavailable"))

        results = [await deliver(app, transport, outbox_id, settings) for _ in range(4)]

        assert results == [OutboxStatus.PENDING, OutboxStatus.PENDING, OutboxStatus.FAILED, None]
        assert transport.calls == 3
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.FAILED
        assert row.attempts == 3
        assert row.last_error == "550 mailbox unavailable"

    async def test_a_long_error_is_cut_to_fit_the_column(self, app: FastAPI) -> None:
        _, outbox_id = await add_user_row(app)

        await deliver(app, FakeTransport(MailError("é" * 3000)), outbox_id)

        assert (await the_row(app, outbox_id)).last_error == "é" * 1000

    @pytest.mark.parametrize(
        ("attempts", "low", "high"),
        [
            (0, 2.5, 5),
            (1, 2.5, 5),
            (2, 5, 10),
            (3, 10, 20),
            (4, 20, 40),
            (5, 40, 80),
            (11, 1800, 3600),
            (40, 1800, 3600),
        ],
    )
    @pytest.mark.usefixtures("isolated_env")
    def test_backoff_doubles_with_jitter_up_to_an_hour(
        self, tmp_path: Path, attempts: int, low: float, high: float
    ) -> None:
        settings = plain_settings(tmp_path, outbox_retry_base_seconds=5.0)

        delays = [outbox_service.retry_delay(settings, attempts) for _ in range(300)]

        assert all(low <= delay <= high for delay in delays)
        assert max(delays) - min(delays) > (high - low) / 4  # jittered, not a fixed step
        assert max(delays) <= 3600


# --- what the relay picks up ---------------------------------------------------------------------
RowSpec = Callable[[Settings, datetime], dict[str, Any]]


def ago(seconds: float, now: datetime) -> datetime:
    return now - timedelta(seconds=seconds)


DUE_CASES: list[tuple[str, RowSpec, bool]] = [
    ("fresh-pending", lambda s, now: {}, False),
    (
        "pending-past-the-relay-threshold",
        lambda s, now: {"created_at": ago(s.outbox_relay_after_seconds + 5, now), "next_attempt_at": ago(65, now)},
        True,
    ),
    (
        "pending-under-the-relay-threshold",
        lambda s, now: {"created_at": ago(s.outbox_relay_after_seconds - 5, now), "next_attempt_at": ago(55, now)},
        False,
    ),
    ("retry-due", lambda s, now: {"attempts": 1, "next_attempt_at": ago(1, now)}, True),
    ("retry-waiting", lambda s, now: {"attempts": 1, "next_attempt_at": ago(-60, now)}, False),
    (
        "old-retry-waiting",
        lambda s, now: {"attempts": 2, "created_at": ago(3600, now), "next_attempt_at": ago(-60, now)},
        False,
    ),
    (
        "claimed-within-the-lease",
        lambda s, now: {
            "status": OutboxStatus.SENDING,
            "attempts": 1,
            "created_at": ago(3600, now),
            "claimed_at": ago(s.outbox_claim_lease_seconds - 5, now),
        },
        False,
    ),
    (
        "abandoned-claim",
        lambda s, now: {
            "status": OutboxStatus.SENDING,
            "attempts": 1,
            "claimed_at": ago(s.outbox_claim_lease_seconds + 5, now),
        },
        True,
    ),
    (
        "sent",
        lambda s, now: {"status": OutboxStatus.SENT, "attempts": 1, "created_at": ago(3600, now), "sent_at": now},
        False,
    ),
    (
        "failed",
        lambda s, now: {"status": OutboxStatus.FAILED, "attempts": 6, "created_at": ago(3600, now)},
        False,
    ),
]


class TestDueIds:
    @pytest.mark.parametrize(("spec", "expected"), [(s, e) for _, s, e in DUE_CASES], ids=[n for n, _, _ in DUE_CASES])
    async def test_which_rows_are_due(self, app: FastAPI, spec: RowSpec, expected: bool) -> None:
        outbox_id = await add_row(app, **spec(app.state.settings, utcnow()))

        assert (outbox_id in await due(app)) is expected

    async def test_due_rows_come_oldest_first_up_to_the_limit(self, app: FastAPI) -> None:
        ids = [await add_row(app, attempts=1, next_attempt_at=ago(10, utcnow())) for _ in range(3)]
        await add_row(app)  # fresh: not due

        assert await due(app) == ids
        assert await due(app, limit=2) == ids[:2]


# --- transports ----------------------------------------------------------------------------------
class TestFileTransport:
    async def test_each_message_is_one_eml_file_in_the_mail_folder(self, app: FastAPI, settings: Settings) -> None:
        account, first = await add_user_row(app, kind=EmailKind.VERIFY_EMAIL)
        second = await add_row(app, kind=EmailKind.RESET_NO_ACCOUNT, to_address="stranger@example.com")
        transport = transport_for(settings)
        assert isinstance(transport, FileTransport)

        for outbox_id in (first, second):
            assert await deliver(app, transport, outbox_id) is OutboxStatus.SENT

        files = eml_files(settings)
        assert len(files) == 2
        assert all(path.parent == settings.mail_dir for path in files)
        messages = {str(message["To"]): message for message in map(read_eml, files)}
        verify = messages[account.email]
        assert verify["Subject"] == "Confirm your email address"
        assert verify["From"] == settings.mail_from
        assert verify["Message-ID"]
        assert verify.get_content_type() == "multipart/alternative"
        link = f"{settings.public_url}/verify-email?token="
        assert link in part(verify, "plain")
        assert link in part(verify, "html")
        notice = messages["stranger@example.com"]
        assert notice["Subject"] == "Password reset requested"
        assert f"{settings.public_url}/signup" in part(notice, "plain")
        assert "token=" not in part(notice, "html")

    @pytest.mark.usefixtures("isolated_env")
    def test_smtp_is_chosen_when_a_host_is_set(self, tmp_path: Path) -> None:
        assert isinstance(transport_for(plain_settings(tmp_path, smtp_host="127.0.0.1")), SmtpTransport)
        assert isinstance(transport_for(plain_settings(tmp_path)), FileTransport)


class TestSmtpTransport:
    async def test_a_refused_connection_is_a_retryable_mail_error(self, app: FastAPI) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])  # closed again below: nothing listens there
        settings = app.state.settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none", "smtp_timeout_seconds": 2}
        )
        _, outbox_id = await add_user_row(app)

        assert await deliver(app, SmtpTransport(settings), outbox_id, settings) is OutboxStatus.PENDING

        row = await the_row(app, outbox_id)
        assert row.last_error is not None
        assert "ConnectionRefusedError" in row.last_error


# --- a recipient that is gone --------------------------------------------------------------------
class TestDeletedRecipient:
    async def test_an_email_for_a_user_deleted_before_delivery_goes_with_the_account(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        account, outbox_id = await add_user_row(app, kind=EmailKind.PASSWORD_CHANGED)
        tokens = await login(client, account)
        deleted = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": account.password}, headers=tokens.headers
        )
        assert deleted.status_code == 204, deleted.text
        transport = FakeTransport()

        result = await deliver(app, transport, outbox_id)

        # Deleting an account deletes the mail still queued for it: nothing is sent, nothing is kept.
        assert transport.calls == 0
        assert result is None
        assert await get_row(app, outbox_id) is None

    async def test_a_user_deleted_while_the_email_is_composed_does_not_crash_delivery(
        self, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account, outbox_id = await add_user_row(app, kind=EmailKind.PASSWORD_CHANGED)
        compose = outbox_service.compose

        async def compose_after_a_concurrent_delete(**kwargs: Any) -> Mail | None:
            # The account goes between the claim and the rendering, as a concurrent DELETE /users/me would.
            async with app.state.database.session() as session:
                await session.exec(delete(User).where(col(User.id) == account.id))
                await session.commit()
            return await compose(**kwargs)

        monkeypatch.setattr(outbox_service, "compose", compose_after_a_concurrent_delete)
        transport = FakeTransport()

        result = await deliver(app, transport, outbox_id)

        assert transport.calls == 0
        row = await get_row(app, outbox_id)
        assert row is None or (row.status, result) == (OutboxStatus.SENT, OutboxStatus.SENT)

    @pytest.mark.parametrize("kind", [EmailKind.VERIFY_EMAIL, EmailKind.PASSWORD_RESET, EmailKind.SIGNUP_ATTEMPT])
    async def test_a_row_without_its_account_is_settled_without_sending(self, app: FastAPI, kind: EmailKind) -> None:
        outbox_id = await add_row(app, kind=kind, to_address="gone@example.com", user_id=None)
        transport = FakeTransport()

        assert await deliver(app, transport, outbox_id) is OutboxStatus.SENT

        assert transport.calls == 0
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.SENT
        assert row.last_error == "recipient account no longer exists"
        assert await due(app) == []


# --- the in-process dispatcher -------------------------------------------------------------------
class TestInProcessDispatcher:
    async def test_an_email_is_delivered_after_the_request(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        body = {"email": "fresh@example.com", "username": "fresh", "password": STRONG_PASSWORD}
        response = await client.post(f"{AUTH}/register", json=body)
        assert response.status_code == 202, response.text

        await app.state.dispatcher.drain()

        async with app.state.database.session() as session:
            (row,) = await session.exec(select(EmailOutbox))
        assert row.kind is EmailKind.VERIFY_EMAIL
        assert row.status is OutboxStatus.SENT
        assert row.attempts == 1
        (path,) = eml_files(settings)
        assert read_eml(path)["To"] == "fresh@example.com"

    async def test_the_relay_sends_rows_left_pending(self, app: FastAPI, settings: Settings) -> None:
        stale = utcnow() - timedelta(seconds=settings.outbox_relay_after_seconds + 1)
        account, left = await add_user_row(app, created_at=stale, next_attempt_at=stale)
        _, fresh = await add_user_row(app)
        dispatcher: InProcessDispatcher = app.state.dispatcher

        assert await dispatcher.relay_once() == 1

        assert (await the_row(app, left)).status is OutboxStatus.SENT
        assert (await the_row(app, fresh)).status is OutboxStatus.PENDING
        (path,) = eml_files(settings)
        assert read_eml(path)["To"] == account.email
        assert await dispatcher.relay_once() == 0

    async def test_a_crashed_delivery_is_relayed_once_its_claim_expires(
        self, app: FastAPI, clock: time_machine.Traveller
    ) -> None:
        _, outbox_id = await add_user_row(app)
        settings: Settings = app.state.settings
        crashing = InProcessDispatcher(
            database=app.state.database, settings=settings, transport=FakeTransport(RuntimeError("worker died"))
        )
        await crashing.dispatch([outbox_id])
        await crashing.drain()
        assert (await the_row(app, outbox_id)).status is OutboxStatus.SENDING
        transport = FakeTransport()
        healthy = InProcessDispatcher(database=app.state.database, settings=settings, transport=transport)
        assert await healthy.relay_once() == 0

        clock.shift(timedelta(seconds=settings.outbox_claim_lease_seconds + 1))

        assert await healthy.relay_once() == 1
        assert len(transport.sent) == 1
        row = await the_row(app, outbox_id)
        assert row.status is OutboxStatus.SENT
        assert row.attempts == 2

    async def test_a_failed_attempt_is_relayed_after_its_backoff(
        self, app: FastAPI, clock: time_machine.Traveller
    ) -> None:
        _, outbox_id = await add_user_row(app)
        settings: Settings = app.state.settings
        await deliver(app, FakeTransport(MailError("421 try again later")), outbox_id)
        transport = FakeTransport()
        relay = InProcessDispatcher(database=app.state.database, settings=settings, transport=transport)
        assert await relay.relay_once() == 0

        clock.shift(timedelta(seconds=settings.outbox_retry_base_seconds + 1))

        assert await relay.relay_once() == 1
        assert len(transport.sent) == 1
        async with app.state.database.session() as session:
            statuses = list(await session.exec(select(EmailOutbox.status).where(col(EmailOutbox.id) == outbox_id)))
        assert statuses == [OutboxStatus.SENT]
