"""The Redis broker: live events across every worker and host, and the replay log behind them.

One script appends an event to the stream `keel:events` (trimmed by age and by count) and
publishes its id and payload on `keel:events:live`, atomically: the channel's order is the log's
order, so a stream that subscribed before reading its replay can drop what it already replayed
by id alone, with neither a gap nor a duplicate. Revocation notices go on the same channel and
nowhere else: they are never replayed.

Each worker has one sender (publishes leave in the order their commits finished, and a request
never waits for Redis) and one listener, which hands what arrives to this worker's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from keel.core.events import (
    MAX_EVENT_BYTES,
    Consumer,
    Event,
    EventCounters,
    LocalFanOut,
    Replay,
    Revocation,
    parse_id,
)
from keel.core.logging import get_logger

log = get_logger("keel.events")

STREAM_KEY = "keel:events"
CHANNEL = "keel:events:live"
_NOTICE = "!"  # a channel message that starts with this is a revocation notice, not an event

# KEYS: the stream, the channel. ARGV: how many milliseconds to keep, the most entries to keep, the
# payload. The age bound is reckoned by Redis's own clock, the one its ids are made of.
_PUBLISH_SCRIPT = """
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local id = redis.call('XADD', KEYS[1], 'MINID', '~', string.format('%d-0', math.max(oldest, 0)), '*', 'e', ARGV[3])
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. ' ' .. ARGV[3])
return id
"""

OUTGOING_LIMIT = 10_000
RECONNECT_SECONDS = 1.0


class RedisBroker:
    def __init__(
        self,
        redis: Redis,
        *,
        retention_seconds: float,
        max_events: int,
        counters: EventCounters | None = None,
    ) -> None:
        self.redis = redis
        self.retention_ms = int(retention_seconds * 1000)
        self.max_events = max_events
        self.counters = counters
        self.fan_out = LocalFanOut()
        self._script = redis.register_script(_PUBLISH_SCRIPT)
        self._outgoing: asyncio.Queue[Event | Revocation] = asyncio.Queue(OUTGOING_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    # --- publishing: never blocks or fails the request that committed the change --------------------
    def publish(self, event: Event) -> None:
        if len(event.payload()) > MAX_EVENT_BYTES:
            log.warning("event_too_large", type=event.type, bytes=len(event.payload()))
            return
        self._enqueue(event)

    def notify(self, notice: Revocation) -> None:
        self._enqueue(notice)

    def _enqueue(self, item: Event | Revocation) -> None:
        try:
            self._outgoing.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("event_publish_failed", error="queue_full")
            self._failed()

    def _failed(self) -> None:
        if self.counters is not None:
            self.counters.publish_failed()

    async def _send(self) -> None:
        while True:
            item = await self._outgoing.get()
            try:
                if isinstance(item, Event):
                    await self._script(
                        keys=[STREAM_KEY, CHANNEL], args=[self.retention_ms, self.max_events, item.payload()]
                    )
                    if self.counters is not None:
                        self.counters.published()
                else:
                    await self.redis.publish(CHANNEL, _NOTICE + item.to_json())
            except RedisError as exc:
                log.warning("event_publish_failed", error=type(exc).__name__)
                self._failed()
            finally:
                self._outgoing.task_done()

    async def flush(self) -> None:
        """Wait until everything handed over so far has been sent (for tests and shutdown)."""
        await self._outgoing.join()

    # --- listening: one subscription per worker, fanned out to its streams ------------------------
    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._received(message)
            except (RedisError, OSError) as exc:
                log.warning("event_subscription_lost", error=type(exc).__name__)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            # What was published meanwhile never reached this worker's streams: each ends, and its
            # client resumes from its last id, replayed from the log.
            self.fan_out.end_all("overflow")
            await asyncio.sleep(RECONNECT_SECONDS)

    def _received(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, str):
            return
        try:
            if data.startswith(_NOTICE):
                self.fan_out.revoke(Revocation.from_json(data[1:]))
                return
            event_id, _, payload = data.partition(" ")
            self.fan_out.deliver(Event.from_payload(event_id, payload))
        except (ValueError, KeyError, TypeError):
            log.warning("event_unreadable", bytes=len(data))

    def subscribe(self, consumer: Consumer) -> None:
        self.fan_out.subscribe(consumer)

    def unsubscribe(self, consumer: Consumer) -> None:
        self.fan_out.unsubscribe(consumer)

    # --- replay -----------------------------------------------------------------------------------------
    async def replay(self, after_id: str) -> Replay:
        """The logged events after `after_id`; RedisError goes to the caller (the stream answers 503)."""
        after = parse_id(after_id)
        if after is None:
            return Replay([], expired=True)
        try:
            info = await self.redis.xinfo_stream(STREAM_KEY)
        except ResponseError:  # no log at all (never written, or Redis lost it): nothing to go by
            return Replay([], expired=True)
        # Trimming records no "last removed" id: the oldest entry kept is the floor. A client whose
        # last event was the one trimmed just before it is told to reload: cautious, never a gap.
        # An id past the last one Redis made was never given out.
        last = parse_id(str(info.get("last-generated-id") or "0-0")) or (0, 0)
        first = info.get("first-entry")
        floor = (parse_id(str(first[0])) if first else None) or last
        if after < floor or after > last:
            return Replay([], expired=True)
        entries = cast(
            list[tuple[str, dict[str, str]]],
            await self.redis.xrange(STREAM_KEY, min=f"({after[0]}-{after[1]}", max="+", count=self.max_events),
        )
        events = []
        for event_id, fields in entries:
            try:
                events.append(Event.from_payload(event_id, fields["e"]))
            except (ValueError, KeyError, TypeError):
                log.warning("event_unreadable", id=event_id)
        return Replay(events, expired=False)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._listen())]
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout=5)
        except TimeoutError:  # Redis is down at startup: the listener keeps trying, streams still open
            log.warning("event_subscription_pending")

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=2)
        self.fan_out.end_all("shutdown")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
