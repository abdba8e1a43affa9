"""The live update events each change announces, left on its transaction for after the commit.

A service calls these inside the transaction that makes the change (`after_commit`), so an event
exists only for a change that is durable: a rolled-back or retried write announces nothing, and a
publish that fails later (Redis down) cannot fail the request (see keel.core.db's commit hooks).
Who receives an event is decided per stream from its `list_id` and `user_id`
(keel.services.event_stream).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import Transaction, after_commit
from keel.core.events import Event, Revocation
from keel.schemas.todo import TodoRead
from keel.schemas.todo_list import MemberRead

Target = AsyncSession | Transaction

TODO_CREATED = "todo.created"
TODO_UPDATED = "todo.updated"
TODO_DELETED = "todo.deleted"
LIST_UPDATED = "list.updated"
LIST_DELETED = "list.deleted"
MEMBER_ADDED = "list.member_added"
MEMBER_UPDATED = "list.member_updated"
MEMBER_REMOVED = "list.member_removed"
STREAM_END = "stream.end"
STREAM_RESET = "stream.reset"

EVENT_TYPES = (
    TODO_CREATED,
    TODO_UPDATED,
    TODO_DELETED,
    LIST_UPDATED,
    LIST_DELETED,
    MEMBER_ADDED,
    MEMBER_UPDATED,
    MEMBER_REMOVED,
)


def _todo_body(todo: TodoRead, version: int) -> dict[str, Any]:
    """The todo as GET /todos/{id} shows it, and its version (what its ETag is made of)."""
    return {**todo.model_dump(mode="json"), "version": version}


def _todo_audience(list_id: int | None, owner_id: int | None) -> dict[str, Any]:
    # A todo in a private inbox is its owner's alone; one in a list is its members'.
    return {"list_id": list_id, "about": owner_id if list_id is None else None}


def todo_event(type: str, *, actor_id: int, todo: TodoRead, version: int) -> Event:
    return Event.of(
        type, actor_id=actor_id, **_todo_audience(todo.list_id, todo.owner_id), todo=_todo_body(todo, version)
    )


def todo_deleted(*, actor_id: int, todo_id: int, list_id: int | None, owner_id: int | None) -> Event:
    return Event.of(TODO_DELETED, actor_id=actor_id, **_todo_audience(list_id, owner_id), todo_id=todo_id)


def todo_changed(
    target: Target, *, actor_id: int, todo: TodoRead, version: int, was_list_id: int | None, was_owner_id: int | None
) -> None:
    """A changed todo; moved to another list (or between a list and an inbox), the audience it
    left is told it is gone and the one it joined receives it."""
    if todo.list_id != was_list_id or (todo.list_id is None and todo.owner_id != was_owner_id):
        after_commit(
            target, todo_deleted(actor_id=actor_id, todo_id=todo.id, list_id=was_list_id, owner_id=was_owner_id)
        )
    after_commit(target, todo_event(TODO_UPDATED, actor_id=actor_id, todo=todo, version=version))


def list_updated(
    target: Target, *, actor_id: int, list_id: int, name: str, members_count: int, updated_at: Any, version: int
) -> None:
    summary = {
        "id": list_id,
        "name": name,
        "members_count": members_count,
        "updated_at": updated_at.isoformat().replace("+00:00", "Z"),
        "version": version,
    }
    after_commit(target, Event.of(LIST_UPDATED, actor_id=actor_id, list_id=list_id, list=summary))


def list_deleted(target: Target, *, actor_id: int, list_id: int) -> None:
    after_commit(target, Event.of(LIST_DELETED, actor_id=actor_id, list_id=list_id))


def member_event(type: str, *, actor_id: int, list_id: int, member: MemberRead) -> Event:
    return Event.of(
        type, actor_id=actor_id, list_id=list_id, about=member.user.id, member=member.model_dump(mode="json")
    )


def member_removed(target: Target, *, actor_id: int, list_id: int, user_id: int) -> None:
    after_commit(target, Event.of(MEMBER_REMOVED, actor_id=actor_id, list_id=list_id, about=user_id, user_id=user_id))


def revoked(target: Target, *, session_ids: Sequence[str] = (), token_digests: Sequence[str] = ()) -> None:
    """Sessions or personal access tokens revoked in this transaction: their streams end once it commits."""
    if session_ids or token_digests:
        after_commit(target, Revocation(session_ids=tuple(session_ids), token_digests=tuple(token_digests)))
