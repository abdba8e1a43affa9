"""Live updates through the HTTP API, read as a client reads the stream, on both backends: SQLite
with the in-process broker, and PostgreSQL with the Redis broker (pub/sub and the replay stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from keel.core.config import Settings
from keel.core.events import Event
from keel.core.personal_token import format_scopes, new_token, token_hash
from keel.main import create_app
from keel.models import PersonalAccessToken, utcnow
from keel.services import event_tickets
from tests.factories import Tokens, assert_problem, create_user, login
from tests.routes.sse import EVENTS, Stream, open_stream

TICKET = "/api/v1/events/ticket"
TODOS = "/api/v1/todos"
LISTS = "/api/v1/lists"
HEARTBEAT = 0.3


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with a short heartbeat, a small queue and few streams per user, so bounds are cheap to reach."""
    tuned = settings.model_copy(
        update={"events_heartbeat_seconds": HEARTBEAT, "events_queue_size": 8, "events_max_streams_per_user": 3}
    )
    application = create_app(tuned)
    async with application.router.lifespan_context(application):
        yield application


async def user(app: FastAPI, client: httpx.AsyncClient) -> Tokens:
    return await login(client, await create_user(app))


async def user_id(client: httpx.AsyncClient, tokens: Tokens) -> int:
    me = await client.get("/api/v1/users/me", headers=tokens.headers)
    value = me.json()["id"]
    assert isinstance(value, int)
    return value


async def started(stream: Stream) -> Stream:
    assert stream.status == 200, stream.body
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert (await stream.next()).retry == 3000
    return stream


async def new_list(client: httpx.AsyncClient, owner: Tokens, name: str = "Groceries") -> int:
    created = await client.post(LISTS, json={"name": name}, headers=owner.headers)
    assert created.status_code == 201, created.text
    list_id = created.json()["id"]
    assert isinstance(list_id, int)
    return list_id


async def invite(client: httpx.AsyncClient, owner: Tokens, list_id: int, username: str, role: str = "editor") -> None:
    added = await client.post(
        f"{LISTS}/{list_id}/members", json={"username": username, "role": role}, headers=owner.headers
    )
    assert added.status_code == 201, added.text


async def username_of(client: httpx.AsyncClient, tokens: Tokens) -> str:
    name = (await client.get("/api/v1/users/me", headers=tokens.headers)).json()["username"]
    assert isinstance(name, str)
    return name


def envelope(frame: Any, type: str) -> dict[str, Any]:
    assert frame.event == type, frame
    data: dict[str, Any] = frame.json
    assert data["type"] == type
    assert data["at"].endswith("Z")
    assert frame.id
    return data


class TestInbox:
    async def test_the_owner_sees_their_todos_change_and_no_one_else_does(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner, other = await user(app, client), await user(app, client)
        owner_id = await user_id(client, owner)
        async with open_stream(app, headers=owner.headers) as mine, open_stream(app, headers=other.headers) as theirs:
            await started(mine)
            await started(theirs)
            created = (await client.post(TODOS, json={"title": "Milk"}, headers=owner.headers)).json()
            patched = await client.patch(f"{TODOS}/{created['id']}", json={"completed": True}, headers=owner.headers)
            assert (await client.delete(f"{TODOS}/{created['id']}", headers=owner.headers)).status_code == 204

            first = envelope(await mine.next_event(), "todo.created")
            assert first["actor_id"] == owner_id
            assert first["list_id"] is None
            shown = (await client.get(f"{TODOS}/{created['id']}", headers=owner.headers)).status_code
            assert shown == 404  # gone by now; what the event carried is what GET showed then:
            assert {k: v for k, v in first["todo"].items() if k != "version"} == created
            assert first["todo"]["version"] == 1
            second = envelope(await mine.next_event(), "todo.updated")
            assert {k: v for k, v in second["todo"].items() if k != "version"} == patched.json()
            assert second["todo"]["version"] == 2
            third = envelope(await mine.next_event(), "todo.deleted")
            assert third["todo_id"] == created["id"]
            assert [first, second, third] == sorted([first, second, third], key=lambda d: d["at"])
            await theirs.nothing_within(0.5)

    async def test_ids_increase(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            for n in range(5):
                await client.post(TODOS, json={"title": f"t{n}"}, headers=owner.headers)
            ids = [(await stream.next_event()).id for _ in range(5)]
        keys = [tuple(int(part) for part in str(event_id).split("-")) for event_id in ids]
        assert keys == sorted(keys)
        assert len(set(keys)) == 5

    async def test_a_failed_write_announces_nothing(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        todo = (await client.post(TODOS, json={"title": "Milk"}, headers=owner.headers)).json()
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            stale = await client.patch(
                f"{TODOS}/{todo['id']}", json={"title": "x"}, headers={**owner.headers, "If-Match": '"stale"'}
            )
            assert stale.status_code == 412
            invalid = await client.patch(f"{TODOS}/{todo['id']}", json={"list_id": 999}, headers=owner.headers)
            assert invalid.status_code == 404
            await stream.nothing_within(0.5)


class TestLists:
    async def test_members_see_a_lists_todos_and_outsiders_do_not(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner, viewer, outsider = [await user(app, client) for _ in range(3)]
        list_id = await new_list(client, owner)
        await invite(client, owner, list_id, await username_of(client, viewer), role="viewer")
        async with (
            open_stream(app, headers=viewer.headers) as seen,
            open_stream(app, headers=outsider.headers) as unseen,
        ):
            await started(seen)
            await started(unseen)
            await client.post(TODOS, json={"title": "Eggs", "list_id": list_id}, headers=owner.headers)
            await client.patch(f"{LISTS}/{list_id}", json={"name": "Food"}, headers=owner.headers)
            todo = envelope(await seen.next_event(), "todo.created")
            assert todo["list_id"] == list_id
            assert todo["todo"]["title"] == "Eggs"
            renamed = envelope(await seen.next_event(), "list.updated")
            assert renamed["list"]["name"] == "Food"
            assert set(renamed["list"]) == {"id", "name", "members_count", "updated_at", "version"}
            assert renamed["list"]["members_count"] == 2
            await unseen.nothing_within(0.5)

    async def test_adding_starts_and_removing_stops_a_members_events(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner, newcomer = await user(app, client), await user(app, client)
        newcomer_id = await user_id(client, newcomer)
        list_id = await new_list(client, owner)
        async with open_stream(app, headers=newcomer.headers) as stream:
            await started(stream)
            await client.post(TODOS, json={"title": "before", "list_id": list_id}, headers=owner.headers)
            await invite(client, owner, list_id, await username_of(client, newcomer))
            added = envelope(await stream.next_event(), "list.member_added")
            assert added["member"]["user"]["id"] == newcomer_id
            assert added["member"]["role"] == "editor"
            await client.post(TODOS, json={"title": "during", "list_id": list_id}, headers=owner.headers)
            assert envelope(await stream.next_event(), "todo.created")["todo"]["title"] == "during"
            changed = await client.patch(
                f"{LISTS}/{list_id}/members/{newcomer_id}", json={"role": "viewer"}, headers=owner.headers
            )
            assert changed.status_code == 200
            assert envelope(await stream.next_event(), "list.member_updated")["member"]["role"] == "viewer"
            removed = await client.delete(f"{LISTS}/{list_id}/members/{newcomer_id}", headers=owner.headers)
            assert removed.status_code == 204
            assert envelope(await stream.next_event(), "list.member_removed")["user_id"] == newcomer_id
            await client.post(TODOS, json={"title": "after", "list_id": list_id}, headers=owner.headers)
            await stream.nothing_within(0.5)

    async def test_a_todo_moved_between_lists_leaves_one_audience_and_joins_the_other(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner, first_member, second_member = [await user(app, client) for _ in range(3)]
        first, second = await new_list(client, owner, "A"), await new_list(client, owner, "B")
        await invite(client, owner, first, await username_of(client, first_member))
        await invite(client, owner, second, await username_of(client, second_member))
        todo = (await client.post(TODOS, json={"title": "Move me", "list_id": first}, headers=owner.headers)).json()
        async with (
            open_stream(app, headers=first_member.headers) as leaving,
            open_stream(app, headers=second_member.headers) as joining,
            open_stream(app, headers=owner.headers) as both,
        ):
            for stream in (leaving, joining, both):
                await started(stream)
            moved = await client.patch(f"{TODOS}/{todo['id']}", json={"list_id": second}, headers=owner.headers)
            assert moved.status_code == 200
            gone = envelope(await leaving.next_event(), "todo.deleted")
            assert gone["todo_id"] == todo["id"]
            assert gone["list_id"] == first
            arrived = envelope(await joining.next_event(), "todo.updated")
            assert arrived["list_id"] == second
            assert arrived["todo"]["list_id"] == second
            assert [(await both.next_event()).event for _ in range(2)] == ["todo.deleted", "todo.updated"]
            await leaving.nothing_within(0.3)
            # Into the owner's inbox: the list's members are told it left; only the owner sees it now.
            await client.patch(f"{TODOS}/{todo['id']}", json={"list_id": None}, headers=owner.headers)
            assert envelope(await joining.next_event(), "todo.deleted")["list_id"] == second
            assert [(await both.next_event()).event for _ in range(2)] == ["todo.deleted", "todo.updated"]

    async def test_deleting_a_list_tells_its_members(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner, member = await user(app, client), await user(app, client)
        list_id = await new_list(client, owner)
        await invite(client, owner, list_id, await username_of(client, member))
        async with open_stream(app, headers=member.headers) as stream:
            await started(stream)
            assert (await client.delete(f"{LISTS}/{list_id}", headers=owner.headers)).status_code == 204
            deleted = envelope(await stream.next_event(), "list.deleted")
            assert deleted["list_id"] == list_id


class TestTickets:
    async def test_a_ticket_opens_one_stream_once(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        issued = await client.post(TICKET, headers=owner.headers)
        assert issued.status_code == 201, issued.text
        body = issued.json()
        assert body["expires_in"] == 30
        assert len(body["ticket"]) >= 40
        assert issued.headers["cache-control"] == "no-store"
        async with open_stream(app, query={"ticket": body["ticket"]}) as stream:
            await started(stream)
            await client.post(TODOS, json={"title": "Milk"}, headers=owner.headers)
            envelope(await stream.next_event(), "todo.created")
        async with open_stream(app, query={"ticket": body["ticket"]}) as again:
            assert again.status == 401
            assert again.problem["code"] == "invalid_ticket"

    async def test_unknown_and_expired_tickets_are_refused(
        self, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for ticket in ("nonsense", "x" * 150):
            async with open_stream(app, query={"ticket": ticket}) as stream:
                assert stream.status == 401
                assert stream.problem["code"] == "invalid_ticket"
        async with open_stream(app) as anonymous:
            assert anonymous.status == 401
        owner = await user(app, client)
        monkeypatch.setattr(event_tickets, "TICKET_TTL_SECONDS", 1)
        ticket = (await client.post(TICKET, headers=owner.headers)).json()["ticket"]
        import asyncio

        await asyncio.sleep(1.2)
        async with open_stream(app, query={"ticket": ticket}) as stream:
            assert stream.status == 401
            assert stream.problem["code"] == "invalid_ticket"


class TestResume:
    async def test_a_reconnect_receives_what_it_missed_then_live_events(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner = await user(app, client)
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            await client.post(TODOS, json={"title": "seen"}, headers=owner.headers)
            last = (await stream.next_event()).id
        assert last is not None
        for n in range(3):
            await client.post(TODOS, json={"title": f"missed {n}"}, headers=owner.headers)
        for how in ({"headers": {**owner.headers, "Last-Event-ID": last}}, {"query": {"last_event_id": last}}):
            async with open_stream(app, headers=how.get("headers", owner.headers), query=how.get("query")) as again:
                await started(again)
                titles = [(await again.next_event()).json["todo"]["title"] for _ in range(3)]
                assert titles == ["missed 0", "missed 1", "missed 2"]
                await again.nothing_within(0.3)
        # The header wins over the query parameter.
        headers = {**owner.headers, "Last-Event-ID": last}
        async with open_stream(app, headers=headers, query={"last_event_id": "1-0"}) as both:
            await started(both)
            assert (await both.next_event()).json["todo"]["title"] == "missed 0"

    @pytest.mark.parametrize("resume", ["garbage", "1-0", "99999999999999-0", "-", "1-"])
    async def test_an_id_the_log_does_not_reach_resets_the_client(
        self, app: FastAPI, client: httpx.AsyncClient, resume: str
    ) -> None:
        owner = await user(app, client)
        async with open_stream(app, headers={**owner.headers, "Last-Event-ID": resume}) as stream:
            await started(stream)
            reset = await stream.next_event()
            assert reset.event == "stream.reset"
            assert reset.id is None
            assert reset.json["reason"] == "expired"
            await client.post(TODOS, json={"title": "live"}, headers=owner.headers)
            envelope(await stream.next_event(), "todo.created")


class TestEnding:
    async def test_logging_out_ends_the_stream_at_once(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            out = await client.post("/api/v1/auth/logout", headers=owner.headers, json={"refresh_token": owner.refresh})
            assert out.status_code == 204
            end = await stream.next_event(wait=1.0)
            assert end.event == "stream.end"
            assert end.json["reason"] == "revoked"
            await stream.until_end()

    async def test_logout_everywhere_ends_a_stream_opened_with_a_ticket(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner = await user(app, client)
        ticket = (await client.post(TICKET, headers=owner.headers)).json()["ticket"]
        other_device = await login(client, await _account_of(app, client, owner))
        async with open_stream(app, query={"ticket": ticket}) as stream:
            await started(stream)
            assert (await client.post("/api/v1/auth/logout-all", headers=other_device.headers)).status_code == 204
            end = await stream.next_event(wait=1.0)
            assert end.event == "stream.end"
            assert end.json["reason"] == "revoked"

    async def test_revoking_a_personal_access_token_ends_its_stream(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner = await user(app, client)
        owner_id = await user_id(client, owner)
        token = new_token()
        async with app.state.database.session() as session:
            row = PersonalAccessToken(
                user_id=owner_id,
                name="cli",
                token_hash=token_hash(token),
                scopes=format_scopes({"todos:read"}),
                expires_at=utcnow() + timedelta(days=1),
            )
            session.add(row)
            await session.commit()
            token_id = row.id
        async with open_stream(app, headers={"Authorization": f"Bearer {token}"}) as stream:
            await started(stream)
            await client.post(TODOS, json={"title": "Milk"}, headers=owner.headers)
            envelope(await stream.next_event(), "todo.created")
            revoked = await client.delete(f"/api/v1/tokens/{token_id}", headers=owner.headers)
            assert revoked.status_code == 204
            end = await stream.next_event(wait=1.0)
            assert end.json == {**end.json, "type": "stream.end", "reason": "revoked"}

    async def test_a_slow_reader_is_dropped_with_overflow(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        owner_id = await user_id(client, owner)
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            (consumer,) = app.state.live_updates.broker.fan_out.consumers
            for n in range(20):  # all at once, before the stream can write any: more than its queue holds
                consumer.deliver(Event("todo.deleted", {"type": "todo.deleted"}, None, owner_id, id=f"{10**13}-{n}"))
            frames = [await stream.next_event() for _ in range(9)]
            assert [frame.event for frame in frames] == ["todo.deleted"] * 8 + ["stream.end"]
            assert frames[-1].json["reason"] == "overflow"
            await stream.until_end()
        assert app.state.live_updates.open_total == 0

    async def test_heartbeats_keep_an_idle_stream_open(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        async with open_stream(app, headers=owner.headers) as stream:
            await started(stream)
            beat = await stream.next(wait=HEARTBEAT * 4)
            assert beat.comment == "heartbeat"
            assert beat.event is None


class TestBounds:
    async def test_a_user_may_hold_only_so_many_streams(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        owner = await user(app, client)
        async with (
            open_stream(app, headers=owner.headers) as one,
            open_stream(app, headers=owner.headers) as two,
            open_stream(app, headers=owner.headers) as three,
        ):
            for stream in (one, two, three):
                await started(stream)
            async with open_stream(app, headers=owner.headers) as fourth:
                assert fourth.status == 429
                assert fourth.problem["code"] == "too_many_streams"
                assert int(fourth.headers["retry-after"]) >= 1
            other = await user(app, client)  # the bound is per user
            async with open_stream(app, headers=other.headers) as theirs:
                await started(theirs)
            metrics = (await client.get("/metrics")).text
            assert "keel_event_streams_open 3.0" in metrics
        async with open_stream(app, headers=owner.headers) as again:  # the closed ones no longer count
            await started(again)

    async def test_head_answers_the_streams_headers_without_opening_one(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        owner = await user(app, client)
        head = await client.head(EVENTS, headers=owner.headers)
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.content == b""
        assert app.state.live_updates.open_total == 0

    async def test_a_stream_is_never_compressed(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        # A compressor per stream, held for its whole life, would cost about 2 MB each (bench/events.py).
        owner = await user(app, client)
        async with open_stream(app, headers={**owner.headers, "Accept-Encoding": "zstd, br, gzip"}) as stream:
            await started(stream)
            assert "content-encoding" not in stream.headers

    async def test_a_ticket_needs_a_bearer_token(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post(TICKET), 401, "not_authenticated")


async def _account_of(app: FastAPI, client: httpx.AsyncClient, tokens: Tokens) -> Any:
    """The factory account behind `tokens`, to sign in as it again (another device)."""
    from tests.factories import DEFAULT_PASSWORD, Account

    me = (await client.get("/api/v1/users/me", headers=tokens.headers)).json()
    return Account(id=me["id"], email=me["email"], username=me["username"], password=DEFAULT_PASSWORD)
