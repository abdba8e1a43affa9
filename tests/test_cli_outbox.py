"""`keel outbox`: listing pending and failed emails, retrying a failed one; production refuses file mail."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from keel import cli
from keel.core.config import ConfigError, Settings, get_settings, load_settings
from keel.core.db import Database
from keel.models import EmailKind, EmailOutbox, OutboxStatus, utcnow

GOOD_SECRET = "0123456789abcdef0123456789abcdef-a-real-random-key"
POSTGRES_URL = "postgresql+asyncpg://keel@db.internal:5432/keel"
SMTP_ERROR = "SMTPRecipientsRefused: {'ann@example.com': (550, b'5.1.1 mailbox unavailable')}"

pytestmark = pytest.mark.usefixtures("isolated_env")


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, *args: str, **env: str) -> Result:
        get_settings.cache_clear()
        environment = {"KEEL_DATA_DIR": str(self.data_dir), "KEEL_LOG_LEVEL": "WARNING", **env}
        return CliRunner().invoke(cli.app, list(args), env=environment)

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, log_level="WARNING")

    def add(self, **values: Any) -> int:
        async def insert() -> int:
            database = Database(self.settings)
            try:
                async with database.session() as session:
                    row = EmailOutbox(**values)
                    session.add(row)
                    await session.commit()
                    assert row.id is not None
                    return row.id
            finally:
                await database.dispose()

        return asyncio.run(insert())

    def row(self, outbox_id: int) -> EmailOutbox | None:
        async def fetch() -> EmailOutbox | None:
            database = Database(self.settings)
            try:
                async with database.session() as session:
                    return await session.get(EmailOutbox, outbox_id)
            finally:
                await database.dispose()

        return asyncio.run(fetch())


@pytest.fixture
def keel(tmp_path: Path) -> Cli:
    runner = Cli(tmp_path / "data")
    migrated = runner("migrate")
    assert migrated.exit_code == 0, migrated.output
    return runner


def failed_row(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": EmailKind.VERIFY_EMAIL,
        "to_address": "ann@example.com",
        "status": OutboxStatus.FAILED,
        "attempts": 6,
        "last_error": SMTP_ERROR,
        **overrides,
    }


class TestList:
    def test_an_empty_outbox_says_so(self, keel: Cli) -> None:
        result = keel("outbox")

        assert result.exit_code == 0, result.output
        assert "outbox is empty" in result.stdout

    def test_sent_emails_do_not_count(self, keel: Cli) -> None:
        keel.add(**failed_row(status=OutboxStatus.SENT, attempts=1, last_error=None))

        result = keel("outbox")

        assert result.exit_code == 0, result.output
        assert "outbox is empty" in result.stdout

    def test_a_failed_email_is_listed_with_its_last_error(self, keel: Cli) -> None:
        outbox_id = keel.add(**failed_row())

        result = keel("outbox")

        assert result.exit_code == 0, result.output
        (line,) = result.stdout.strip().splitlines()
        fields = line.split("\t")
        assert fields[0] == str(outbox_id)
        assert fields[1:4] == ["failed", "verify_email", "ann@example.com"]
        assert fields[4] == "attempts=6"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fields[5])
        assert fields[6] == SMTP_ERROR

    def test_pending_and_claimed_emails_are_listed_but_not_sent_ones(self, keel: Cli) -> None:
        pending = keel.add(kind=EmailKind.PASSWORD_RESET, to_address="bob@example.com")
        sending = keel.add(
            kind=EmailKind.PASSWORD_CHANGED,
            to_address="cy@example.com",
            status=OutboxStatus.SENDING,
            attempts=1,
            claimed_at=utcnow(),
        )
        keel.add(**failed_row(status=OutboxStatus.SENT, to_address="done@example.com", last_error=None))

        result = keel("outbox")

        assert result.exit_code == 0, result.output
        lines = result.stdout.strip().splitlines()
        assert [line.split("\t")[:4] for line in lines] == [
            [str(pending), "pending", "password_reset", "bob@example.com"],
            [str(sending), "sending", "password_changed", "cy@example.com"],
        ]
        assert "done@example.com" not in result.stdout

    def test_the_limit_option_caps_the_list(self, keel: Cli) -> None:
        ids = [keel.add(**failed_row(to_address=f"n{n}@example.com")) for n in range(3)]

        result = keel("outbox", "--limit", "2")

        assert result.exit_code == 0, result.output
        assert [line.split("\t")[0] for line in result.stdout.strip().splitlines()] == [str(i) for i in ids[:2]]


class TestRetry:
    def test_a_failed_email_goes_back_to_pending(self, keel: Cli) -> None:
        outbox_id = keel.add(
            **failed_row(next_attempt_at=utcnow() + timedelta(hours=1), claimed_at=utcnow() - timedelta(hours=1))
        )
        before = utcnow()

        result = keel("outbox", "retry", str(outbox_id))

        assert result.exit_code == 0, result.output
        assert f"email {outbox_id} queued again" in result.stdout
        row = keel.row(outbox_id)
        assert row is not None
        assert row.status is OutboxStatus.PENDING
        assert row.attempts == 0
        assert row.claimed_at is None
        assert before - timedelta(seconds=1) <= row.next_attempt_at <= utcnow()
        listed = keel("outbox")
        assert listed.stdout.split("\t")[:2] == [str(outbox_id), "pending"]

    def test_an_unknown_id_exits_1(self, keel: Cli) -> None:
        result = keel("outbox", "retry", "4242")

        assert result.exit_code == 1
        assert "no failed email with id 4242" in result.stderr

    @pytest.mark.parametrize("status", [OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.SENT])
    def test_only_a_failed_email_can_be_retried(self, keel: Cli, status: OutboxStatus) -> None:
        outbox_id = keel.add(**failed_row(status=status, attempts=2))

        result = keel("outbox", "retry", str(outbox_id))

        assert result.exit_code == 1
        row = keel.row(outbox_id)
        assert row is not None
        assert (row.status, row.attempts) == (status, 2)

    def test_an_id_that_is_not_a_number_is_a_usage_error(self, keel: Cli) -> None:
        assert keel("outbox", "retry", "seven").exit_code == 2


class TestProductionMail:
    def production(self, tmp_path: Path, **overrides: object) -> dict[str, object]:
        return {
            "environment": "production",
            "data_dir": tmp_path / "data",
            "secret_key": GOOD_SECRET,
            "database_url": POSTGRES_URL,
            **overrides,
        }

    def test_production_without_an_smtp_host_is_refused_in_one_line(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as refused:
            load_settings(**self.production(tmp_path))

        message = str(refused.value)
        assert "KEEL_SMTP_HOST" in message
        assert "\n" not in message

    def test_file_mail_can_be_allowed_explicitly(self, tmp_path: Path) -> None:
        settings = load_settings(**self.production(tmp_path, allow_file_mail_in_production=True))

        assert settings.smtp_host is None
        assert settings.is_production

    def test_an_smtp_host_satisfies_production(self, tmp_path: Path) -> None:
        settings = load_settings(**self.production(tmp_path, smtp_host="smtp.internal"))

        assert settings.smtp_host == "smtp.internal"

    def test_development_writes_files_without_asking(self, tmp_path: Path) -> None:
        settings = load_settings(data_dir=tmp_path / "data")

        assert settings.smtp_host is None
        assert settings.mail_dir == tmp_path / "data" / "mail"

    def test_the_cli_refuses_with_one_line_naming_the_setting(self, tmp_path: Path) -> None:
        runner = Cli(tmp_path / "data")

        result = runner(
            "outbox", KEEL_ENVIRONMENT="production", KEEL_SECRET_KEY=GOOD_SECRET, KEEL_DATABASE_URL=POSTGRES_URL
        )

        assert result.exit_code == 2
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("keel: configuration error: ")
        assert "KEEL_SMTP_HOST" in line
