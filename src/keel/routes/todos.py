from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response, status

from keel.core.conditional import etag_of
from keel.deps import (
    TODOS_SCOPES,
    CurrentUser,
    DatabaseDep,
    IdempotencyKey,
    IfMatchDep,
    IfNoneMatch,
    Limit,
    Offset,
    SearchTerm,
    TodoId,
    WritingUser,
)
from keel.http.conditional import ETAG, representation_or_not_modified, tagged
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import Page, problem_responses
from keel.schemas.todo import LABEL_PATTERN, TodoCreate, TodoRead, TodoSort, TodoUpdate, normalise_label
from keel.services import todo as todo_service
from keel.services.idempotency import REPLAYED_HEADER

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/todos", tags=["todos"], responses=problem_responses(401, 422), dependencies=[TODOS_SCOPES]
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TodoRead,
    responses=problem_responses(403, 404, 409, 429),
)
@router.post(
    "/",
    include_in_schema=False,
    status_code=status.HTTP_201_CREATED,
    response_model=TodoRead,
)
async def create_todo(
    data: TodoCreate,
    user: WritingUser,
    database: DatabaseDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Add a todo to the current user's private inbox, or to a shared list where they are an owner or
    editor (`list_id`; 404 `list_not_found` for a non-member, 403 `forbidden` for a viewer). An
    `Idempotency-Key` makes a retry safe."""
    outcome = await todo_service.create(
        database=database, owner_id=user.user_id, data=data, idempotency_key=idempotency_key
    )
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        response.headers[ETAG] = etag_of(outcome.body)
    return outcome.body


@router.get("", response_model=Page[TodoRead], responses=problem_responses(404))
@router.get("/", include_in_schema=False, response_model=Page[TodoRead])
async def list_todos(
    user: CurrentUser,
    database: DatabaseDep,
    completed: bool | None = None,
    q: SearchTerm = None,
    sort: TodoSort = TodoSort.CREATED_AT_DESC,
    limit: Limit = 20,
    offset: Offset = 0,
    list_id: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**31 - 1,
            description="A shared list you are a member of (404 `list_not_found` otherwise); "
            "left out, your private inbox.",
        ),
    ] = None,
    label: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=60,
            pattern=LABEL_PATTERN,
            description="Only todos with this label (compared as labels are stored: trimmed, lower-cased).",
        ),
    ] = None,
    assignee_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Only todos assigned to this user.")
    ] = None,
) -> Page[TodoRead]:
    """The current user's private todos, or those of a shared list, filtered, searched (title and
    description) and sorted."""
    wanted = normalise_label(label) if label is not None else None
    return await todo_service.list_for_owner(
        database=database,
        owner_id=user.user_id,
        completed=completed,
        q=q,
        sort=sort,
        limit=limit,
        offset=offset,
        list_id=list_id,
        label=str(wanted) if wanted is not None else None,
        assignee_id=assignee_id,
    )


@router.get("/{todo_id}", response_model=TodoRead, responses=problem_responses(404))
async def read_todo(
    todo_id: TodoId, user: CurrentUser, database: DatabaseDep, response: Response, if_none_match: IfNoneMatch = None
) -> Any:
    """One of the current user's private todos, or one in a list they are a member of; anyone else's
    is not found. Sends its `ETag`."""
    todo = await todo_service.get(database=database, owner_id=user.user_id, todo_id=todo_id)
    return representation_or_not_modified(todo, response, if_none_match)


@router.patch("/{todo_id}", response_model=TodoRead, responses=problem_responses(403, 404, 409, 429))
async def update_todo(
    todo_id: TodoId,
    data: TodoUpdate,
    user: WritingUser,
    database: DatabaseDep,
    response: Response,
    if_match: IfMatchDep,
) -> TodoRead:
    """Change any of a todo's fields (tick it done with `completed: true`), or move it to another list.
    A viewer of its list gets 403 `forbidden`. Honours `If-Match`."""
    todo = await todo_service.update(
        database=database, owner_id=user.user_id, todo_id=todo_id, data=data, if_match=if_match
    )
    return tagged(todo, response)


@router.delete(
    "/{todo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 404, 429),
)
async def delete_todo(todo_id: TodoId, user: WritingUser, database: DatabaseDep, if_match: IfMatchDep) -> None:
    """Delete a todo (in a shared list: an owner or editor of it). Honours `If-Match`."""
    await todo_service.delete(database=database, owner_id=user.user_id, todo_id=todo_id, if_match=if_match)
