from __future__ import annotations

from typing import Any

from fastapi import Response, status

from keel.deps import (
    USERS_SCOPES,
    CacheDep,
    CurrentUser,
    DatabaseDep,
    DispatcherDep,
    IfMatchDep,
    IfNoneMatch,
    Limit,
    Offset,
    RateLimiterDep,
    RecentlyAuthenticatedWriter,
    SettingsDep,
    UserId,
    WritingUser,
)
from keel.http.conditional import representation_or_not_modified, tagged
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.activity import ActivityRead
from keel.schemas.common import Page, problem_responses
from keel.schemas.user import UserDelete, UserPublic, UserRead, UserUpdate
from keel.services import activity as activity_service
from keel.services import user as user_service

router = PrefixedRouter(prefix=f"{API_PREFIX}/users", tags=["users"], dependencies=[USERS_SCOPES])


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def read_me(
    user: CurrentUser, database: DatabaseDep, response: Response, if_none_match: IfNoneMatch = None
) -> Any:
    """The current user's own account. Sends its `ETag`."""
    me = await user_service.read_own(database=database, user_id=user.user_id)
    return representation_or_not_modified(me, response, if_none_match)


@router.patch("/me", response_model=UserRead, responses=problem_responses(401, 409, 422, 429))
async def update_me(
    data: UserUpdate, user: WritingUser, database: DatabaseDep, response: Response, if_match: IfMatchDep
) -> UserRead:
    """Change the current user's username or full name. Honours `If-Match`."""
    updated = await user_service.update_profile(database=database, user_id=user.user_id, data=data, if_match=if_match)
    return tagged(updated, response)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 401, 403, 409, 422, 429),
)
async def delete_me(
    data: UserDelete,
    user: RecentlyAuthenticatedWriter,
    database: DatabaseDep,
    if_match: IfMatchDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> None:
    """Delete the current user's account and everything it owns (the password is required).

    Needs a recent authentication: a sign-in or `/auth/reauthenticate` in the last 10 minutes (else
    403 `reauthentication_required`).

    A wrong password counts against the account's wrong passwords like a sign-in's (429 while locked).
    Honours `If-Match`.
    """
    await user_service.delete_own(
        database=database,
        if_match=if_match,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        user_id=user.user_id,
        password=data.password,
    )


@router.get("/me/activity", response_model=Page[ActivityRead], responses=problem_responses(401, 422))
async def list_my_activity(
    user: CurrentUser, database: DatabaseDep, limit: Limit = 20, offset: Offset = 0
) -> Page[ActivityRead]:
    """The current user's security activity, newest first: sign-ins (and failed ones), new devices,
    password, second-factor, passkey and linked-account changes, sessions ended, and an admin's changes."""
    return await activity_service.list_for_user(database=database, user_id=user.user_id, limit=limit, offset=offset)


@router.get("/{user_id}", response_model=UserPublic, responses=problem_responses(404, 422))
async def read_user(user_id: UserId, database: DatabaseDep) -> UserPublic:
    """Anyone's public profile (never the email)."""
    return await user_service.read_public(database=database, user_id=user_id)
