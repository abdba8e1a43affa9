"""Comments on a post: read with the post, written by verified users, one level of replies."""

from __future__ import annotations

from typing import Any

from fastapi import Response, status

from keel.core.conditional import etag_of
from keel.deps import (
    ANONYMOUS_ALLOWED,
    POSTS_SCOPES,
    CommentId,
    DatabaseDep,
    IdempotencyKey,
    IfMatchDep,
    Limit,
    Offset,
    OptionalUser,
    PostId,
    WritingUser,
)
from keel.http.conditional import ETAG, tagged
from keel.routes import API_PREFIX, PrefixedRouter
from keel.schemas.comment import CommentCreate, CommentRead, CommentUpdate
from keel.schemas.common import Page, problem_responses
from keel.services import comment as comment_service
from keel.services.idempotency import REPLAYED_HEADER

# The same family as the posts (posts:read / posts:write for personal access tokens).
# Parameter order matters: authentication (401) is checked before visibility (404).
router = PrefixedRouter(
    prefix=f"{API_PREFIX}/posts/{{post_id:not_mine}}/comments",
    tags=["comments"],
    responses=problem_responses(422),
    dependencies=[POSTS_SCOPES],
)


@router.get(
    "", response_model=Page[CommentRead], responses=problem_responses(401, 404), openapi_extra=ANONYMOUS_ALLOWED
)
async def list_comments(
    post_id: PostId, user: OptionalUser, database: DatabaseDep, limit: Limit = 20, offset: Offset = 0
) -> Page[CommentRead]:
    """A post's comments and replies, oldest first; a draft's only for its author or an admin."""
    return await comment_service.list_for_post(
        database=database, post_id=post_id, viewer=user, limit=limit, offset=offset
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=CommentRead, responses=problem_responses(401, 403, 404, 429)
)
async def create_comment(
    post_id: PostId,
    data: CommentCreate,
    user: WritingUser,
    database: DatabaseDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Comment on a published post, or reply to one of its top-level comments (needs a verified email).

    An `Idempotency-Key` makes a retry safe.
    """
    outcome = await comment_service.create(
        database=database, post_id=post_id, author=user, data=data, idempotency_key=idempotency_key
    )
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        response.headers[ETAG] = etag_of(outcome.body)
    return outcome.body


@router.patch("/{comment_id}", response_model=CommentRead, responses=problem_responses(401, 403, 404, 429))
async def update_comment(
    post_id: PostId,
    comment_id: CommentId,
    user: WritingUser,
    data: CommentUpdate,
    database: DatabaseDep,
    response: Response,
    if_match: IfMatchDep,
) -> CommentRead:
    """Edit a comment (its author only). Honours `If-Match`."""
    comment = await comment_service.update(
        database=database, post_id=post_id, comment_id=comment_id, editor=user, data=data, if_match=if_match
    )
    return tagged(comment, response)


@router.delete("/{comment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 403, 404, 429))
async def delete_comment(
    post_id: PostId, comment_id: CommentId, user: WritingUser, database: DatabaseDep, if_match: IfMatchDep
) -> None:
    """Delete a comment (its author, the post's author or an admin); one with replies stays as "[deleted]"."""
    await comment_service.delete(
        database=database, post_id=post_id, comment_id=comment_id, actor=user, if_match=if_match
    )
