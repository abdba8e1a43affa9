"""The tags in use on published posts."""

from __future__ import annotations

from keel.deps import ANONYMOUS_ALLOWED, POSTS_SCOPES, DatabaseDep, Limit, Offset, OptionalUser
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import Page, problem_responses
from keel.schemas.post import TagCount
from keel.services import tag as tag_service

router = PrefixedRouter(
    prefix=f"{API_PREFIX}/tags", tags=["tags"], responses=problem_responses(422), dependencies=[POSTS_SCOPES]
)


@router.get("", response_model=Page[TagCount], responses=problem_responses(401), openapi_extra=ANONYMOUS_ALLOWED)
async def list_tags(
    _user: OptionalUser, database: DatabaseDep, limit: Limit = 20, offset: Offset = 0
) -> Page[TagCount]:
    """Tags on published posts with how many posts carry each: most used first, then by name. No sign-in needed."""
    return await tag_service.list_in_use(database=database, limit=limit, offset=offset)
