"""Live update events: what a change announces, and the in-process broker that carries it.

A change publishes an `Event` once its transaction has committed (keel.core.db's after-commit
hooks). A broker gives it an id, keeps it in a short replay log (behind `Last-Event-ID`) and hands
it to every local `Consumer` (one per open stream), which decides whether its caller may see it.
Revocation notices travel the same way, in the same order, but are never logged nor shown.

Ids are "<milliseconds>-<sequence>", Redis stream ids' own form, so both brokers compare them
alike: a reconnect names the last id it saw and receives everything after it, in order.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from keel.core.logging import get_logger

log = get_logger("keel.events")

# The largest event a stream will carry. None is expected to come near it (a todo is a few KB at
# most); one that does is logged and left out rather than let one row swell every stream's queue.
MAX_EVENT_BYTES = 64 * 1024


def parse_id(value: str) -> tuple[int, int] | None:
    """An event id as a comparable pair, or None for anything that is not one."""
    millis, dash, sequence = value.partition("-")
    if not dash or not millis.isdigit() or not sequence.isdigit() or len(value) > 40:
        return None
    return int(millis), int(sequence)


def format_id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Event:
    """One change, as streams see it. `data` is what clients get; the rest routes it.

    `user_id` is the one user the event concerns beyond a list's members: the owner of a todo in
    their private inbox (its whole audience), or the member a `list.member_*` event is about.
    """

    type: str
    data: dict[str, Any]
    list_id: int | None = None
    user_id: int | None = None
    id: str = ""
    _payload: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, type: str, *, actor_id: int, list_id: int | None, about: int | None = None, **data: Any) -> Event:
        """An event for clients; `about` is the user it concerns (see the class docstring)."""
        body = {"type": type, "at": now_iso(), "actor_id": actor_id, "list_id": list_id, **data}
        return cls(type=type, data=body, list_id=list_id, user_id=about)

    def payload(self) -> str:
        """The routing and the data as one JSON text: what the Redis log and channel carry."""
        if self._payload is None:
            self._payload = json.dumps(
                {"t": self.type, "l": self.list_id, "u": self.user_id, "d": self.data}, separators=(",", ":")
            )
        return self._payload

    @classmethod
    def from_payload(cls, event_id: str, payload: str) -> Event:
        raw = json.loads(payload)
        return cls(type=raw["t"], data=raw["d"], list_id=raw["l"], user_id=raw["u"], id=event_id, _payload=payload)

    def frame(self) -> bytes:
        """The event as Server-Sent Events lines (the JSON has no newline, so it is one `data:` line)."""
        data = json.dumps(self.data, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.type}\ndata: {data}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Revocation:
    """Credentials that no longer count: streams opened with one of them end ("revoked") at once."""

    session_ids: tuple[str, ...] = ()
    token_digests: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"s": list(self.session_ids), "t": list(self.token_digests)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Revocation:
        raw = json.loads(text)
        return cls(session_ids=tuple(raw.get("s", ())), token_digests=tuple(raw.get("t", ())))


class Consumer(Protocol):
    """An open stream, as a broker sees it: told every event and notice, in order, without waiting."""

    def deliver(self, event: Event) -> None: ...

    def revoke(self, notice: Revocation) -> None: ...

    def end(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Replay:
    """What a reconnect missed: the events after its id, or `expired` when the log no longer reaches back."""

    events: list[Event]
    expired: bool


class EventCounters(Protocol):
    """Where brokers and streams count what they did (keel.http.metrics implements it)."""

    def published(self) -> None: ...

    def publish_failed(self) -> None: ...

    def delivered(self, count: int) -> None: ...

    def stream_opened(self) -> None: ...

    def stream_closed(self) -> None: ...

    def stream_ended(self, reason: str) -> None: ...


class Broker(Protocol):
    def publish(self, event: Event) -> None:
        """Hand the event on; never raises into the request that committed the change."""

    def notify(self, notice: Revocation) -> None: ...

    def subscribe(self, consumer: Consumer) -> None: ...

    def unsubscribe(self, consumer: Consumer) -> None: ...

    async def replay(self, after_id: str) -> Replay: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LocalFanOut:
    """The consumers of this process, and handing each of them what arrives."""

    def __init__(self) -> None:
        self.consumers: set[Consumer] = set()

    def subscribe(self, consumer: Consumer) -> None:
        self.consumers.add(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        self.consumers.discard(consumer)

    def deliver(self, event: Event) -> None:
        for consumer in list(self.consumers):
            consumer.deliver(event)

    def revoke(self, notice: Revocation) -> None:
        for consumer in list(self.consumers):
            consumer.revoke(notice)

    def end_all(self, reason: str) -> None:
        for consumer in list(self.consumers):
            consumer.end(reason)


def is_expired(after: tuple[int, int], *, floor: tuple[int, int], now_ms: int) -> bool:
    """Whether events after `after` may have left the log (it keeps only those after `floor`), or
    `after` names a moment that has not come yet (no server gave it out)."""
    return after < floor or after[0] > now_ms + 60_000


class InProcessBroker:
    """One process's events: a ring of the recent ones (bounded in age and count) and its consumers."""

    def __init__(self, *, retention_seconds: float, max_events: int, counters: EventCounters | None = None) -> None:
        self.retention_ms = int(retention_seconds * 1000)
        self.max_events = max_events
        self.counters = counters
        self.fan_out = LocalFanOut()
        self._log: deque[tuple[tuple[int, int], Event]] = deque()
        # Events up to here may have been dropped: at first, everything before this process began.
        self._floor = (_now_ms(), 0)
        self._last = self._floor

    def _next_id(self) -> tuple[int, int]:
        millis = _now_ms()
        key = (millis, 0) if millis > self._last[0] else (self._last[0], self._last[1] + 1)
        self._last = key
        return key

    def publish(self, event: Event) -> None:
        if len(event.payload()) > MAX_EVENT_BYTES:
            log.warning("event_too_large", type=event.type, bytes=len(event.payload()))
            return
        key = self._next_id()
        event.id = format_id(key)
        self._log.append((key, event))
        self._trim(key[0])
        if self.counters is not None:
            self.counters.published()
        self.fan_out.deliver(event)

    def _trim(self, now_ms: int) -> None:
        oldest = now_ms - self.retention_ms
        while self._log and (len(self._log) > self.max_events or self._log[0][0][0] < oldest):
            self._floor = self._log.popleft()[0]

    def notify(self, notice: Revocation) -> None:
        self.fan_out.revoke(notice)

    def subscribe(self, consumer: Consumer) -> None:
        self.fan_out.subscribe(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        self.fan_out.unsubscribe(consumer)

    async def replay(self, after_id: str) -> Replay:
        after = parse_id(after_id)
        now = _now_ms()
        self._trim(now)
        if after is None or is_expired(after, floor=self._floor, now_ms=now):
            return Replay([], expired=True)
        return Replay([event for key, event in self._log if key > after], expired=False)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.fan_out.end_all("shutdown")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
