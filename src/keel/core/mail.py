"""Building email messages and handing them to a transport: SMTP, or .eml files in development."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import anyio
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from keel.core.config import Settings
from keel.core.files import private_dir, write_private_file
from keel.core.logging import get_logger
from keel.models.base import utcnow

log = get_logger("keel.mail")


class MailError(Exception):
    """Sending failed; the message may be retried."""


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    link: str | None = None  # the action link, for the development log
    # Fixed by the sender when the same message may go out twice, so a receiver can drop the copy.
    message_id: str | None = None


@lru_cache(maxsize=1)
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("keel", "templates/email"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render(
    template: str,
    *,
    to: str,
    subject: str,
    link: str | None = None,
    message_id: str | None = None,
    **context: object,
) -> Mail:
    env = _templates()
    values = {"subject": subject, "link": link, **context}
    return Mail(
        to=to,
        subject=subject,
        text=env.get_template(f"{template}.txt").render(values),
        html=env.get_template(f"{template}.html").render(values),
        link=link,
        message_id=message_id,
    )


def to_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = mail.message_id or make_msgid(domain=sender.rsplit("@", 1)[-1].rstrip(">") or None)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


class Transport(Protocol):
    async def send(self, mail: Mail) -> None: ...


class FileTransport:
    """One .eml file per message, and the link in the log so a developer can click it.

    The link is the one thing that must never be in a log elsewhere: it is logged only outside
    production (where file mail is refused unless KEEL_ALLOW_FILE_MAIL_IN_PRODUCTION is set).
    """

    def __init__(self, directory: Path, sender: str, *, log_links: bool = True) -> None:
        self.directory = directory
        self.sender = sender
        self.log_links = log_links

    async def send(self, mail: Mail) -> None:
        message = to_message(mail, self.sender)
        path = self.directory / f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        # The file holds a live link: readable by Keel's own user only, like its folder.
        await anyio.to_thread.run_sync(self._write, path, bytes(message))
        log.info("email_written", path=str(path), subject=mail.subject, link=mail.link if self.log_links else None)

    def _write(self, path: Path, content: bytes) -> None:
        private_dir(self.directory)
        write_private_file(path, content)


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, mail: Mail) -> None:
        message = to_message(mail, self.settings.mail_from)
        try:
            await anyio.to_thread.run_sync(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{type(exc).__name__}: {exc}"[:900]) from exc
        log.info("email_sent", subject=mail.subject)

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        assert s.smtp_host is not None
        context = ssl.create_default_context()
        client = (
            smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context)
            if s.smtp_security == "tls"
            else smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
        )
        with client:
            if s.smtp_security == "starttls":
                client.starttls(context=context)
            if s.smtp_user and s.smtp_password:
                client.login(s.smtp_user, s.smtp_password.get_secret_value())
            client.send_message(message)


def transport_for(settings: Settings) -> Transport:
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileTransport(settings.mail_dir, settings.mail_from, log_links=not settings.is_production)
