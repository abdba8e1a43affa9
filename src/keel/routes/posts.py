from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Response, status
from starlette.convertors import StringConvertor, register_url_convertor

from keel.core.conditional import etag_of
from keel.deps import (
    ANONYMOUS_ALLOWED,
    POSTS_SCOPES,
    CurrentUser,
    DatabaseDep,
    IdempotencyKey,
    IfMatchDep,
    IfNoneMatch,
    Limit,
    Offset,
    OptionalUser,
    PostId,
    SearchTerm,
    WritingUser,
)
from keel.http.conditional import ETAG, representation_or_not_modified, tagged
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.common import Page, problem_responses
from keel.schemas.post import PostCreate, PostRead, PostSummary, PostUpdate, Tag
from keel.services import post as post_service
from keel.services import vote as vote_service
from keel.services.idempotency import REPLAYED_HEADER
from keel.services.post import Sort


class _NotMine(StringConvertor):
    """A path segment other than `mine` and `preview`: /posts/mine takes only GET and /posts/preview
    only POST, so another method there is a 405 rather than a post id that is not a number (422),
    as it is for any other segment."""

    regex = "(?!(?:mine|preview)$)[^/]+"


register_url_convertor("not_mine", _NotMine())

# Parameter order matters: authentication (401) is checked before visibility (404).
router = PrefixedRouter(
    prefix=f"{API_PREFIX}/posts", tags=["posts"], responses=problem_responses(422), dependencies=[POSTS_SCOPES]
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PostRead,
    responses=problem_responses(401, 403, 429),
)
@router.post(
    "/",
    include_in_schema=False,
    status_code=status.HTTP_201_CREATED,
    response_model=PostRead,
    responses=problem_responses(401, 403, 429),
)
async def create_post(
    data: PostCreate,
    user: WritingUser,
    database: DatabaseDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Write a post: a draft by default, published at once with `published: true` (needs a verified email).

    An `Idempotency-Key` makes a retry safe.
    """
    outcome = await post_service.create(database=database, author=user, data=data, idempotency_key=idempotency_key)
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        response.headers[ETAG] = etag_of(outcome.body)
    return outcome.body


@router.get("", response_model=Page[PostSummary], responses=problem_responses(401), openapi_extra=ANONYMOUS_ALLOWED)
@router.get("/", include_in_schema=False, response_model=Page[PostSummary], responses=problem_responses(401))
async def list_feed(
    user: OptionalUser,
    database: DatabaseDep,
    author_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this author's posts.")] = None,
    q: SearchTerm = None,
    tag: Annotated[Tag | None, Query(description="Only posts with this tag (`#Python` is the tag `python`).")] = None,
    sort: Annotated[
        Sort, Query(description="`new`: newest published first. `top`: most votes first, then newest.")
    ] = Sort.NEW,
    limit: Limit = 20,
    offset: Offset = 0,
) -> Page[PostSummary]:
    """The public feed: published posts, newest or most voted first, optionally of one tag. No sign-in needed."""
    return await post_service.list_feed(
        database=database, viewer=user, author_id=author_id, q=q, tag=tag, sort=sort, limit=limit, offset=offset
    )


@router.get("/mine", response_model=Page[PostSummary], responses=problem_responses(401))
async def list_mine(
    user: CurrentUser, database: DatabaseDep, published: bool | None = None, limit: Limit = 20, offset: Offset = 0
) -> Page[PostSummary]:
    """The current user's posts, drafts included, newest first."""
    return await post_service.list_mine(database=database, author=user, published=published, limit=limit, offset=offset)


@router.get(
    "/{post_id:not_mine}",
    response_model=PostRead,
    responses=problem_responses(401, 404),
    openapi_extra=ANONYMOUS_ALLOWED,
)
async def read_post(
    post_id: PostId, user: OptionalUser, database: DatabaseDep, response: Response, if_none_match: IfNoneMatch = None
) -> Any:
    """One post; a draft only for its author or an admin. Sends its `ETag` (votes included)."""
    post = await post_service.get(database=database, post_id=post_id, viewer=user)
    return representation_or_not_modified(post, response, if_none_match)


@router.patch(
    "/{post_id:not_mine}",
    response_model=PostRead,
    responses=problem_responses(401, 403, 404, 429),
)
async def update_post(
    post_id: PostId,
    user: WritingUser,
    data: PostUpdate,
    database: DatabaseDep,
    response: Response,
    if_match: IfMatchDep,
) -> PostRead:
    """Edit, publish or unpublish a post (its author only). Honours `If-Match`."""
    post = await post_service.update(database=database, post_id=post_id, editor=user, data=data, if_match=if_match)
    return tagged(post, response)


@router.delete(
    "/{post_id:not_mine}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 429),
)
async def delete_post(post_id: PostId, user: WritingUser, database: DatabaseDep, if_match: IfMatchDep) -> None:
    """Delete a post (its author or an admin). Honours `If-Match`."""
    await post_service.delete(database=database, post_id=post_id, actor=user, if_match=if_match)


@router.post(
    "/{post_id:not_mine}/vote",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 429),
)
async def vote(post_id: PostId, user: WritingUser, database: DatabaseDep) -> None:
    """Vote for a published post (needs a verified email); voting again changes nothing."""
    await vote_service.vote(database=database, post_id=post_id, voter=user)


@router.delete(
    "/{post_id:not_mine}/vote",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 429),
)
async def unvote(post_id: PostId, user: WritingUser, database: DatabaseDep) -> None:
    """Take back a vote; doing it twice changes nothing."""
    await vote_service.unvote(database=database, post_id=post_id, voter=user)
