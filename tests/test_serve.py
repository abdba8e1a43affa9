"""`keel serve --workers 2` as a real process: a logout is honoured by both workers at once."""

from __future__ import annotations

import email
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from keel.main import create_app
from tests.conftest import TEST_SECRET, base_settings, reset_postgres, reset_redis
from tests.factories import create_user

pytestmark = pytest.mark.slow

ME = "/api/v1/users/me"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def access_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("event") == "request":
                lines.append(entry)
        return lines


@pytest.fixture
def server(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[Server]:
    import asyncio

    asyncio.run(reset_postgres(postgres_url))
    asyncio.run(reset_redis(redis_url))
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "KEEL_DATABASE_URL": postgres_url,
        "KEEL_REDIS_URL": redis_url,
        "KEEL_SECRET_KEY": TEST_SECRET,
        "KEEL_DATA_DIR": str(tmp_path / "data"),
        "KEEL_ENVIRONMENT": "test",
        "KEEL_LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"keel serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Server(base_url=base_url, log_path=log_path, process=process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _pids_answering(server: Server, *, status: int, since: int) -> set[object]:
    return {line["pid"] for line in server.access_lines()[since:] if line["path"] == ME and line["status"] == status}


def _fresh_request(server: Server, headers: dict[str, str]) -> int:
    # A new client per request means a new TCP connection, which either worker may accept.
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        return http.get(ME, headers=headers).status_code


def test_logout_is_refused_by_every_worker(server: Server, postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    import asyncio

    async def make_account() -> tuple[str, str]:
        app = create_app(base_settings(tmp_path, database_url=postgres_url, redis_url=redis_url))
        async with app.router.lifespan_context(app):
            account = await create_user(app)
        return account.email, account.password

    email, password = asyncio.run(make_account())
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        response = http.post("/api/v1/auth/login", data={"username": email, "password": password})
        assert response.status_code == 200, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    # Both workers accept the token before the logout.
    for _ in range(200):
        assert _fresh_request(server, headers) == 200
        if len(_pids_answering(server, status=200, since=0)) == 2:
            break
    assert len(_pids_answering(server, status=200, since=0)) == 2, "requests never reached the second worker"

    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        assert http.post("/api/v1/auth/logout", headers=headers).status_code == 204
    after_logout = len(server.access_lines())

    # And both refuse it right after, on fresh connections.
    for _ in range(200):
        assert _fresh_request(server, headers) == 401
        if len(_pids_answering(server, status=401, since=after_logout)) == 2:
            break
    assert len(_pids_answering(server, status=401, since=after_logout)) == 2

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0


def test_mailed_links_point_at_the_port_keel_serve_listens_on(tmp_path: Path) -> None:
    """No KEEL_PUBLIC_URL, a port other than 8000: the verification link in the .eml opens this server."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    mail_dir = tmp_path / "data" / "mail"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("KEEL_")},
        "KEEL_SECRET_KEY": TEST_SECRET,
        "KEEL_DATA_DIR": str(tmp_path / "data"),
        "KEEL_ENVIRONMENT": "test",
        "KEEL_EMAIL_DELIVERY": "in-process",
    }
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,  # no .env of the machine running the tests
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"keel serve did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        account = {"email": "port@example.com", "username": "port_follower", "password": "a sturdy keel holds 42 knots"}
        assert httpx.post(f"{base_url}/api/v1/auth/register", json=account, timeout=10).status_code == 202

        deadline = time.monotonic() + 20
        while not list(mail_dir.glob("*.eml")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (mail,) = mail_dir.glob("*.eml")
        message = email.message_from_bytes(mail.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert f"{base_url}/verify-email?token=" in text, text
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
