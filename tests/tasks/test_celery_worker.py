"""Email delivery through real `keel worker` processes, a real broker and a real SMTP server.

Each test starts an aiosmtpd sink in this process, then `keel serve` and `keel worker` as
subprocesses configured for Celery delivery with short outbox timings, and watches the outbox
table and the sink until what it expects has happened (always with a deadline). Every process a
test starts is stopped at its end, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlmodel import col, select

from keel.core.config import Settings
from keel.core.db import Database
from keel.models import EmailKind, EmailOutbox, OutboxStatus
from tests.conftest import TEST_SECRET, base_settings, reset_postgres, reset_redis
from tests.processes import PrivateRedis, ServerProcess, free_port

pytestmark = pytest.mark.slow

AUTH = "/api/v1/auth"
PASSWORD = "Velvet-harbor-lantern-93"
LINK = re.compile(r"/verify-email\?token=([A-Za-z0-9_.\-]+)")
# The outbox timings the processes run with (seconds), short so that the relay acts within a test.
RELAY_INTERVAL = 1
RELAY_AFTER = 2
CLAIM_LEASE = 3
MAX_ATTEMPTS = 3
DELIVERY_DEADLINE = 30.0

T = TypeVar("T")


# --- the SMTP sink -------------------------------------------------------------------------------
class SinkHandler:
    """An aiosmtpd handler that records messages; it can hold the first RCPT or refuse every one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.rcpt_calls = 0
        self.refused = 0
        self.refuse = False
        self.hold_first = False
        self.holding = threading.Event()  # set once the first RCPT is being held
        self.release = threading.Event()  # set by the test to let it go

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            self.rcpt_calls += 1
            first = self.rcpt_calls == 1
            if self.refuse:
                self.refused += 1
                return "554 5.7.1 Recipient refused by the test sink"
        if self.hold_first and first:
            self.holding.set()
            # Wait in a thread, so that the sink's loop still serves other connections. If the client
            # dies meanwhile, aiosmtpd cancels this coroutine when the connection is lost.
            await asyncio.to_thread(self.release.wait, 60.0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def received(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)


@dataclass
class Sink:
    port: int
    handler: SinkHandler


@pytest.fixture
def sink() -> Iterator[Sink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Sink(port=port, handler=handler)
    finally:
        handler.release.set()
        controller.stop()


# --- processes -------------------------------------------------------------------------------------
@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def _stop(started: Started, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; then kill whatever the process left in its group."""
    process = started.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # Each process leads its own group (start_new_session): a Celery pool child or beat process
    # left behind is still in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class Stack:
    """Everything a test runs: starts processes and stops them all at teardown."""

    tmp_path: Path
    postgres_url: str
    redis_url: str
    smtp_port: int
    broker_url: str
    started: list[Started] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return base_settings(self.tmp_path, database_url=self.postgres_url)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KEEL_DATABASE_URL": self.postgres_url,
            "KEEL_REDIS_URL": self.redis_url,
            "KEEL_SECRET_KEY": TEST_SECRET,
            "KEEL_DATA_DIR": str(self.tmp_path / "data"),
            "KEEL_ENVIRONMENT": "test",
            "KEEL_LOG_FORMAT": "json",
            "KEEL_EMAIL_DELIVERY": "celery",
            "KEEL_CELERY_BROKER_URL": self.broker_url,
            "KEEL_SMTP_HOST": "127.0.0.1",
            "KEEL_SMTP_PORT": str(self.smtp_port),
            "KEEL_SMTP_SECURITY": "none",
            # Shorter than the claim lease, as the settings require.
            "KEEL_SMTP_TIMEOUT_SECONDS": "2",
            "KEEL_OUTBOX_RELAY_INTERVAL_SECONDS": str(RELAY_INTERVAL),
            "KEEL_OUTBOX_RELAY_AFTER_SECONDS": str(RELAY_AFTER),
            "KEEL_OUTBOX_CLAIM_LEASE_SECONDS": str(CLAIM_LEASE),
            "KEEL_OUTBOX_RETRY_BASE_SECONDS": "0.5",
            "KEEL_OUTBOX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        }

    def start(self, name: str, args: list[str]) -> Started:
        log_path = self.tmp_path / f"{name}-{len(self.started)}.log"
        process = ServerProcess(args, env=self.env(), log_path=log_path).process
        started = Started(name=name, process=process, log_path=log_path)
        self.started.append(started)
        return started

    def serve(self) -> str:
        port = free_port()
        started = self.start("serve", [sys.executable, "-m", "keel", "serve", "--workers", "1", "--port", str(port)])
        base_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base_url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        self.wait_for(healthy, timeout=60, what="keel serve to answer /health", watch=started)
        return base_url

    def worker(self) -> Started:
        return self.start("worker", [sys.executable, "-m", "keel", "worker", "--concurrency", "1"])

    def keel(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A one-off `keel` command with the same configuration."""
        return subprocess.run(
            [sys.executable, "-m", "keel", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ({s.log_path.name}) ---\n{s.log_tail()}" for s in self.started)

    def wait_for(
        self,
        check: Callable[[], T],
        *,
        timeout: float = DELIVERY_DEADLINE,
        what: str,
        watch: Started | None = None,
    ) -> T:
        """Poll `check` until it returns something truthy; fail with every log after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if watch is not None and watch.process.poll() is not None:
                pytest.fail(f"{watch.name} exited ({watch.process.returncode}) waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for started in reversed(self.started):
            _stop(started)


@pytest.fixture
def clean_services(postgres_url: str, redis_url: str) -> None:
    asyncio.run(reset_postgres(postgres_url))
    asyncio.run(reset_redis(redis_url))


@pytest.fixture
def stack(clean_services: None, postgres_url: str, redis_url: str, sink: Sink, tmp_path: Path) -> Iterator[Stack]:
    launched = Stack(
        tmp_path=tmp_path, postgres_url=postgres_url, redis_url=redis_url, smtp_port=sink.port, broker_url=redis_url
    )
    try:
        yield launched
    finally:
        launched.stop_all()


# --- the outbox, read straight from the database ---------------------------------------------------
@dataclass(frozen=True)
class Row:
    id: int
    kind: EmailKind
    to_address: str
    status: OutboxStatus
    attempts: int
    last_error: str | None


def outbox(settings: Settings) -> list[Row]:
    async def query() -> list[Row]:
        database = Database(settings)
        try:
            async with database.session() as session:
                found = await session.exec(select(EmailOutbox).order_by(col(EmailOutbox.id)))
                return [
                    Row(
                        id=row.id or 0,
                        kind=row.kind,
                        to_address=row.to_address,
                        status=row.status,
                        attempts=row.attempts,
                        last_error=row.last_error,
                    )
                    for row in found
                ]
        finally:
            await database.dispose()

    return asyncio.run(query())


def only_row(stack: Stack) -> Row:
    rows = outbox(stack.settings)
    assert len(rows) == 1, rows
    return rows[0]


def row_with(stack: Stack, status: OutboxStatus) -> Callable[[], Row | None]:
    def check() -> Row | None:
        rows = outbox(stack.settings)
        return rows[0] if len(rows) == 1 and rows[0].status is status else None

    return check


# --- helpers -----------------------------------------------------------------------------------------
def register(base_url: str, name: str) -> tuple[str, float]:
    """Register `name`; returns the address and how long the answer took."""
    address = f"{name}@example.com"
    started = time.monotonic()
    response = httpx.post(
        f"{base_url}{AUTH}/register",
        json={"email": address, "username": name, "password": PASSWORD},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    return address, elapsed


def verification_token(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = LINK.search(body.get_content())
    assert match is not None, body.get_content()
    return match.group(1)


def assert_delivered_once(stack: Stack, sink: Sink, address: str) -> EmailMessage:
    """Exactly one message arrives and its row is `sent`, and nothing more comes over a few relay runs."""
    stack.wait_for(lambda: sink.handler.received(), what=f"the email to {address} at the SMTP sink")
    stack.wait_for(row_with(stack, OutboxStatus.SENT), timeout=10, what="the outbox row to be marked sent")
    # Long enough for several relay runs and for the claim lease to pass: nothing is sent again.
    time.sleep(CLAIM_LEASE + 2 * RELAY_INTERVAL)
    messages = sink.handler.received()
    assert len(messages) == 1, [m["Subject"] for m in messages]
    message = messages[0]
    assert message["To"] == address
    assert message["Subject"] == "Confirm your email address"
    assert only_row(stack).status is OutboxStatus.SENT
    return message


# --- private broker --------------------------------------------------------------------------------
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(port=free_port(), tmp_path=tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the tests ---------------------------------------------------------------------------------------
def test_worker_delivers_a_registration_email_end_to_end(stack: Stack, sink: Sink) -> None:
    stack.worker()  # starting while `keel serve` starts; the task waits in the broker meanwhile
    base_url = stack.serve()

    address, _ = register(base_url, "celery_e2e")
    message = assert_delivered_once(stack, sink, address)
    row = only_row(stack)
    assert (row.kind, row.to_address, row.attempts) == (EmailKind.VERIFY_EMAIL, address, 1)

    response = httpx.post(
        f"{base_url}{AUTH}/verify-email/confirm", json={"token": verification_token(message)}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == address
    assert response.json()["is_verified"] is True


def test_broker_down_at_request_time_the_relay_sends_it_later(
    clean_services: None,
    postgres_url: str,
    redis_url: str,
    sink: Sink,
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    stack = Stack(
        tmp_path=tmp_path,
        postgres_url=postgres_url,
        redis_url=redis_url,
        smtp_port=sink.port,
        broker_url=private_redis.url,
    )
    try:
        base_url = stack.serve()
        private_redis.stop()

        address, elapsed = register(base_url, "broker_down")
        assert elapsed < 4, f"the request waited {elapsed:.1f} s for the broker"
        row = only_row(stack)
        assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
        stack.wait_for(
            lambda: "email_dispatch_deferred" in stack.started[0].log_path.read_text(),
            timeout=5,
            what="the serve log to say the dispatch was deferred",
        )
        assert sink.handler.received() == []

        private_redis.start()
        stack.worker()
        assert_delivered_once(stack, sink, address)
        assert only_row(stack).attempts == 1
    finally:
        stack.stop_all()


def test_worker_killed_mid_task_the_email_is_still_sent_exactly_once(stack: Stack, sink: Sink) -> None:
    """The kill: the sink holds the first delivery's SMTP conversation at RCPT, so the task is stuck
    between claiming its outbox row (status `sending`, attempts 1) and finishing the message. Once
    the row reads `sending` and the sink is holding, the test sends SIGKILL to the whole process
    group of `keel worker` (started with its own session: the Celery main process, its prefork pool
    child running the task and the embedded beat), as when a machine or container dies: nothing
    runs a shutdown handler, the task is never acknowledged and its SMTP connection drops. The sink
    is then released (the dropped connection never gets to DATA), and a new `keel worker` is
    started on the same data folder and broker. After the claim lease (3 s here) the relay treats
    the row as abandoned and hands it out again; the new worker claims it (attempts 2) and sends
    it. Exactly one message reaches the sink, and the row ends `sent`.
    """
    sink.handler.hold_first = True
    first = stack.worker()
    base_url = stack.serve()

    address, _ = register(base_url, "killed_worker")
    stack.wait_for(sink.handler.holding.is_set, what="the first SMTP conversation to reach RCPT", watch=first)
    held = stack.wait_for(row_with(stack, OutboxStatus.SENDING), timeout=10, what="the row to be claimed")
    assert isinstance(held, Row)
    assert held.attempts == 1

    os.killpg(first.process.pid, signal.SIGKILL)
    assert first.process.wait(timeout=10) == -signal.SIGKILL
    sink.handler.release.set()
    assert sink.handler.received() == []
    assert only_row(stack).status is OutboxStatus.SENDING

    stack.worker()
    assert_delivered_once(stack, sink, address)
    assert only_row(stack).attempts == 2
    assert sink.handler.rcpt_calls == 2


def test_smtp_refusing_retries_then_fails_visible_in_keel_outbox(stack: Stack, sink: Sink) -> None:
    sink.handler.refuse = True
    worker = stack.worker()
    base_url = stack.serve()

    address, _ = register(base_url, "refused_rcpt")
    failed = stack.wait_for(row_with(stack, OutboxStatus.FAILED), what="the row to end failed", watch=worker)
    assert isinstance(failed, Row)
    assert failed.attempts == MAX_ATTEMPTS
    assert failed.last_error is not None
    assert "SMTPRecipientsRefused" in failed.last_error
    assert "554" in failed.last_error
    # Every attempt reached the server once, and a failed row is left alone by the relay.
    time.sleep(2 * RELAY_INTERVAL + 1)
    assert sink.handler.refused == MAX_ATTEMPTS
    assert sink.handler.received() == []
    assert only_row(stack).status is OutboxStatus.FAILED

    listing = stack.keel("outbox")
    assert listing.returncode == 0, listing.stderr
    line = next((ln for ln in listing.stdout.splitlines() if ln.startswith(f"{failed.id}\t")), None)
    assert line is not None, listing.stdout
    fields = line.split("\t")
    assert fields[1:5] == ["failed", "verify_email", address, f"attempts={MAX_ATTEMPTS}"]
    assert fields[6] == failed.last_error

    # Once the server accepts again, a retried email goes back to the queue (with a fresh set of
    # attempts) and the running worker's relay sends it; a failed row it would never touch.
    sink.handler.refuse = False
    retried = stack.keel("outbox", "retry", str(failed.id))
    assert retried.returncode == 0, retried.stderr
    assert f"email {failed.id} queued again" in retried.stdout
    assert_delivered_once(stack, sink, address)
    assert only_row(stack).attempts == 1
