"""The brokers on their own: order, replay, retention, the replay/live seam, and failures that must
not reach the request. The Redis broker runs against KEEL_TEST_REDIS_URL (skipped without it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlmodel import select

from keel.core.config import Settings
from keel.core.db import Database, after_commit
from keel.core.events import Event, InProcessBroker, Replay, Revocation
from keel.core.events_redis import CHANNEL, STREAM_KEY, RedisBroker
from keel.core.redis import create_redis
from keel.services.event_stream import LiveStream
from keel.services.event_tickets import StreamCredential

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the broker is the subject here


class Counts:
    def __init__(self) -> None:
        self.published_count = 0
        self.failures = 0

    def published(self) -> None:
        self.published_count += 1

    def publish_failed(self) -> None:
        self.failures += 1

    def delivered(self, count: int) -> None:
        return None

    def stream_opened(self) -> None:
        return None

    def stream_closed(self) -> None:
        return None

    def stream_ended(self, reason: str) -> None:
        return None


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.notices: list[Revocation] = []
        self.ended: list[str] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def revoke(self, notice: Revocation) -> None:
        self.notices.append(notice)

    def end(self, reason: str) -> None:
        self.ended.append(reason)


def todo(n: int, owner: int = 1) -> Event:
    return Event.of("todo.deleted", actor_id=owner, list_id=None, about=owner, todo_id=n)


@pytest.fixture
async def redis_broker(backend: str, redis_url: str) -> AsyncIterator[RedisBroker]:
    # Through the `redis_url` fixture, so these tests run with the others on the shared Redis
    # (tests/parallel.py): its stream and channel are the same for every worker. Read from the
    # environment instead, the SQLite-parametrised copy ran beside them, and another test's
    # event arrived among its own.
    redis = create_redis(redis_url)
    await redis.delete(STREAM_KEY)
    broker = RedisBroker(redis, retention_seconds=600, max_events=1000, counters=Counts())
    await broker.start()
    yield broker
    await broker.stop()
    await redis.aclose()


class TestInProcessBroker:
    async def test_consumers_get_events_in_order_with_increasing_ids(self, backend: str) -> None:
        broker = InProcessBroker(retention_seconds=600, max_events=100)
        seen = Collector()
        broker.subscribe(seen)
        for n in range(50):
            broker.publish(todo(n))
        assert [event.data["todo_id"] for event in seen.events] == list(range(50))
        keys = [tuple(map(int, event.id.split("-"))) for event in seen.events]
        assert keys == sorted(keys)
        assert len(set(keys)) == 50
        broker.unsubscribe(seen)
        broker.publish(todo(99))
        assert len(seen.events) == 50

    async def test_replay_after_an_id_and_the_bounds_of_the_log(self, backend: str) -> None:
        broker = InProcessBroker(retention_seconds=600, max_events=10)
        seen = Collector()
        broker.subscribe(seen)
        for n in range(5):
            broker.publish(todo(n))
        log = seen.events
        assert (await broker.replay(log[1].id)).events == log[2:]
        assert (await broker.replay(log[-1].id)) == Replay([], expired=False)
        assert (await broker.replay("0-0")).expired  # from before this process began
        for n in range(5, 30):  # past the count bound: the oldest are gone
            broker.publish(todo(n))
        assert (await broker.replay(log[1].id)).expired
        assert (await broker.replay(seen.events[-3].id)).events == seen.events[-2:]

    async def test_old_events_leave_the_log(self, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
        broker = InProcessBroker(retention_seconds=300, max_events=100)
        seen = Collector()
        broker.subscribe(seen)
        broker.publish(todo(1))
        start = seen.events[0].id
        assert (await broker.replay(start)) == Replay([], expired=False)
        import keel.core.events as events_module

        later = events_module._now_ms() + 301_000
        monkeypatch.setattr(events_module, "_now_ms", lambda: later)
        broker.publish(todo(2))
        assert [event.data["todo_id"] for event in (await broker.replay(start)).events] == [2]
        before = f"{int(start.split('-')[0]) - 1}-0"
        assert (await broker.replay(before)).expired  # todo 1 has left the log: it would be missed

    @pytest.mark.parametrize("garbage", ["", "x", "1", "1-", "-1", "1-2-3", "9" * 50, f"{10**16}-0"])
    async def test_garbage_and_future_ids_are_expired_not_errors(self, backend: str, garbage: str) -> None:
        broker = InProcessBroker(retention_seconds=600, max_events=10)
        broker.publish(todo(1))
        assert (await broker.replay(garbage)).expired

    async def test_notices_reach_consumers_and_never_the_log(self, backend: str) -> None:
        broker = InProcessBroker(retention_seconds=600, max_events=10)
        seen = Collector()
        broker.subscribe(seen)
        broker.notify(Revocation(session_ids=("s1",)))
        assert seen.notices == [Revocation(session_ids=("s1",))]
        assert (await broker.replay("0-0")).events == []


class TestTheSeam:
    async def test_events_during_the_replay_are_neither_lost_nor_repeated(self, backend: str) -> None:
        broker = InProcessBroker(retention_seconds=600, max_events=100)
        seen = Collector()
        broker.subscribe(seen)
        for n in range(4):
            broker.publish(todo(n))
        stream = LiveStream(StreamCredential(1, session_id="s"), set(), queue_size=8)
        broker.subscribe(stream)  # subscribed first ...
        replay = await broker.replay(seen.events[1].id)  # ... the replay read ...
        broker.publish(todo(4))  # ... an event lands in between, and a slower read would include it too:
        again = await broker.replay(seen.events[1].id)
        taken = stream.go_live([*replay.events, *again.events])
        broker.publish(todo(5))
        assert [event.data["todo_id"] for event in taken] == [2, 3, 4]
        assert [event.data["todo_id"] for event in stream.queue] == [5]

    async def test_a_stream_sees_its_lists_and_follows_its_membership(self, backend: str) -> None:
        stream = LiveStream(StreamCredential(7, session_id="s"), {1}, queue_size=8)
        stream.go_live([])
        listed = Event.of("todo.deleted", actor_id=2, list_id=1, todo_id=1)
        other = Event.of("todo.deleted", actor_id=2, list_id=2, todo_id=2)
        assert stream.sees(listed)
        assert not stream.sees(other)
        assert stream.sees(Event.of("list.member_added", actor_id=2, list_id=2, about=7))
        assert stream.sees(other)
        assert stream.sees(Event.of("list.member_removed", actor_id=2, list_id=1, about=7, user_id=7))
        assert not stream.sees(listed)
        assert not stream.sees(Event.of("todo.deleted", actor_id=8, list_id=None, about=8, todo_id=3))

    async def test_revocation_ends_only_the_matching_credential(self, backend: str) -> None:
        session = LiveStream(StreamCredential(1, session_id="s1"), set(), queue_size=8)
        token = LiveStream(StreamCredential(1, token_digest="d1"), set(), queue_size=8)
        for stream in (session, token):
            stream.go_live([])
            stream.revoke(Revocation(session_ids=("s2",), token_digests=("d2",)))
            assert stream.ended is None
        session.revoke(Revocation(session_ids=("s1",)))
        token.revoke(Revocation(token_digests=("d1",)))
        assert session.ended == token.ended == "revoked"


async def _until(condition: Callable[[], bool]) -> None:
    """Poll until the listener task has handed everything over (it runs on its own)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 seconds")


async def _failing_transaction(database: Database) -> None:
    async with database.transaction() as transaction:
        after_commit(transaction, "failed transaction")
        raise RuntimeError


class TestAfterCommit:
    async def test_only_committed_work_reaches_the_hooks(self, backend: str, settings: Settings) -> None:
        database = Database(settings)
        given: list[object] = []
        database.commit_hooks.append(given.extend)
        try:
            async with database.session() as session:
                await session.exec(select(1))
                after_commit(session, "rolled back")
                await session.rollback()
                after_commit(session, "committed")
                await session.commit()
            async with database.session() as session:
                after_commit(session, "never committed")
            with pytest.raises(RuntimeError):
                await _failing_transaction(database)
            async with database.transaction() as transaction:
                after_commit(transaction, "transaction")
            assert given == ["committed", "transaction"]
        finally:
            await database.dispose()

    async def test_a_failing_hook_fails_nothing(self, backend: str, settings: Settings) -> None:
        database = Database(settings)

        def broken(items: object) -> None:
            raise ConnectionError("the bus is down")

        database.commit_hooks.append(broken)
        try:
            async with database.session() as session:
                after_commit(session, "x")
                await session.commit()
        finally:
            await database.dispose()


class TestRedisBroker:
    async def test_order_replay_and_the_channel(self, redis_broker: RedisBroker) -> None:
        seen = Collector()
        redis_broker.subscribe(seen)
        for n in range(20):
            redis_broker.publish(todo(n))
        await redis_broker.flush()
        await _until(lambda: len(seen.events) >= 20)
        assert [event.data["todo_id"] for event in seen.events] == list(range(20))
        logged = (await redis_broker.replay(seen.events[0].id)).events
        assert [event.id for event in logged] == [event.id for event in seen.events[1:]]
        assert [event.data for event in logged] == [event.data for event in seen.events[1:]]
        assert (await redis_broker.replay(seen.events[-1].id)) == Replay([], expired=False)

    async def test_notices_go_on_the_channel_only(self, redis_broker: RedisBroker) -> None:
        seen = Collector()
        redis_broker.subscribe(seen)
        redis_broker.notify(Revocation(token_digests=("abc",)))
        await redis_broker.flush()
        await _until(lambda: bool(seen.notices))
        assert seen.notices == [Revocation(token_digests=("abc",))]
        assert (await redis_broker.replay("0-0")).events == []

    async def test_trimmed_and_garbage_ids_are_expired(self, redis_broker: RedisBroker) -> None:
        for n in range(3):
            redis_broker.publish(todo(n))
        await redis_broker.flush()
        entries = await redis_broker.redis.xrange(STREAM_KEY)
        assert entries is not None
        first, last = str(entries[0][0]), str(entries[-1][0])
        await redis_broker.redis.xtrim(STREAM_KEY, maxlen=1, approximate=False)  # as the count bound would
        assert (await redis_broker.replay(first)).expired
        assert (await redis_broker.replay(last)) == Replay([], expired=False)
        assert (await redis_broker.replay("garbage")).expired
        assert (await redis_broker.replay(f"{10**14}-0")).expired  # never given out

    async def test_a_publish_that_fails_is_counted_not_raised(self, backend: str, tmp_path: Path) -> None:
        redis: Redis = create_redis("redis://127.0.0.1:1/0")  # nothing listens there
        counts = Counts()
        broker = RedisBroker(redis, retention_seconds=600, max_events=10, counters=counts)
        sender = asyncio.create_task(broker._send())
        try:
            broker.publish(todo(1))  # returns at once: the request that committed is not held up
            await asyncio.wait_for(broker.flush(), 10)
            assert counts.failures == 1
            assert counts.published_count == 0
        finally:
            sender.cancel()
            await redis.aclose()
        assert CHANNEL  # the channel name is part of the deployment contract
