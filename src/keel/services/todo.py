"""Todos: every query has the caller in its WHERE clause.

A todo with no list is its owner's alone (the private inbox): `owner_id = caller AND list_id IS
NULL`. A todo in a shared list is every member's: `EXISTS (the caller's membership of its list)`.
Anyone else finds nothing (404), exactly as for a todo that does not exist. Members who may read
but not write (viewers) get 403 `forbidden` when they try to change one.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.db import Database, Prebuilt, after_commit
from keel.core.errors import Forbidden, ListNotFound, NotAMember, TodoNotFound
from keel.models import ListMember, MemberRole, Todo, utcnow
from keel.models.todo_list import WRITERS
from keel.schemas.common import Page
from keel.schemas.todo import TodoCreate, TodoRead, TodoSort, TodoUpdate
from keel.services import events, idempotency, versioned
from keel.services.idempotency import Outcome
from keel.services.query import PageQuery, contains, escape_like, like_pattern

# Every column TodoRead shows, so a page is read without building ORM objects.
_COLUMNS = [col(getattr(Todo, name)) for name in TodoRead.model_fields]
_NAMES = tuple(TodoRead.model_fields)
# Built once: a request only binds its values. (Building `insert(...).values(...)` per request
# cost about half of the route's own time.)
_INSERT = Prebuilt(
    sa.insert(Todo).returning(*_COLUMNS),
    tuple,
    binds=[*TodoCreate.model_fields, "owner_id", "completed", "created_at", "updated_at", "version"],
)

_ORDER: dict[TodoSort, tuple[Any, ...]] = {
    TodoSort.CREATED_AT: (col(Todo.created_at).asc(), col(Todo.id).asc()),
    TodoSort.CREATED_AT_DESC: (col(Todo.created_at).desc(), col(Todo.id).desc()),
    # Undated todos go last either way: they are the least urgent.
    TodoSort.DUE_DATE: (col(Todo.due_date).asc().nulls_last(), col(Todo.id).asc()),
    TodoSort.DUE_DATE_DESC: (col(Todo.due_date).desc().nulls_last(), col(Todo.id).desc()),
    TodoSort.PRIORITY: (col(Todo.priority).asc(), col(Todo.id).asc()),
    TodoSort.PRIORITY_DESC: (col(Todo.priority).desc(), col(Todo.id).desc()),
}


# Where an Idempotency-Key was used (kept with its record: the same key elsewhere is another request).
IDEMPOTENCY_SCOPE = "POST /api/v1/todos"


async def create(*, database: Database, owner_id: int, data: TodoCreate, idempotency_key: str | None) -> Outcome:
    """Add a todo, once per idempotency key (see keel.services.idempotency).

    One INSERT ... RETURNING rather than an ORM object: nothing is tracked or loaded again, and the
    answer is exactly what the database stored. Without a key that one statement is the whole
    write, so it runs without a transaction around it (two round trips fewer).
    """
    await _check_placement(database, owner_id, data.list_id, data.assignee_id)
    now = utcnow()
    values = {
        **data.model_dump(),
        "owner_id": owner_id,
        "completed": False,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with idempotency.creating(
        database, user_id=owner_id, key=idempotency_key, scope=IDEMPOTENCY_SCOPE, request=data
    ) as creation:
        if creation.outcome is None:
            (row,) = await creation.db.rows(_INSERT, **values)  # an INSERT ... RETURNING returns its row
            creation.keep(_todo_read(row))
    assert creation.outcome is not None
    if not creation.outcome.replayed:  # committed by now (with its key's record, if any)
        created = creation.outcome.body
        assert isinstance(created, TodoRead)
        database.committed([events.todo_event(events.TODO_CREATED, actor_id=owner_id, todo=created, version=1)])
    return creation.outcome


def _todo_read(row: Sequence[Any]) -> TodoRead:
    return TodoRead.model_validate(dict(zip(_NAMES, row, strict=True)))


NOT_A_WRITER = "Viewers of a list cannot change its todos."

# The caller's and the assignee's memberships of a list, in one look.
_MEMBERSHIPS = Prebuilt(
    sa.select(col(ListMember.user_id), col(ListMember.role)).where(
        col(ListMember.list_id) == sa.bindparam("list_id"),
        or_(col(ListMember.user_id) == sa.bindparam("user_id"), col(ListMember.user_id) == sa.bindparam("assignee_id")),
    ),
    tuple,
)


async def _check_placement(database: Database, user_id: int, list_id: int | None, assignee_id: int | None) -> None:
    """A new todo may go into a list where the caller is an owner or editor, assigned to a member of it.

    Nothing to look up for a todo in the caller's own inbox, where only they can be its assignee.
    """
    if list_id is None:
        if assignee_id is not None and assignee_id != user_id:
            raise NotAMember
        return
    roles = {
        row[0]: MemberRole(row[1])
        for row in await database.rows(_MEMBERSHIPS, list_id=list_id, user_id=user_id, assignee_id=assignee_id)
    }
    role = roles.get(user_id)
    if role is None:
        raise ListNotFound
    if role not in WRITERS:
        raise Forbidden(NOT_A_WRITER)
    if assignee_id is not None and assignee_id not in roles:
        raise NotAMember


def _member_of_todos_list(user_id: Any) -> Any:
    """The caller is a member of the todo's list (false for a todo with no list)."""
    return (
        sa.select(sa.literal(1))
        .where(col(ListMember.list_id) == col(Todo.list_id), col(ListMember.user_id) == user_id)
        .correlate(Todo)
        .exists()
    )


def _visible_to(user_id: Any) -> Any:
    """The todos the user may see: their private ones and those of every list they are a member of."""
    return or_(
        sa.and_(col(Todo.list_id).is_(None), col(Todo.owner_id) == user_id),
        _member_of_todos_list(user_id),
    )


_GET = Prebuilt(
    sa.select(*_COLUMNS).where(col(Todo.id) == sa.bindparam("id"), _visible_to(sa.bindparam("owner_id"))),
    tuple,
)


async def get(*, database: Database, owner_id: int, todo_id: int) -> TodoRead:
    """The todo if it belongs to the owner; someone else's is exactly as missing as a deleted one."""
    row = await database.first(_GET, id=todo_id, owner_id=owner_id)
    if row is None:
        raise TodoNotFound
    return _todo_read(row)


async def _owned(session: AsyncSession, user_id: int, todo_id: int) -> Todo:
    """The todo, for a change: the caller's own private one, or one in a list where they may write."""
    member = sa.and_(col(ListMember.list_id) == col(Todo.list_id), col(ListMember.user_id) == user_id)
    statement = (
        select(Todo, ListMember.role)
        .outerjoin(ListMember, member)
        .where(
            col(Todo.id) == todo_id,
            or_(
                sa.and_(col(Todo.list_id).is_(None), col(Todo.owner_id) == user_id),
                col(ListMember.user_id).is_not(None),
            ),
        )
    )
    row = (await session.exec(statement)).one_or_none()
    if row is None:
        raise TodoNotFound
    todo, role = row
    if todo.list_id is not None and MemberRole(role) not in WRITERS:
        raise Forbidden(NOT_A_WRITER)
    return todo


async def _list_roles(session: AsyncSession, list_id: int, *user_ids: int) -> dict[int, MemberRole]:
    statement = select(ListMember.user_id, ListMember.role).where(
        ListMember.list_id == list_id, col(ListMember.user_id).in_(user_ids)
    )
    return {user_id: MemberRole(role) for user_id, role in await session.exec(statement)}


async def _place(session: AsyncSession, user_id: int, todo: Todo, changes: dict[str, Any]) -> None:
    """Check a move to another list (or into the caller's inbox) and the assignee, and settle both.

    Moving needs the right to write in both lists (the current one is checked by `_writable`). A
    todo moved into the inbox becomes the caller's private todo. An assignee carried along who is
    not a member of the new list is unassigned; one named in the change must be a member.
    """
    moving = "list_id" in changes and changes["list_id"] != todo.list_id
    target = changes["list_id"] if moving else todo.list_id
    assignee_named = "assignee_id" in changes
    assignee = changes["assignee_id"] if assignee_named else todo.assignee_id
    if target is None:
        if moving:
            changes["owner_id"] = user_id
        if assignee is not None and assignee != (user_id if moving else todo.owner_id):
            if assignee_named:
                raise NotAMember
            changes["assignee_id"] = None
        return
    if not moving and not assignee_named:
        return
    roles = await _list_roles(session, target, user_id, *([assignee] if assignee is not None else []))
    if moving:
        role = roles.get(user_id)
        if role is None:
            raise ListNotFound
        if role not in WRITERS:
            raise Forbidden(NOT_A_WRITER)
    if assignee is not None and assignee not in roles:
        if assignee_named:
            raise NotAMember
        changes["assignee_id"] = None


async def list_for_owner(
    *,
    database: Database,
    owner_id: int,
    completed: bool | None,
    q: str | None,
    sort: TodoSort,
    limit: int,
    offset: int,
    list_id: int | None = None,
    label: str | None = None,
    assignee_id: int | None = None,
) -> Page[TodoRead]:
    """One page of the owner's inbox, or of a shared list they are a member of, read as plain
    columns (no ORM objects: nothing here is changed). Still one statement: the membership is a
    condition of the page's own query, and is looked up on its own only when the page is empty."""
    query = _list_query(
        sort,
        by_completion=completed is not None,
        search=bool(q),
        in_list=list_id is not None,
        by_label=label is not None,
        by_assignee=assignee_id is not None,
    )
    params = {
        "owner_id": owner_id,
        "completed": completed,
        "pattern": like_pattern(q or ""),
        "limit": limit,
        "list_id": list_id,
        "label_pattern": f"%,{escape_like(label or '')},%",
        "assignee_id": assignee_id,
    }
    rows, total = await query.fetch(database, {**params, "offset": offset})
    if not rows and list_id is not None and not await _is_member(database, owner_id, list_id):
        raise ListNotFound
    # One validation for the whole page, from plain dicts: pydantic's core walks it in one call,
    # where 20 `model_validate(row)` calls would each read the row's attributes from Python.
    items = [dict(zip(_NAMES, row, strict=False)) for row in rows]  # rows also carry the total
    return _PAGE.model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


_PAGE = Page[TodoRead]


_IS_MEMBER = Prebuilt(
    sa.select(col(ListMember.role)).where(
        col(ListMember.list_id) == sa.bindparam("list_id"), col(ListMember.user_id) == sa.bindparam("user_id")
    ),
    tuple,
)


async def _is_member(database: Database, user_id: int, list_id: int) -> bool:
    return await database.first(_IS_MEMBER, list_id=list_id, user_id=user_id) is not None


@cache  # 6 sorts x 2^5 shapes at most
def _list_query(
    sort: TodoSort, *, by_completion: bool, search: bool, in_list: bool, by_label: bool, by_assignee: bool
) -> PageQuery:
    conditions: list[Any]
    if in_list:
        member = (
            sa.select(sa.literal(1))
            .where(
                col(ListMember.list_id) == sa.bindparam("list_id"),
                col(ListMember.user_id) == sa.bindparam("owner_id"),
            )
            .exists()
        )
        conditions = [col(Todo.list_id) == sa.bindparam("list_id"), member]
    else:
        conditions = [col(Todo.owner_id) == sa.bindparam("owner_id"), col(Todo.list_id).is_(None)]
    if by_label:
        stored = sa.type_coerce(col(Todo.labels), sa.Text)
        conditions.append(stored.like(sa.bindparam("label_pattern", type_=sa.String), escape="\\"))
    if by_assignee:
        conditions.append(col(Todo.assignee_id) == sa.bindparam("assignee_id"))
    if by_completion:
        conditions.append(col(Todo.completed) == sa.bindparam("completed"))
    if search:
        pattern = sa.bindparam("pattern", type_=sa.String)
        conditions.append(or_(contains(col(Todo.title), pattern), contains(col(Todo.description), pattern)))
    return PageQuery.of(
        sa.select(*_COLUMNS)
        .where(*conditions)
        .order_by(*_ORDER[sort])
        .limit(sa.bindparam("limit"))
        .offset(sa.bindparam("offset")),
        sa.select(func.count()).select_from(Todo).where(*conditions),
        # Which index serves a search depends on its term; a generic plan would read all the owner's rows.
        plan_with_values=search,
    )


async def update(
    *, database: Database, owner_id: int, todo_id: int, data: TodoUpdate, if_match: IfMatch | None = None
) -> TodoRead:
    """Merge the given fields into the todo (null leaves a required field as it is, and clears an optional one)."""
    changes = data.model_dump(exclude_unset=True)
    for required in ("title", "completed", "priority"):
        if changes.get(required, ...) is None:
            changes.pop(required)  # null means "leave it" for fields that cannot be empty

    async def work(session: AsyncSession) -> TodoRead:
        todo = await _owned(session, owner_id, todo_id)
        if if_match is not None:
            if_match.check(TodoRead.model_validate(todo))
        placed = dict(changes)
        await _place(session, owner_id, todo, placed)
        was_list_id, was_owner_id = todo.list_id, todo.owner_id
        todo.sqlmodel_update(placed)
        todo.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        read = TodoRead.model_validate(todo)
        events.todo_changed(
            session,
            actor_id=owner_id,
            todo=read,
            version=todo.version,
            was_list_id=was_list_id,
            was_owner_id=was_owner_id,
        )
        return read

    return await versioned.edit(database, work, if_match=if_match)


async def delete(*, database: Database, owner_id: int, todo_id: int, if_match: IfMatch | None = None) -> None:
    async def work(session: AsyncSession) -> None:
        todo = await _owned(session, owner_id, todo_id)
        if if_match is not None:
            if_match.check(TodoRead.model_validate(todo))
        assert todo.id is not None
        gone = events.todo_deleted(actor_id=owner_id, todo_id=todo.id, list_id=todo.list_id, owner_id=todo.owner_id)
        await session.delete(todo)
        await session.flush()
        after_commit(session, gone)

    await versioned.edit(database, work, if_match=if_match)
