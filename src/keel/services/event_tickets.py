"""Event stream tickets: how a browser's EventSource, which cannot send headers, opens a stream.

A ticket is 256 random bits, handed out to a caller who authenticated with a bearer token, good
for one stream within 30 seconds. It stands for that caller's credential (their session, or their
personal access token), so the stream it opens ends when that credential is revoked, as one opened
with the bearer token itself would. Only its SHA-256 is stored: in Redis, consumed by GETDEL so
two workers cannot both accept it, or without Redis in this process's memory.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from keel.core.errors import InvalidTicket, ServiceUnavailable
from keel.core.events import Revocation
from keel.core.logging import get_logger

log = get_logger("keel.events")

TICKET_TTL_SECONDS = 30
# Tickets are 43 characters of base64url; anything much longer is not one.
MAX_TICKET_LENGTH = 64
_SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class StreamCredential:
    """What a stream was opened with: a session (by id) or a personal access token (by its digest)."""

    user_id: int
    session_id: str | None = None
    token_digest: str | None = None

    def revoked_by(self, notice: Revocation) -> bool:
        if self.session_id is not None:
            return self.session_id in notice.session_ids
        return self.token_digest in notice.token_digests

    def encode(self) -> str:
        kind, value = ("s", self.session_id) if self.session_id is not None else ("t", self.token_digest)
        return _SEPARATOR.join((str(self.user_id), kind, value or ""))

    @classmethod
    def decode(cls, raw: str) -> StreamCredential:
        user_id, kind, value = raw.split(_SEPARATOR)
        if kind == "s":
            return cls(int(user_id), session_id=value)
        return cls(int(user_id), token_digest=value)


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


class TicketStore(Protocol):
    async def issue(self, credential: StreamCredential) -> str: ...

    async def redeem(self, ticket: str) -> StreamCredential:
        """The credential the ticket stands for; 401 `invalid_ticket` if unknown, expired or used."""


class MemoryTickets:
    """One process's tickets (no Redis: there is only one process to open a stream on)."""

    max_outstanding = 100_000

    def __init__(self) -> None:
        self._tickets: dict[str, tuple[float, str]] = {}

    async def issue(self, credential: StreamCredential) -> str:
        now = time.monotonic()
        if len(self._tickets) >= self.max_outstanding or len(self._tickets) % 64 == 0:
            self._tickets = {key: entry for key, entry in self._tickets.items() if entry[0] > now}
        ticket = secrets.token_urlsafe(32)
        self._tickets[_digest(ticket)] = (now + TICKET_TTL_SECONDS, credential.encode())
        return ticket

    async def redeem(self, ticket: str) -> StreamCredential:
        entry = self._tickets.pop(_digest(ticket), None) if len(ticket) <= MAX_TICKET_LENGTH else None
        if entry is None or entry[0] <= time.monotonic():
            raise InvalidTicket
        return StreamCredential.decode(entry[1])


class RedisTickets:
    """Tickets every worker can redeem, each exactly once."""

    prefix = "keel:events-ticket:"

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def issue(self, credential: StreamCredential) -> str:
        ticket = secrets.token_urlsafe(32)
        try:
            await self.redis.set(self.prefix + _digest(ticket), credential.encode(), ex=TICKET_TTL_SECONDS)
        except RedisError as exc:
            log.warning("event_ticket_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Event stream tickets cannot be issued right now; try again shortly.") from exc
        return ticket

    async def redeem(self, ticket: str) -> StreamCredential:
        if len(ticket) > MAX_TICKET_LENGTH:
            raise InvalidTicket
        try:
            raw = cast(str | None, await self.redis.getdel(self.prefix + _digest(ticket)))
        except RedisError as exc:
            log.warning("event_ticket_unavailable", error=type(exc).__name__)
            raise ServiceUnavailable("Event stream tickets cannot be checked right now; try again shortly.") from exc
        if raw is None:
            raise InvalidTicket
        return StreamCredential.decode(raw)
