"""Shared lists and their members.

Who may see a list is whoever has a membership row in it (the owner has one too, role `owner`):
every query here joins the caller's own membership row, so a list someone is not a member of is
exactly as missing as one that does not exist (404 `list_not_found`). What a member may do is
their role's: owners manage the list and its members, editors change its todos, viewers read.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import and_, case, col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.config import Settings
from keel.core.db import Database, after_commit
from keel.core.errors import (
    AlreadyMember,
    Forbidden,
    ListNotFound,
    MemberNotFound,
    OwnerMembership,
    UserNotFound,
)
from keel.models import EmailKind, ListMember, MemberRole, Todo, TodoList, User, utcnow
from keel.schemas.common import Page
from keel.schemas.todo import TodoRead
from keel.schemas.todo_list import InvitedRole, ListRead, MemberRead
from keel.schemas.user import UserPublic
from keel.services import events, versioned
from keel.services import outbox as outbox_service
from keel.services.outbox import Dispatcher

OWNER_ONLY = "Only the list's owner may do this."
_TODO_COLUMNS = [col(getattr(Todo, name)) for name in TodoRead.model_fields]


async def role_of(*, database: Database, user_id: int, list_id: int) -> MemberRole:
    """The caller's role in the list; 404 when they are not a member (or there is no such list)."""
    async with database.session() as session:
        role = await _role(session, user_id, list_id)
    if role is None:
        raise ListNotFound
    return role


async def _role(session: AsyncSession, user_id: int, list_id: int) -> MemberRole | None:
    statement = select(ListMember.role).where(ListMember.list_id == list_id, ListMember.user_id == user_id)
    role = (await session.exec(statement)).one_or_none()
    return None if role is None else MemberRole(role)


def require_owner(role: MemberRole) -> None:
    if role is not MemberRole.OWNER:
        raise Forbidden(OWNER_ONLY)


# --- lists ------------------------------------------------------------------------------------------
_others = aliased(ListMember)
_MEMBERS_COUNT = (
    select(func.count())
    .select_from(_others)
    .where(col(_others.list_id) == col(TodoList.id))
    .correlate(TodoList)
    .scalar_subquery()
    .label("members_count")
)


def _visible(user_id: int) -> Any:
    """The lists the user is a member of, with their owner, the user's role and the members count."""
    return (
        select(TodoList, User, ListMember.role, _MEMBERS_COUNT)
        .join(ListMember, and_(col(ListMember.list_id) == col(TodoList.id), col(ListMember.user_id) == user_id))
        .join(User, col(User.id) == col(TodoList.owner_id))
    )


def _list_read(todo_list: TodoList, owner: User, role: MemberRole, members_count: int) -> ListRead:
    assert todo_list.id is not None
    return ListRead(
        id=todo_list.id,
        name=todo_list.name,
        owner=UserPublic.model_validate(owner),
        role=role,
        members_count=members_count,
        created_at=todo_list.created_at,
        updated_at=todo_list.updated_at,
    )


async def _visible_one(session: AsyncSession, user_id: int, list_id: int) -> tuple[TodoList, User, MemberRole, int]:
    row = (await session.exec(_visible(user_id).where(col(TodoList.id) == list_id))).one_or_none()
    if row is None:
        raise ListNotFound
    todo_list, owner, role, members_count = row
    return todo_list, owner, role, members_count


async def create(*, database: Database, user_id: int, name: str) -> ListRead:
    """A new list, owned by the caller (its first member)."""
    async with database.session() as session:
        owner = await session.get(User, user_id)
        if owner is None:
            raise UserNotFound  # the account went while the request was on its way
        todo_list = TodoList(name=name, owner_id=user_id)
        session.add(todo_list)
        await session.flush()
        assert todo_list.id is not None
        membership = ListMember(list_id=todo_list.id, user_id=user_id, role=MemberRole.OWNER)
        session.add(membership)
        # The owner is the list's first member: their open streams start receiving it from now on.
        added = events.member_event(
            events.MEMBER_ADDED, actor_id=user_id, list_id=todo_list.id, member=_member_read(membership, owner)
        )
        after_commit(session, added)
        await session.commit()
        return _list_read(todo_list, owner, MemberRole.OWNER, 1)


async def list_for_member(*, database: Database, user_id: int, limit: int, offset: int) -> Page[ListRead]:
    """The lists the user owns or belongs to, oldest first."""
    async with database.session() as session:
        rows = await session.exec(
            _visible(user_id).order_by(col(TodoList.created_at), col(TodoList.id)).limit(limit).offset(offset)
        )
        items = [_list_read(*row) for row in rows]
        total = (
            await session.exec(select(func.count()).select_from(ListMember).where(ListMember.user_id == user_id))
        ).one()
    return Page[ListRead](items=items, total=total, limit=limit, offset=offset)


async def get(*, database: Database, user_id: int, list_id: int) -> ListRead:
    async with database.session() as session:
        return _list_read(*await _visible_one(session, user_id, list_id))


async def rename(
    *, database: Database, user_id: int, list_id: int, name: str, if_match: IfMatch | None = None
) -> ListRead:
    async def work(session: AsyncSession) -> ListRead:
        todo_list, owner, role, members_count = await _visible_one(session, user_id, list_id)
        require_owner(role)
        if if_match is not None:
            if_match.check(_list_read(todo_list, owner, role, members_count))
        todo_list.name = name
        todo_list.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        events.list_updated(
            session,
            actor_id=user_id,
            list_id=list_id,
            name=name,
            members_count=members_count,
            updated_at=todo_list.updated_at,
            version=todo_list.version,
        )
        return _list_read(todo_list, owner, role, members_count)

    return await versioned.edit(database, work, if_match=if_match)


async def delete(*, database: Database, user_id: int, list_id: int, if_match: IfMatch | None = None) -> None:
    """Delete the list; its todos and memberships go with it (ON DELETE CASCADE)."""

    async def work(session: AsyncSession) -> None:
        todo_list, owner, role, members_count = await _visible_one(session, user_id, list_id)
        require_owner(role)
        if if_match is not None:
            if_match.check(_list_read(todo_list, owner, role, members_count))
        await session.delete(todo_list)
        await session.flush()
        events.list_deleted(session, actor_id=user_id, list_id=list_id)

    await versioned.edit(database, work, if_match=if_match)


# --- members ----------------------------------------------------------------------------------------
def _member_read(member: ListMember, user: User) -> MemberRead:
    return MemberRead(user=UserPublic.model_validate(user), role=member.role, added_at=member.added_at)


async def members(*, database: Database, list_id: int) -> list[MemberRead]:
    """The list's members, the owner first, then in the order they joined."""
    owner_first = case((col(ListMember.role) == MemberRole.OWNER, 0), else_=1)
    async with database.session() as session:
        rows = await session.exec(
            select(ListMember, User)
            .join(User, col(User.id) == col(ListMember.user_id))
            .where(ListMember.list_id == list_id)
            .order_by(owner_first, col(ListMember.added_at), col(ListMember.user_id))
        )
        return [_member_read(member, user) for member, user in rows]


async def add_member(
    *,
    database: Database,
    settings: Settings,
    dispatcher: Dispatcher,
    list_id: int,
    username: str,
    role: InvitedRole,
    actor_id: int,
) -> MemberRead:
    """Add the user as a member; they are told by email (through the outbox, after commit)."""
    async with database.session() as session:
        statement = select(User).where(User.username == username.lower(), col(User.is_active).is_(True))
        user = (await session.exec(statement)).one_or_none()
        if user is None or user.id is None:
            raise UserNotFound
        if await _role(session, user.id, list_id) is not None:
            raise AlreadyMember
        member = ListMember(list_id=list_id, user_id=user.id, role=MemberRole(role.value))
        session.add(member)
        row = await outbox_service.enqueue(
            session=session, settings=settings, kind=EmailKind.LIST_INVITATION, to_address=user.email, user_id=user.id
        )
        if row is not None:
            row.list_id = list_id
        read = _member_read(member, user)
        after_commit(session, events.member_event(events.MEMBER_ADDED, actor_id=actor_id, list_id=list_id, member=read))
        try:
            await session.commit()
        except IntegrityError:
            # The same invitation made at the same moment, or the list was deleted meanwhile.
            await session.rollback()
            if await _role(session, user.id, list_id) is not None:
                raise AlreadyMember from None
            raise ListNotFound from None
    await outbox_service.dispatch_after_commit(dispatcher, [row])
    return read


async def change_role(
    *, database: Database, list_id: int, user_id: int, role: InvitedRole, actor_id: int
) -> MemberRead:
    async with database.session() as session:
        member = await session.get(ListMember, (list_id, user_id))
        if member is None:
            raise MemberNotFound
        if member.role is MemberRole.OWNER:
            raise OwnerMembership
        member.role = MemberRole(role.value)
        user = await session.get(User, user_id)
        assert user is not None  # a membership goes with its account
        read = _member_read(member, user)
        after_commit(
            session, events.member_event(events.MEMBER_UPDATED, actor_id=actor_id, list_id=list_id, member=read)
        )
        await session.commit()
        return read


async def remove_member(
    *, database: Database, list_id: int, caller_id: int, caller_role: MemberRole, user_id: int
) -> None:
    """The owner removes a member, or a member leaves. Todos assigned to them in the list are
    unassigned; the todos they created stay in the list."""
    if user_id != caller_id:
        require_owner(caller_role)
    async with database.session() as session:
        member = await session.get(ListMember, (list_id, user_id))
        if member is None:
            raise MemberNotFound
        if member.role is MemberRole.OWNER:
            raise OwnerMembership
        await session.delete(member)
        # One UPDATE that cannot race another edit (no version read first), returning what it changed.
        unassigned = await session.exec(
            update(Todo)
            .where(col(Todo.list_id) == list_id, col(Todo.assignee_id) == user_id)
            .values(assignee_id=None, updated_at=utcnow(), version=col(Todo.version) + 1)
            .returning(*_TODO_COLUMNS, col(Todo.version))
            .execution_options(synchronize_session=False)
        )
        # The member hears of their removal before the todos they no longer see change.
        events.member_removed(session, actor_id=caller_id, list_id=list_id, user_id=user_id)
        for *values, version in unassigned.all():
            todo = TodoRead.model_validate(dict(zip(TodoRead.model_fields, values, strict=True)))
            after_commit(
                session, events.todo_event(events.TODO_UPDATED, actor_id=caller_id, todo=todo, version=version)
            )
        await session.commit()
