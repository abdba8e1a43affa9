from __future__ import annotations

from fastapi import APIRouter, status

from keel.deps import (
    CacheDep,
    CurrentUser,
    DispatcherDep,
    RateLimiterDep,
    SessionDep,
    SettingsDep,
    UserId,
    WritingUser,
)
from keel.routes import API_PREFIX
from keel.schemas.common import problem_responses
from keel.schemas.user import UserDelete, UserPublic, UserRead, UserUpdate
from keel.services import user as user_service

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"])


@router.get("/me", response_model=UserRead, responses=problem_responses(401))
async def read_me(user: CurrentUser, session: SessionDep) -> UserRead:
    """The current user's own account."""
    return UserRead.model_validate(await user_service.get_own(session=session, user_id=user.user_id))


@router.patch("/me", response_model=UserRead, responses=problem_responses(401, 409, 422, 429))
async def update_me(data: UserUpdate, user: WritingUser, session: SessionDep) -> UserRead:
    """Change the current user's username or full name."""
    updated = await user_service.update_profile(session=session, user_id=user.user_id, data=data)
    return UserRead.model_validate(updated)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 401, 409, 422, 429),
)
async def delete_me(
    data: UserDelete,
    user: WritingUser,
    session: SessionDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    limiter: RateLimiterDep,
) -> None:
    """Delete the current user's account and everything it owns (the password is required).

    A wrong password counts against the account's wrong passwords like a sign-in's (429 while locked).
    """
    await user_service.delete_own(
        session=session,
        cache=cache,
        settings=settings,
        dispatcher=dispatcher,
        limiter=limiter,
        user_id=user.user_id,
        password=data.password,
    )


@router.get("/{user_id}", response_model=UserPublic, responses=problem_responses(404, 422))
async def read_user(user_id: UserId, session: SessionDep) -> UserPublic:
    """Anyone's public profile (never the email)."""
    return UserPublic.model_validate(await user_service.get(session=session, user_id=user_id))
