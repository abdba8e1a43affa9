"""Private todo lists: every query has the owner in its WHERE clause."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.db import Database, Prebuilt
from keel.core.errors import TodoNotFound
from keel.models import Todo, utcnow
from keel.schemas.common import Page
from keel.schemas.todo import TodoCreate, TodoRead, TodoSort, TodoUpdate
from keel.services import idempotency, versioned
from keel.services.idempotency import Outcome
from keel.services.query import PageQuery, contains, like_pattern

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
    return creation.outcome


def _todo_read(row: Sequence[Any]) -> TodoRead:
    return TodoRead.model_validate(dict(zip(_NAMES, row, strict=True)))


_GET = Prebuilt(
    sa.select(*_COLUMNS).where(col(Todo.id) == sa.bindparam("id"), col(Todo.owner_id) == sa.bindparam("owner_id")),
    tuple,
)


async def get(*, database: Database, owner_id: int, todo_id: int) -> TodoRead:
    """The todo if it belongs to the owner; someone else's is exactly as missing as a deleted one."""
    row = await database.first(_GET, id=todo_id, owner_id=owner_id)
    if row is None:
        raise TodoNotFound
    return _todo_read(row)


async def _owned(session: AsyncSession, owner_id: int, todo_id: int) -> Todo:
    todo = (await session.exec(select(Todo).where(Todo.id == todo_id, Todo.owner_id == owner_id))).one_or_none()
    if todo is None:
        raise TodoNotFound
    return todo


async def list_for_owner(
    *,
    database: Database,
    owner_id: int,
    completed: bool | None,
    q: str | None,
    sort: TodoSort,
    limit: int,
    offset: int,
) -> Page[TodoRead]:
    """One page of the owner's list, read as plain columns (no ORM objects: nothing here is changed)."""
    query = _list_query(sort, by_completion=completed is not None, search=bool(q))
    params = {"owner_id": owner_id, "completed": completed, "pattern": like_pattern(q or ""), "limit": limit}
    rows, total = await query.fetch(database, {**params, "offset": offset})
    # One validation for the whole page, from plain dicts: pydantic's core walks it in one call,
    # where 20 `model_validate(row)` calls would each read the row's attributes from Python.
    items = [dict(zip(_NAMES, row, strict=False)) for row in rows]  # rows also carry the total
    return _PAGE.model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


_PAGE = Page[TodoRead]


@cache  # 6 sorts x 2 x 2 shapes at most
def _list_query(sort: TodoSort, *, by_completion: bool, search: bool) -> PageQuery:
    conditions: list[Any] = [col(Todo.owner_id) == sa.bindparam("owner_id")]
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
        todo.sqlmodel_update(changes)
        todo.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        return TodoRead.model_validate(todo)

    return await versioned.edit(database, work, if_match=if_match)


async def delete(*, database: Database, owner_id: int, todo_id: int, if_match: IfMatch | None = None) -> None:
    async def work(session: AsyncSession) -> None:
        todo = await _owned(session, owner_id, todo_id)
        if if_match is not None:
            if_match.check(TodoRead.model_validate(todo))
        await session.delete(todo)
        await session.flush()

    await versioned.edit(database, work, if_match=if_match)
