"""Shared lists: every route with a list id in its path first finds the caller's membership
(`ListMemberAccess` and the like in keel.deps): a non-member gets 404 `list_not_found`, a member
whose role does not allow the change gets 403 `forbidden`."""

from __future__ import annotations

from typing import Any

from fastapi import Response, status

from keel.deps import (
    LISTS_SCOPES,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    IfMatchDep,
    IfNoneMatch,
    Limit,
    ListMemberAccess,
    ListMemberWriting,
    ListOwnerAccess,
    MemberId,
    Offset,
    SettingsDep,
    WritingUser,
)
from keel.http.conditional import representation_or_not_modified, tagged
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import Page, problem_responses
from keel.schemas.todo_list import ListCreate, ListRead, ListUpdate, MemberCreate, MemberRead, MemberUpdate
from keel.services import list as list_service

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/lists", tags=["lists"], responses=problem_responses(401, 422), dependencies=[LISTS_SCOPES]
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ListRead, responses=problem_responses(429))
@router.post("/", include_in_schema=False, status_code=status.HTTP_201_CREATED, response_model=ListRead)
async def create_list(data: ListCreate, user: WritingUser, database: DatabaseDep, response: Response) -> ListRead:
    """Start a shared list; the caller is its owner."""
    created = await list_service.create(database=database, user_id=user.user_id, name=data.name)
    return tagged(created, response)


@router.get("", response_model=Page[ListRead])
@router.get("/", include_in_schema=False, response_model=Page[ListRead])
async def list_lists(user: CurrentUser, database: DatabaseDep, limit: Limit = 20, offset: Offset = 0) -> Page[ListRead]:
    """The lists the caller owns or is a member of, oldest first."""
    return await list_service.list_for_member(database=database, user_id=user.user_id, limit=limit, offset=offset)


@router.get("/{list_id}", response_model=ListRead, responses=problem_responses(404))
async def read_list(
    access: ListMemberAccess, database: DatabaseDep, response: Response, if_none_match: IfNoneMatch = None
) -> Any:
    """A list the caller is a member of, with their role in it. Sends its `ETag`."""
    found = await list_service.get(database=database, user_id=access.user_id, list_id=access.list_id)
    return representation_or_not_modified(found, response, if_none_match)


@router.patch("/{list_id}", response_model=ListRead, responses=problem_responses(403, 404, 412, 429))
async def update_list(
    data: ListUpdate, access: ListOwnerAccess, database: DatabaseDep, response: Response, if_match: IfMatchDep
) -> ListRead:
    """Rename the list (owner only). Honours `If-Match`."""
    renamed = await list_service.rename(
        database=database, user_id=access.user_id, list_id=access.list_id, name=data.name, if_match=if_match
    )
    return tagged(renamed, response)


@router.delete("/{list_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(403, 404, 412, 429))
async def delete_list(access: ListOwnerAccess, database: DatabaseDep, if_match: IfMatchDep) -> None:
    """Delete the list and every todo in it (owner only). Honours `If-Match`."""
    await list_service.delete(database=database, user_id=access.user_id, list_id=access.list_id, if_match=if_match)


@router.get("/{list_id}/members", response_model=list[MemberRead], responses=problem_responses(404))
async def list_members(access: ListMemberAccess, database: DatabaseDep) -> list[MemberRead]:
    """The list's members and their roles, the owner first."""
    return await list_service.members(database=database, list_id=access.list_id)


@router.post(
    "/{list_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberRead,
    responses=problem_responses(403, 404, 409, 429),
)
async def add_member(
    data: MemberCreate,
    access: ListOwnerAccess,
    database: DatabaseDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> MemberRead:
    """Invite a user by username as an editor or a viewer (owner only); they are told by email.
    404 `user_not_found` when no active account has that username, 409 `already_member`."""
    return await list_service.add_member(
        database=database,
        settings=settings,
        dispatcher=dispatcher,
        list_id=access.list_id,
        username=data.username,
        role=data.role,
        actor_id=access.user_id,
    )


@router.patch(
    "/{list_id}/members/{user_id}", response_model=MemberRead, responses=problem_responses(403, 404, 409, 429)
)
async def update_member(
    user_id: MemberId, data: MemberUpdate, access: ListOwnerAccess, database: DatabaseDep
) -> MemberRead:
    """Change a member's role (owner only). The owner's own role is fixed: 409 `list_owner`."""
    return await list_service.change_role(
        database=database, list_id=access.list_id, user_id=user_id, role=data.role, actor_id=access.user_id
    )


@router.delete(
    "/{list_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 409, 429),
)
async def remove_member(user_id: MemberId, access: ListMemberWriting, database: DatabaseDep) -> None:
    """Remove a member (owner), or leave the list (any member, with their own user id). Todos
    assigned to them in the list are unassigned; those they created stay. The owner cannot
    leave (409 `list_owner`): they delete the list instead."""
    await list_service.remove_member(
        database=database, list_id=access.list_id, caller_id=access.user_id, caller_role=access.role, user_id=user_id
    )
