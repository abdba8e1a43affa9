"""Live updates: the ticket's shape, and the stream's wire format as the API documents it."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EventTicket(BaseModel):
    ticket: str = Field(description="Opaque; open `GET /api/v1/events?ticket=...` with it within `expires_in` seconds.")
    expires_in: int = Field(description="Seconds the ticket stays valid (30). It opens one stream, once.")


STREAM_DESCRIPTION = """\
A Server-Sent Events stream (`text/event-stream`) of changes to what the caller may see, from
every worker and host.

**Authentication**: `Authorization: Bearer` (an access token, or a personal access token with
`todos:read` or `lists:read`), or `?ticket=` from `POST /api/v1/events/ticket` for browsers, whose
`EventSource` cannot send headers. A bad, expired or used ticket is 401 `invalid_ticket`.

**Resuming**: send the last `id` seen as `Last-Event-ID` (or, for a new `EventSource`, as
`?last_event_id=`; the header wins if both are sent). Every event after it that the caller may see
now is sent first, in order, then live events, with no gap and no duplicate. Events are kept at
least 5 minutes (`KEEL_EVENTS_RETENTION_SECONDS`, default 10). An id older than that, or one that
is not an id at all, starts the stream with `event: stream.reset` and data `{"reason": "expired"}`:
reload your data.

**Wire format**: the stream begins with `retry: 3000`; a comment line (`: heartbeat`) comes every
15 seconds when nothing else does. Each event is `id:` (opaque, increasing), `event:` (its type) and
one `data:` line holding a JSON object with `type` (the same as `event`), `at` (ISO 8601, UTC),
`actor_id` (who made the change), `list_id` (a number, or null for a todo in a private inbox) and:

| type | more data | who receives it |
|---|---|---|
| `todo.created`, `todo.updated` | `todo` (see below) | its owner (inbox), or the list's members |
| `todo.deleted` | `todo_id` | the same |
| `list.updated` | `list`: `{id, name, members_count, updated_at, version}` | the list's members |
| `list.member_added`, `list.member_updated` | `member`: `{user, role, added_at}` | the members, the added user too |
| `list.member_removed` | `user_id` (also when a member leaves) | the members and the removed user |
| `list.deleted` | (nothing more) | everyone who was a member |

`todo` is the todo as `GET /todos/{id}` shows it, plus its `version`; treat both types as an
upsert. An added user receives the list's events from then on; a removed one gets
`list.member_removed` as their last event of it.

A todo moved between lists (or between a list and the inbox) is a `todo.deleted` for the audience
it left (with the old `list_id`) and a `todo.updated` for the one it joined. Creating a list sends
its owner a `list.member_added` about themself.

**Ending**: the server's last event is `event: stream.end` with data `{"reason": ...}`:
`revoked` (the session or token was revoked, the account deactivated or signed out everywhere: do
not reconnect with this credential), `overflow` (the client read too slowly, or this worker lost
its connection to the event bus: reconnect with `last_event_id` and what was missed is replayed)
or `shutdown` (the server is restarting: reconnect).

**Bounds**: at most `KEEL_EVENTS_MAX_STREAMS_PER_USER` (5) open streams per account per worker
(then 429 `too_many_streams` with `Retry-After`), `KEEL_EVENTS_MAX_STREAMS` (1000) per worker
(then 503 `streams_unavailable`), and `KEEL_EVENTS_QUEUE_SIZE` (256) events waiting per stream.
"""
