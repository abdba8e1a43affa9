from __future__ import annotations

from typing import Annotated

from fastapi import Query, status

from keel.deps import (
    NO_PERSONAL_TOKENS,
    AdminUser,
    CacheDep,
    DatabaseDep,
    DispatcherDep,
    Limit,
    Offset,
    RecentlyAuthenticatedAdmin,
    SettingsDep,
    UserId,
)
from keel.models import Role
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.activity import ActivityRead
from keel.schemas.common import NO_NUL, Page, problem_responses
from keel.schemas.user import AdminUserRead, AdminUserUpdate
from keel.services import activity as activity_service
from keel.services import mfa as mfa_service
from keel.services import user as user_service

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/admin",
    tags=["admin"],
    responses=problem_responses(401, 403),
    dependencies=[NO_PERSONAL_TOKENS],
)


@router.get("/users", response_model=Page[AdminUserRead], responses=problem_responses(422))
async def list_users(
    admin: AdminUser,
    database: DatabaseDep,
    q: Annotated[str | None, Query(max_length=254, pattern=NO_NUL, description="Part of an email or username.")] = None,
    role: Role | None = None,
    is_active: bool | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> Page[AdminUserRead]:
    """Search all accounts, with when each last used Keel."""
    return await user_service.list_users(
        database=database, q=q, role=role, is_active=is_active, limit=limit, offset=offset
    )


@router.patch("/users/{user_id}", response_model=AdminUserRead, responses=problem_responses(404, 409, 422))
async def update_user(
    user_id: UserId, data: AdminUserUpdate, admin: AdminUser, database: DatabaseDep, cache: CacheDep
) -> AdminUserRead:
    """Change a user's role, activation or verification; a role change or deactivation signs them out."""
    user = await user_service.admin_update(
        database=database, cache=cache, user_id=user_id, data=data, actor_id=admin.user_id
    )
    return await user_service.admin_read(database=database, user=user)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409, 422))
async def delete_user(user_id: UserId, admin: AdminUser, database: DatabaseDep, cache: CacheDep) -> None:
    """Delete a user and everything they own."""
    await user_service.admin_delete(database=database, cache=cache, user_id=user_id, actor_id=admin.user_id)


@router.post(
    "/users/{user_id}/mfa/reset", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 422)
)
async def reset_user_mfa(
    user_id: UserId,
    admin: RecentlyAuthenticatedAdmin,
    database: DatabaseDep,
    cache: CacheDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
) -> None:
    """Remove a user's authenticator app, passkeys and recovery codes (they lost them all) and sign
    them out everywhere; they are emailed, and sign in with their password alone until they set up
    a second factor again. Needs the admin's recent authentication (403 `reauthentication_required`)."""
    await mfa_service.reset(
        database=database, cache=cache, settings=settings, dispatcher=dispatcher, admin=admin, user_id=user_id
    )


@router.get("/users/{user_id}/activity", response_model=Page[ActivityRead], responses=problem_responses(404, 422))
async def list_user_activity(
    user_id: UserId, admin: AdminUser, database: DatabaseDep, limit: Limit = 20, offset: Offset = 0
) -> Page[ActivityRead]:
    """A user's security activity, newest first (what they see on their own account page)."""
    return await activity_service.list_for_admin(database=database, user_id=user_id, limit=limit, offset=offset)
