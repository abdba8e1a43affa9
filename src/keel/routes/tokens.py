from __future__ import annotations

from fastapi import Response, status

from keel.deps import (
    NO_PERSONAL_TOKENS,
    AccessTokenId,
    CacheDep,
    CurrentUser,
    DatabaseDep,
    RecentlyAuthenticatedWriter,
    SettingsDep,
    WritingUser,
)
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import problem_responses
from keel.schemas.personal_token import AccessTokenCreate, AccessTokenCreated, AccessTokenRead
from keel.services import personal_token as personal_token_service

# A personal access token never manages tokens, its own included.
router = PrefixedRouter(
    prefix=f"{API_PREFIX}/tokens",
    tags=["tokens"],
    responses=problem_responses(401, 403),
    dependencies=[NO_PERSONAL_TOKENS],
)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=AccessTokenCreated, responses=problem_responses(422, 429)
)
async def create_personal_token(
    data: AccessTokenCreate,
    user: RecentlyAuthenticatedWriter,
    database: DatabaseDep,
    settings: SettingsDep,
    response: Response,
) -> AccessTokenCreated:
    """Make a personal access token for scripts and command-line tools, limited to `scopes`.

    The secret (`token`, `keel_pat_...`) is in this answer only: keep it. Send it as
    `Authorization: Bearer keel_pat_...`. Needs a recent authentication: a sign-in or
    `/auth/reauthenticate` in the last 10 minutes (else 403 `reauthentication_required`).
    """
    response.headers["Cache-Control"] = "no-store"
    return await personal_token_service.create(database=database, settings=settings, user_id=user.user_id, data=data)


@router.get("", response_model=list[AccessTokenRead])
async def list_personal_tokens(user: CurrentUser, database: DatabaseDep) -> list[AccessTokenRead]:
    """The current user's personal access tokens that are not revoked, newest first (never their secrets)."""
    return await personal_token_service.list_for_user(database=database, user_id=user.user_id)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 422, 429))
async def revoke_personal_token(
    token_id: AccessTokenId, user: WritingUser, database: DatabaseDep, cache: CacheDep
) -> None:
    """Revoke one of the current user's personal access tokens: it is refused at once, in every worker."""
    await personal_token_service.revoke(database=database, cache=cache, user_id=user.user_id, token_id=token_id)
