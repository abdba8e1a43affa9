"""What reaches the log: one access line per request, security events, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
import structlog
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from pydantic import ValidationError
from sqlmodel import col, func, select

from keel.core import logging as keel_logging
from keel.core.client_ip import parse_networks
from keel.core.config import Settings
from keel.core.db import Database
from keel.core.logging import DirectLog, configure_logging, get_logger
from keel.core.mail import FileTransport, render, transport_for
from keel.core.security import PasswordHasher
from keel.http.metrics import Metrics
from keel.main import create_app
from keel.models import Role, User, UserSession
from tests.conftest import base_settings
from tests.factories import Account, Tokens, create_user, login, signed_in
from tests.services.test_email_flows import (
    LINK,
    NEW_PASSWORD,
    PUBLIC_URL,
    RESET_PAGE,
    RESET_SUBJECT,
    STRONG_PASSWORD,
    VERIFY_PAGE,
    VERIFY_SUBJECT,
    Collector,
    Flow,
    SmtpServer,
    free_port,
)

AUTH = "/api/v1/auth"
THIRD_PASSWORD = "Copper-lagoon-violin-68"
WRONG_PASSWORD = "Amber-falcon-orchard-15"
TOO_SHORT_PASSWORD = "Xq7#vb"


class LogCapture(logging.Handler):
    """Every record that reaches the root logger, rendered exactly as Keel's own handler renders it."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if entry.get("event") == name]


@pytest.fixture
def capture() -> Iterator[Any]:
    """A function that starts capturing beside the handler `configure_logging` installed last."""
    attached: list[LogCapture] = []

    def start() -> LogCapture:
        root = logging.getLogger()
        (keel_handler,) = [
            handler for handler in root.handlers if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
        ]
        assert keel_handler.formatter is not None
        logs = LogCapture(keel_handler.formatter)
        root.addHandler(logs)
        attached.append(logs)
        return logs

    yield start
    for logs in attached:
        logging.getLogger().removeHandler(logs)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(port=int(controller.port), collector=collector)
    finally:
        controller.stop()


@dataclass
class Logged:
    flow: Flow
    logs: LogCapture


@pytest.fixture
async def logged(settings: Settings, smtp: SmtpServer, capture: Any) -> AsyncIterator[Logged]:
    """The app at the production log level and format, sending real mail over SMTP, its log captured."""
    production_like = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_security": "none",
            "public_url": PUBLIC_URL,
            "log_level": "INFO",
            "log_format": "json",
        }
    )
    application = create_app(production_like)
    logs = capture()
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Logged(flow=Flow(app=application, client=http, smtp=smtp), logs=logs)


def secret_parts(tokens: Tokens) -> list[str]:
    """The tokens, and the JWT's signature alone (its header is the same in every token)."""
    return [tokens.access, tokens.access.rsplit(".", 1)[1], tokens.refresh]


def link_and_token(flow: Flow, account: Account, subject: str, page: str) -> tuple[str, str]:
    token = flow.last_mail(account.email, subject).token(page)
    return f"{PUBLIC_URL}{page}?token={token}", token


class TestNoSecretInAnyLog:
    async def test_the_whole_account_journey_logs_no_password_token_or_link(self, logged: Logged) -> None:
        flow, logs = logged.flow, logged.logs
        secrets = [STRONG_PASSWORD, NEW_PASSWORD, THIRD_PASSWORD, WRONG_PASSWORD, TOO_SHORT_PASSWORD]

        # A refused registration: its 422 names the field, and nothing echoes the password.
        weak = {"email": "weak@example.com", "username": "weakling", "password": TOO_SHORT_PASSWORD}
        assert (await flow.post(f"{AUTH}/register", json=weak)).status_code == 422

        # Register and verify through the emailed link.
        account = await flow.register("journey")
        link, token = link_and_token(flow, account, VERIFY_SUBJECT, VERIFY_PAGE)
        secrets += [link, token]
        assert (await flow.post(f"{AUTH}/verify-email/confirm", json={"token": token})).status_code == 200

        # Sign in, refresh, and replay the used refresh token (which ends the session).
        first = await login(flow.client, account)
        refreshed = await flow.post(f"{AUTH}/refresh", json={"refresh_token": first.refresh})
        assert refreshed.status_code == 200, refreshed.text
        second = Tokens(access=refreshed.json()["access_token"], refresh=refreshed.json()["refresh_token"])
        replayed = await flow.post(f"{AUTH}/refresh", json={"refresh_token": first.refresh})
        assert replayed.status_code == 401
        secrets += secret_parts(first) + secret_parts(second)

        # Sign in again and out.
        third = await login(flow.client, account)
        secrets += secret_parts(third)
        logout = await flow.post(f"{AUTH}/logout", json={"refresh_token": third.refresh}, headers=third.headers)
        assert logout.status_code == 204

        # Reset the password through the emailed link; the link works once.
        assert (await flow.post(f"{AUTH}/password-reset/request", json={"email": account.email})).status_code == 202
        link, token = link_and_token(flow, account, RESET_SUBJECT, RESET_PAGE)
        secrets += [link, token]
        body = {"token": token, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
        assert (await flow.post(f"{AUTH}/password-reset/confirm", json=body)).status_code == 204
        assert (await flow.post(f"{AUTH}/password-reset/confirm", json=body)).status_code == 400
        account.password = NEW_PASSWORD

        # Change it, once with a wrong current password.
        fourth = await login(flow.client, account)
        secrets += secret_parts(fourth)
        change = f"{AUTH}/password-change"
        wrong = {"current_password": WRONG_PASSWORD, "new_password": THIRD_PASSWORD}
        assert (await flow.post(change, json=wrong, headers=fourth.headers)).status_code == 400
        right = {"current_password": NEW_PASSWORD, "new_password": THIRD_PASSWORD}
        assert (await flow.post(change, json=right, headers=fourth.headers)).status_code == 204

        # Failed sign-ins: an old password, an unknown address, and a password typed into the email
        # field again and again (until the rate limit, if it is on, refuses it).
        for username, password in [
            (account.email, STRONG_PASSWORD),
            ("nobody@example.com", WRONG_PASSWORD),
            *[(THIRD_PASSWORD, THIRD_PASSWORD)] * 6,
        ]:
            response = await flow.client.post(f"{AUTH}/login", data={"username": username, "password": password})
            assert response.status_code in {401, 429}, response.text

        # The capture saw the whole journey, so finding nothing below means something.
        logged_events = {entry.get("event") for entry in logs.entries()}
        expected = {
            "request",
            "email_sent",
            "user_registered",
            "email_verified",
            "login_succeeded",
            "token_refreshed",
            "refresh_token_reuse",
            "logout",
            "password_reset_requested",
            "password_reset",
            "password_change_failed",
            "password_changed",
            "login_failed",
        }
        assert expected <= logged_events, expected - logged_events
        assert len(logs.lines) > 40
        for line in logs.lines:
            for secret in secrets:
                assert secret not in line, f"{secret[:12]}... is in the log: {line[:300]}"
            assert "token=" not in line, line
        # uvicorn's access log (which would print query strings) is switched off for Keel's own line.
        assert logging.getLogger("uvicorn.access").disabled

    async def test_a_failed_sign_in_records_no_submitted_address(self, logged: Logged) -> None:
        account = await create_user(logged.flow.app)
        await logged.flow.client.post(
            f"{AUTH}/login", data={"username": "Somebody.Else@example.com", "password": WRONG_PASSWORD}
        )
        await logged.flow.client.post(f"{AUTH}/login", data={"username": account.email, "password": WRONG_PASSWORD})

        unknown, wrong = logged.logs.events("login_failed")
        assert unknown["reason"] == "unknown_email"
        assert "user_id" not in unknown
        assert unknown["ip"] == "203.0.113.7"
        assert wrong["reason"] == "wrong_password"
        assert wrong["user_id"] == account.id
        assert not any("somebody.else@example.com" in line.lower() for line in logged.logs.lines)

    async def test_an_account_deleted_while_its_password_was_checked_signs_no_one_in(
        self, logged: Logged, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app = logged.flow.app
        account = await create_user(app)
        real_verify = PasswordHasher.verify

        async def verify_then_delete(self: PasswordHasher, *args: Any, **options: Any) -> tuple[bool, str | None]:
            result = await real_verify(self, *args, **options)
            database: Database = app.state.database
            async with database.session() as session:
                await session.exec(sa.delete(User).where(col(User.id) == account.id))
                await session.commit()
            return result

        monkeypatch.setattr(PasswordHasher, "verify", verify_then_delete)
        response = await logged.flow.client.post(
            f"{AUTH}/login", data={"username": account.email, "password": account.password}
        )

        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_credentials"
        (failed,) = logged.logs.events("login_failed")
        assert (failed["reason"], failed["user_id"]) == ("account_gone", account.id)
        assert logged.logs.events("login_succeeded") == []
        database: Database = app.state.database
        async with database.session() as session:
            assert (await session.exec(select(func.count()).select_from(UserSession))).one() == 0


class TestFileMailLink:
    """The one deliberate exception: in development the file transport prints each email's link."""

    async def test_outside_production_only_the_email_written_line_has_the_link(
        self, settings: Settings, capture: Any
    ) -> None:
        application = create_app(settings.model_copy(update={"log_level": "INFO", "log_format": "json"}))
        logs = capture()
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                body = {"email": "dev@example.com", "username": "developer", "password": STRONG_PASSWORD}
                assert (await http.post(f"{AUTH}/register", json=body)).status_code == 202
                await application.state.dispatcher.drain()

        (eml,) = settings.mail_dir.glob("*.eml")
        link = next(found for found in LINK.findall(read_text(eml)) if urlsplit(found).path == VERIFY_PAGE)
        token = parse_qs(urlsplit(link).query)["token"][0]
        with_token = [entry for entry, line in zip(logs.entries(), logs.lines, strict=True) if token in line]
        assert [(entry["event"], entry["logger"], entry["link"]) for entry in with_token] == [
            ("email_written", "keel.mail", link)
        ]

    async def test_in_production_file_mail_keeps_the_link_out_of_the_log(self, tmp_path: Path, capture: Any) -> None:
        settings = base_settings(
            tmp_path,
            environment="production",
            allow_sqlite_in_production=True,
            allow_file_mail_in_production=True,
            log_level="INFO",
            log_format="json",
        )
        configure_logging(settings)
        logs = capture()
        transport = transport_for(settings)
        assert isinstance(transport, FileTransport)
        link = f"{settings.public_url}{VERIFY_PAGE}?token=abc.def.ghi"

        await transport.send(render("verify_email", to="a@example.com", subject="Hi", link=link, username="a"))

        (eml,) = settings.mail_dir.glob("*.eml")
        assert link in read_text(eml)
        (written,) = logs.events("email_written")
        assert written["link"] is None
        assert not any("abc.def.ghi" in line for line in logs.lines)

    def test_production_refuses_file_mail_unless_allowed(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="Mail would go to files in production"):
            base_settings(tmp_path, environment="production", allow_sqlite_in_production=True)


def read_text(path: Path) -> str:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


class TestAccessLine:
    async def test_has_method_path_route_status_duration_user_and_request_id(
        self, settings: Settings, capture: Any
    ) -> None:
        application = create_app(settings.model_copy(update={"log_level": "INFO", "log_format": "json"}))
        logs = capture()
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                account, tokens = await signed_in(application, http)
                await http.get("/api/v1/todos/4242", headers={**tokens.headers, "X-Request-ID": "todo-1"})
                await http.get("/no/such/place", headers={"X-Request-ID": "lost-1"})

        lines = {line["request_id"]: line for line in logs.events("request")}
        todo, lost = lines["todo-1"], lines["lost-1"]
        assert todo["logger"] == "keel.access"
        assert todo["level"] == "info"
        assert {key: todo[key] for key in ("method", "path", "route", "status", "user_id")} == {
            "method": "GET",
            "path": "/api/v1/todos/4242",
            "route": "/api/v1/todos/{todo_id}",
            "status": 404,
            "user_id": account.id,
        }
        assert isinstance(todo["duration_ms"], float)
        assert todo["duration_ms"] >= 0
        assert (lost["path"], lost["route"], lost["status"], lost["user_id"]) == (
            "/no/such/place",
            "<unmatched>",
            404,
            None,
        )

    @pytest.mark.parametrize(
        ("trusted", "forwarded_for", "expected"),
        [
            ("", None, "203.0.113.7"),
            # A peer that is not a trusted proxy cannot name someone else.
            ("", "198.51.100.9", "203.0.113.7"),
            ("203.0.113.0/24", "192.0.2.1, 198.51.100.9", "198.51.100.9"),
        ],
        ids=["direct", "untrusted-forwarded-for", "behind-trusted-proxy"],
    )
    async def test_has_the_client_ip_as_the_trusted_proxies_resolve_it(
        self, settings: Settings, capture: Any, trusted: str, forwarded_for: str | None, expected: str
    ) -> None:
        application = create_app(
            settings.model_copy(
                update={"log_level": "INFO", "log_format": "json", "trusted_proxies": parse_networks(trusted)}
            )
        )
        logs = capture()
        headers = {"X-Request-ID": "ip-1", **({"X-Forwarded-For": forwarded_for} if forwarded_for else {})}
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 51000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                await http.get("/api/v1/posts", headers=headers)

        (line,) = [line for line in logs.events("request") if line["request_id"] == "ip-1"]
        assert line["client_ip"] == expected


class TestSecurityEvents:
    async def test_admin_changes_and_session_revocation_are_recorded_with_the_actor(
        self, settings: Settings, capture: Any
    ) -> None:
        application = create_app(settings.model_copy(update={"log_level": "INFO", "log_format": "json"}))
        logs = capture()
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                admin, admin_tokens = await signed_in(application, http, role=Role.ADMIN)
                member, member_tokens = await signed_in(application, http)
                await login(http, member)  # a second session
                sessions = (await http.get(f"{AUTH}/sessions", headers=member_tokens.headers)).json()
                (other_id,) = [row["id"] for row in sessions if not row["current"]]
                revoked = await http.delete(f"{AUTH}/sessions/{other_id}", headers=member_tokens.headers)
                assert revoked.status_code == 204
                assert (await http.post(f"{AUTH}/logout-all", headers=member_tokens.headers)).status_code == 204
                for change in ({"role": "admin"}, {"is_active": False}, {"is_active": True}):
                    response = await http.patch(
                        f"/api/v1/admin/users/{member.id}", json=change, headers=admin_tokens.headers
                    )
                    assert response.status_code == 200, response.text

        security = [entry for entry in logs.entries() if entry["logger"] == "keel.security"]
        by_event = {entry["event"]: entry for entry in security}
        assert by_event["session_revoked"]["session_id"] == other_id
        assert by_event["logout_all"]["user_id"] == member.id
        assert {key: by_event["role_changed"][key] for key in ("user_id", "actor_id", "old_role", "new_role")} == {
            "user_id": member.id,
            "actor_id": admin.id,
            "old_role": "user",
            "new_role": "admin",
        }
        for event in ("user_deactivated", "user_reactivated"):
            assert (by_event[event]["user_id"], by_event[event]["actor_id"]) == (member.id, admin.id)
        assert all(entry.get("request_id") for entry in security)


class TestRefusals:
    """Every 403 and 429 is a security event: a warning on `keel.security` and a count in the metrics."""

    @pytest.fixture
    async def watched(self, settings: Settings, capture: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Any]]:
        application = create_app(
            settings.model_copy(
                update={
                    "log_level": "INFO",
                    "log_format": "json",
                    "trusted_proxies": parse_networks("203.0.113.0/24"),
                    "rate_limit_password_reset": "1/hour",
                }
            )
        )
        logs = capture()
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 51000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", headers={"X-Forwarded-For": "198.51.100.9"}
            ) as http:
                yield application, http, logs

    @staticmethod
    def counted(application: FastAPI, event: str) -> float:
        metrics: Metrics = application.state.metrics
        value = metrics.registry.get_sample_value("keel_auth_events_total", {"event": event})
        assert value is not None
        return value

    @staticmethod
    def recorded(logs: Any, event: str) -> list[dict[str, Any]]:
        return [entry for entry in logs.events(event) if entry["logger"] == "keel.security"]

    async def test_a_403_is_recorded_with_its_code_route_user_and_client(
        self, watched: tuple[FastAPI, httpx.AsyncClient, Any]
    ) -> None:
        application, http, logs = watched
        member, tokens = await signed_in(application, http)

        response = await http.get("/api/v1/admin/users", headers={**tokens.headers, "X-Request-ID": "no-admin"})

        assert response.status_code == 403
        (entry,) = self.recorded(logs, "forbidden")
        assert entry["level"] == "warning"
        assert {key: entry[key] for key in ("code", "method", "route", "user_id", "client_ip", "request_id")} == {
            "code": "forbidden",
            "method": "GET",
            "route": "/api/v1/admin/users",
            "user_id": member.id,
            "client_ip": "198.51.100.9",
            "request_id": "no-admin",
        }
        assert self.counted(application, "forbidden") == 1

    async def test_every_kind_of_403_is_recorded(self, watched: tuple[FastAPI, httpx.AsyncClient, Any]) -> None:
        application, http, logs = watched
        _, unverified = await signed_in(application, http, is_verified=False)

        not_verified = await http.post(
            "/api/v1/posts", json={"title": "t", "content": "c", "published": True}, headers=unverified.headers
        )
        cross_site = await http.post(f"{AUTH}/refresh", headers={"Cookie": "keel_refresh=x"})

        assert (not_verified.status_code, cross_site.status_code) == (403, 403)
        codes = [entry["code"] for entry in self.recorded(logs, "forbidden")]
        assert codes == ["email_not_verified", "csrf_rejected"]
        assert self.counted(application, "forbidden") == 2

    async def test_a_429_is_recorded_with_its_route_and_client(
        self, watched: tuple[FastAPI, httpx.AsyncClient, Any]
    ) -> None:
        application, http, logs = watched
        body = {"email": "someone@example.com"}
        assert (await http.post(f"{AUTH}/password-reset/request", json=body)).status_code == 202

        response = await http.post(f"{AUTH}/password-reset/request", json=body)

        assert response.status_code == 429
        (entry,) = self.recorded(logs, "rate_limited")
        assert entry["level"] == "warning"
        assert {key: entry[key] for key in ("code", "method", "route", "user_id", "client_ip")} == {
            "code": "rate_limited",
            "method": "POST",
            "route": f"{AUTH}/password-reset/request",
            "user_id": None,
            "client_ip": "198.51.100.9",
        }
        assert "someone@example.com" not in json.dumps(entry)
        assert self.counted(application, "rate_limited") == 1


class TestJsonLines:
    """The production renderer writes every line, whatever a caller hands it."""

    @pytest.fixture
    def render(self, tmp_path: Path, capture: Any) -> Any:
        configure_logging(base_settings(tmp_path, log_format="json", log_level="INFO"))
        captured = capture()

        def render(**fields: Any) -> dict[str, Any]:
            structlog.get_logger("keel.test").info("rendered", **fields)
            (entry,) = captured.events("rendered")
            captured.lines.clear()
            fields_written: dict[str, Any] = entry
            return fields_written

        return render

    def test_values_json_cannot_encode_are_written_as_text(self, render: Any) -> None:
        class Opaque:
            def __str__(self) -> str:
                return "opaque-thing"

        assert render(thing=Opaque())["thing"] == "opaque-thing"

    def test_non_string_keys_and_huge_integers_do_not_lose_the_line(self, render: Any) -> None:
        assert render(counts={1: "one"})["counts"] == {"1": "one"}
        assert render(big=2**70)["big"] == 2**70


class TestControlCharacters:
    """What a client sends (a path, a user agent) reaches the console log as text, never as
    terminal escape sequences or forged lines."""

    @pytest.mark.parametrize("log_format", ["console", "json"])
    async def test_escape_sequences_and_newlines_from_a_request_are_written_escaped(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], log_format: str
    ) -> None:
        settings = base_settings(tmp_path, log_format=log_format, log_level="INFO")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                await http.get(
                    "/%1b[2J%1b[31mred%0aforged line",
                    headers={"Accept": "application/json"},
                )
                # No space: the console renderer writes it without quotes (or a repr of its own).
                await http.get("/%1b]0;title%07", headers={"Accept": "application/json"})
        written = capsys.readouterr().err
        configure_logging(base_settings(tmp_path))

        assert "forged line" in written
        assert "\x1b" not in written
        assert "\x07" not in written
        assert not any(line.startswith("forged line") for line in written.splitlines())
        if log_format == "console":  # escaped here, or by the renderer's repr of a value with spaces
            assert "\\x1b[31mred\\x0aforged line" in written.replace("\\\\", "\\")
            assert "path=/\\x1b]0;title\\x07 " in written


def test_a_forked_worker_logs_its_own_pid_not_its_parents() -> None:
    """The pid is remembered rather than asked for on every line, so a fork must update it."""
    script = (
        "import os\n"
        "from keel.core.logging import _add_pid\n"
        "parent = _add_pid(None, 'info', {})['pid']\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    print('child', os.getpid(), _add_pid(None, 'info', {})['pid'], flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(child, 0)\n"
        "print('parent', os.getpid(), parent, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert set(lines) == {"child", "parent"}
    for actual, logged in lines.values():
        assert actual == logged
    assert lines["child"][0] != lines["parent"][0]


class TestAccessLineWrittenDirectly:
    """keel.core.logging.DirectLog: the request line written straight by Keel's handler, or through
    `logging` whenever anything else listens; the same line either way."""

    FIELDS: ClassVar[dict[str, Any]] = {
        "method": "GET",
        "path": "/api/v1/x\x1b[2J",
        "route": "<unmatched>",
        "status": 404,
        "duration_ms": 1.25,
        "user_id": None,
    }

    @pytest.fixture
    def written(self, tmp_path: Path) -> Iterator[Any]:
        """Configures logging at `log_format` and returns what Keel's handler wrote."""
        stream = io.StringIO()

        def configure(log_format: str, log_level: str = "INFO") -> io.StringIO:
            configure_logging(base_settings(tmp_path, log_format=log_format, log_level=log_level))
            (handler,) = logging.getLogger().handlers
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(stream)
            return stream

        structlog.contextvars.bind_contextvars(request_id="req-1")
        yield configure
        structlog.contextvars.unbind_contextvars("request_id")
        configure_logging(base_settings(tmp_path))

    @pytest.mark.parametrize("log_format", ["json", "console"])
    def test_the_direct_line_is_the_line_logging_writes(self, written: Any, log_format: str) -> None:
        stream = written(log_format)
        assert keel_logging._direct.reaches_only_keel(logging.getLogger("keel.access"))
        DirectLog("keel.access").info("request", **dict(self.FIELDS))
        get_logger("keel.access").info("request", **dict(self.FIELDS))

        direct, standard = stream.getvalue().splitlines()
        if log_format == "json":
            ours, theirs = json.loads(direct), json.loads(standard)
            assert ours.pop("timestamp")
            assert theirs.pop("timestamp")
            assert list(ours.items()) == list(theirs.items())  # the same fields, in the same order
            assert ours["request_id"] == "req-1"
            assert ours["logger"] == "keel.access"
        else:
            # The console line starts with its timestamp; the rest, escapes included, is the same.
            assert direct.split(" ", 1)[1] == standard.split(" ", 1)[1]
            assert "\x1b" not in direct
            assert "\\x1b[2J" in direct

    def test_a_handler_someone_added_gets_the_line_too(self, written: Any) -> None:
        stream = written("json")
        (keel_handler,) = logging.getLogger().handlers
        assert keel_handler.formatter is not None
        extra = LogCapture(keel_handler.formatter)
        logging.getLogger().addHandler(extra)
        try:
            assert not keel_logging._direct.reaches_only_keel(logging.getLogger("keel.access"))
            DirectLog("keel.access").info("request", **dict(self.FIELDS))
        finally:
            logging.getLogger().removeHandler(extra)
        assert [entry["status"] for entry in extra.entries()] == [404]
        assert json.loads(stream.getvalue())["status"] == 404

    def test_a_filter_or_a_level_that_drops_the_line_still_drops_it(self, written: Any) -> None:
        stream = written("json", log_level="WARNING")
        DirectLog("keel.access").info("request", **dict(self.FIELDS))
        assert stream.getvalue() == ""

        stream = written("json")
        logger = logging.getLogger("keel.access")
        refuse = logging.Filter("nothing.matches")
        logger.addFilter(refuse)
        try:
            DirectLog("keel.access").info("request", **dict(self.FIELDS))
        finally:
            logger.removeFilter(refuse)
        assert stream.getvalue() == ""

    def test_a_warning_is_the_same_line_too_and_respects_the_level(self, written: Any) -> None:
        stream = written("json", log_level="WARNING")
        security = DirectLog("keel.security")
        security.info("refresh_failed", reason="unknown_token")  # below the level: dropped
        security.warning("refresh_token_reused", user_id=7)
        get_logger("keel.security").warning("refresh_token_reused", user_id=7)
        direct, standard = (json.loads(line) for line in stream.getvalue().splitlines())
        assert direct.pop("timestamp")
        assert standard.pop("timestamp")
        assert direct == standard
        assert direct["level"] == "warning"

    def test_a_stream_that_fails_never_fails_the_caller(
        self, written: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As through `logging`: a closed pipe on stderr is reported, and the request goes on."""
        written("json")
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)

        class Broken(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

        handler.setStream(Broken())
        monkeypatch.setattr(logging, "raiseExceptions", True)
        DirectLog("keel.security").warning("rate_limited", code="rate_limited")  # does not raise
        assert "BrokenPipeError" in capsys.readouterr().err
