"""Live update streams: who may open one, what each one sees, and when it ends.

A stream is a `Consumer` of the worker's broker (keel.core.events). It keeps its caller's user id
and the ids of the lists they are a member of (read once, at connect), so deciding whether an event
is theirs is a set lookup; membership events about the caller keep that set current. It is
subscribed before its replay is read, and drops any live event whose id it has already passed: no
gap and no duplicate at the seam. It ends with a `stream.end` event when its credential is revoked
(a notice on the bus, re-checked at every heartbeat in case a notice was lost), when its caller
reads too slowly for its bounded queue, or when the worker shuts down.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import col

from keel.core.config import Settings
from keel.core.db import Database, Prebuilt
from keel.core.errors import StreamsFull, TooManyStreams
from keel.core.events import Broker, Event, EventCounters, Revocation, now_iso, parse_id
from keel.core.logging import get_logger
from keel.core.session_cache import SessionCache
from keel.models import ListMember
from keel.services import personal_token as personal_token_service
from keel.services import session as session_service
from keel.services.event_tickets import StreamCredential, TicketStore
from keel.services.events import LIST_DELETED, MEMBER_ADDED, MEMBER_REMOVED, STREAM_END, STREAM_RESET

log = get_logger("keel.events")

RETRY_MILLISECONDS = 3000
# How long a client told "too many streams" should wait: about as long as a closed tab takes to be noticed.
RETRY_AFTER_SECONDS = 5


def control_frame(type: str, **data: object) -> bytes:
    """A frame that is not an event of the log: no id, so the client's resume point stays where it was."""
    body = json.dumps({"type": type, "at": now_iso(), **data}, separators=(",", ":"))
    return f"event: {type}\ndata: {body}\n\n".encode()


_MEMBERSHIPS = Prebuilt(
    sa.select(col(ListMember.list_id)).where(col(ListMember.user_id) == sa.bindparam("user_id")), tuple
)


class LiveStream:
    """One open stream: what it may see, and its queue of frames not yet written."""

    __slots__ = ("_wake", "credential", "ended", "lists", "live", "pending", "position", "queue", "queue_size")

    def __init__(self, credential: StreamCredential, lists: set[int], queue_size: int) -> None:
        self.credential = credential
        self.lists = lists
        self.queue: deque[Event] = deque()
        self.queue_size = queue_size
        self.position: tuple[int, int] | None = None  # the last id taken in (replayed or live)
        self.pending: list[Event] | None = []  # live events that came while the replay was read
        self.live = False
        self.ended: str | None = None
        self._wake = asyncio.Event()

    @property
    def user_id(self) -> int:
        return self.credential.user_id

    # --- the broker's side (keel.core.events.Consumer) --------------------------------------------
    def deliver(self, event: Event) -> None:
        if self.ended is not None:
            return
        if self.pending is not None:
            self.pending.append(event)
            return
        self._take(event)

    def _take(self, event: Event, *, bounded: bool = True) -> None:
        key = parse_id(event.id)
        if key is None or (self.position is not None and key <= self.position):
            return  # already replayed
        self.position = key
        if not self.sees(event):
            return
        if bounded and len(self.queue) >= self.queue_size:
            self.end("overflow")
            return
        self.queue.append(event)
        self._wake.set()

    def sees(self, event: Event) -> bool:
        """Whether the caller may see the event, keeping the set of their lists current as it goes."""
        list_id = event.list_id
        if list_id is None:
            return event.user_id == self.user_id
        about_me = event.user_id == self.user_id
        if about_me and event.type == MEMBER_ADDED:
            self.lists.add(list_id)
            return True
        if about_me and event.type == MEMBER_REMOVED:
            self.lists.discard(list_id)  # their last event of that list
            return True
        if list_id not in self.lists:
            return False
        if event.type == LIST_DELETED:
            self.lists.discard(list_id)
        return True

    def revoke(self, notice: Revocation) -> None:
        if self.credential.revoked_by(notice):
            self.queue.clear()  # nothing more is shown with a credential that no longer counts
            self.end("revoked")

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._wake.set()

    # --- the connection's side ------------------------------------------------------------------------
    def go_live(self, replayed: Sequence[Event]) -> list[Event]:
        """Take in the replay, then what arrived meanwhile; from now on events are taken as they come."""
        for event in [*replayed, *(self.pending or ())]:
            self._take(event, bounded=False)  # a replay is as long as what was missed
        self.pending = None
        taken = list(self.queue)
        self.queue.clear()
        return taken

    async def next_batch(self, wait_seconds: float) -> list[Event] | None:
        """The events queued by now, waiting up to `wait_seconds` for one; None when the wait ran out."""
        if not self.queue and self.ended is None:
            self._wake.clear()
            try:
                async with asyncio.timeout(wait_seconds):
                    await self._wake.wait()
            except TimeoutError:
                return None
        batch = list(self.queue)
        self.queue.clear()
        return batch


@dataclass(slots=True)
class LiveUpdates:
    """A worker's live updates: its broker, its tickets, and the count of its open streams."""

    broker: Broker
    tickets: TicketStore
    settings: Settings
    counters: EventCounters | None = None
    open_total: int = 0
    _per_user: dict[int, int] = field(default_factory=dict)

    def committed(self, items: Sequence[object]) -> None:
        """The database's commit hook: what a committed transaction announced goes on the bus."""
        for item in items:
            if isinstance(item, Event):
                self.broker.publish(item)
            elif isinstance(item, Revocation):
                self.broker.notify(item)

    def _admit(self, user_id: int) -> None:
        if self._per_user.get(user_id, 0) >= self.settings.events_max_streams_per_user:
            raise TooManyStreams(retry_after=RETRY_AFTER_SECONDS)
        if self.open_total >= self.settings.events_max_streams:
            raise StreamsFull(retry_after=RETRY_AFTER_SECONDS)
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        self.open_total += 1
        if self.counters is not None:
            self.counters.stream_opened()

    def _release(self, user_id: int) -> None:
        left = self._per_user.get(user_id, 1) - 1
        if left:
            self._per_user[user_id] = left
        else:
            self._per_user.pop(user_id, None)
        self.open_total -= 1
        if self.counters is not None:
            self.counters.stream_closed()

    async def open(
        self, *, database: Database, cache: SessionCache | None, credential: StreamCredential, last_event_id: str | None
    ) -> AsyncIterator[bytes]:
        """Admit a stream (429 / 503 past the bounds) and return its frames, replay first."""
        self._admit(credential.user_id)
        try:
            lists = {row[0] for row in await database.rows(_MEMBERSHIPS, user_id=credential.user_id)}
            stream = LiveStream(credential, lists, self.settings.events_queue_size)
            self.broker.subscribe(stream)
        except BaseException:
            self._release(credential.user_id)
            raise
        try:
            reset = False
            replayed: list[Event] = []
            if last_event_id is not None:
                replay = await self.broker.replay(last_event_id)
                reset = replay.expired
                replayed = replay.events
            first = stream.go_live(replayed)
        except BaseException:
            self.broker.unsubscribe(stream)
            self._release(credential.user_id)
            raise
        return self._frames(stream, first, reset=reset, database=database, cache=cache)

    async def _frames(
        self, stream: LiveStream, first: list[Event], *, reset: bool, database: Database, cache: SessionCache | None
    ) -> AsyncIterator[bytes]:
        try:
            opening = f"retry: {RETRY_MILLISECONDS}\n\n".encode()
            if reset:
                opening += control_frame(STREAM_RESET, reason="expired")
            yield opening + self._written(first)
            heartbeat = self.settings.events_heartbeat_seconds
            while True:
                batch = await stream.next_batch(heartbeat)
                if batch is None:
                    # Shielded: a client that hangs up mid-check cancels the stream, not the query,
                    # which would otherwise leave its pooled connection unreturned.
                    check = asyncio.ensure_future(credential_is_live(stream.credential, database=database, cache=cache))
                    if not await asyncio.shield(check):
                        stream.end("revoked")
                    else:
                        yield b": heartbeat\n\n"
                        continue
                elif batch:
                    yield self._written(batch)
                if stream.ended is not None:
                    if self.counters is not None:
                        self.counters.stream_ended(stream.ended)
                    yield control_frame(STREAM_END, reason=stream.ended)
                    return
        finally:
            self.broker.unsubscribe(stream)
            self._release(stream.user_id)

    def _written(self, events: list[Event]) -> bytes:
        if self.counters is not None and events:
            self.counters.delivered(len(events))
        return b"".join(event.frame() for event in events)


async def credential_is_live(credential: StreamCredential, *, database: Database, cache: SessionCache | None) -> bool:
    """Whether the stream's credential still counts: checked when a ticket is redeemed, and at every
    heartbeat as a backstop against a lost revocation notice. A check that cannot be made (the
    database or Redis unreachable) keeps the stream rather than end it as revoked."""
    try:
        if credential.session_id is not None:
            return await session_service.is_live(
                database=database, cache=cache, session_id=credential.session_id, user_id=credential.user_id
            )
        assert credential.token_digest is not None
        return await personal_token_service.is_live(database=database, cache=cache, digest=credential.token_digest)
    except Exception as exc:
        log.warning("event_stream_check_failed", error=type(exc).__name__)
        return True
