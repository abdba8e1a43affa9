"""Private todo lists: every query has the owner in its WHERE clause."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.errors import TodoNotFound
from keel.models import Todo, utcnow
from keel.schemas.common import Page
from keel.schemas.todo import TodoCreate, TodoRead, TodoSort, TodoUpdate
from keel.services.idempotency import Claim
from keel.services.query import contains

_ORDER: dict[TodoSort, tuple[Any, ...]] = {
    TodoSort.CREATED_AT: (col(Todo.created_at).asc(), col(Todo.id).asc()),
    TodoSort.CREATED_AT_DESC: (col(Todo.created_at).desc(), col(Todo.id).desc()),
    # Undated todos go last either way: they are the least urgent.
    TodoSort.DUE_DATE: (col(Todo.due_date).asc().nulls_last(), col(Todo.id).asc()),
    TodoSort.DUE_DATE_DESC: (col(Todo.due_date).desc().nulls_last(), col(Todo.id).desc()),
    TodoSort.PRIORITY: (col(Todo.priority).asc(), col(Todo.id).asc()),
    TodoSort.PRIORITY_DESC: (col(Todo.priority).desc(), col(Todo.id).desc()),
}


async def create(*, session: AsyncSession, owner_id: int, data: TodoCreate, claim: Claim | None = None) -> TodoRead:
    """Add a todo; with an idempotency claim, its record commits together with the todo."""
    todo = Todo(owner_id=owner_id, **data.model_dump())
    session.add(todo)
    await session.flush()
    answer = TodoRead.model_validate(todo)
    if claim is not None:
        claim.record(session, answer, status_code=201)
    await session.commit()
    return answer


async def get_owned(*, session: AsyncSession, owner_id: int, todo_id: int) -> Todo:
    """The todo if it belongs to the owner; someone else's is exactly as missing as a deleted one."""
    todo = (await session.exec(select(Todo).where(Todo.id == todo_id, Todo.owner_id == owner_id))).one_or_none()
    if todo is None:
        raise TodoNotFound
    return todo


async def list_for_owner(
    *,
    session: AsyncSession,
    owner_id: int,
    completed: bool | None,
    q: str | None,
    sort: TodoSort,
    limit: int,
    offset: int,
) -> Page[TodoRead]:
    conditions: list[Any] = [col(Todo.owner_id) == owner_id]
    if completed is not None:
        conditions.append(col(Todo.completed) == completed)
    if q:
        conditions.append(or_(contains(col(Todo.title), q), contains(col(Todo.description), q)))
    total = (await session.exec(select(func.count()).select_from(Todo).where(*conditions))).one()
    rows = await session.exec(select(Todo).where(*conditions).order_by(*_ORDER[sort]).limit(limit).offset(offset))
    return Page[TodoRead](items=[TodoRead.model_validate(row) for row in rows], total=total, limit=limit, offset=offset)


async def update(*, session: AsyncSession, todo: Todo, data: TodoUpdate) -> Todo:
    changes = data.model_dump(exclude_unset=True)
    for required in ("title", "completed", "priority"):
        if changes.get(required, ...) is None:
            changes.pop(required)  # null means "leave it" for fields that cannot be empty
    todo.sqlmodel_update(changes)
    todo.updated_at = utcnow()
    session.add(todo)
    await session.commit()
    return todo


async def delete(*, session: AsyncSession, todo: Todo) -> None:
    await session.delete(todo)
    await session.commit()
