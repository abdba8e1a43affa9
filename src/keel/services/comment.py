"""Comments on posts: one level of replies, Markdown like posts, and an exact count on each post.

Every write that changes how many live comments a post has changes `post.comments_count` in the
same transaction with an atomic `comments_count + 1` (or - 1), so concurrent writers never lose
one another's change. A comment is seen where its post is: a draft's (or an unpublished post's)
comments are a 404 for everyone but the post's author and admins, and nobody can comment there.
A deleted comment that has replies stays as a "[deleted]" placeholder without an author, so the
thread still reads; one without replies is removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select, exists, true
from sqlalchemy.orm import aliased
from sqlmodel import col, func
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import markdown
from keel.core.conditional import IfMatch
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import CommentNotFound, EmailNotVerified, InvalidParent, NotAuthor, PostNotFound
from keel.models import Comment, Post, User, utcnow
from keel.schemas.comment import CommentCreate, CommentRead, CommentUpdate
from keel.schemas.common import Page
from keel.services import idempotency, versioned
from keel.services.idempotency import Outcome
from keel.services.query import PageQuery
from keel.services.session import Principal

DELETED = "[deleted]"
_DELETED_HTML = markdown.to_html(DELETED)

_READ: Select[*tuple[Any, ...]] = sa.select(
    col(Comment.id),
    col(Comment.post_id),
    col(Comment.parent_id),
    col(Comment.content),
    col(Comment.content_html),
    col(Comment.deleted),
    col(Comment.created_at),
    col(Comment.updated_at),
    col(User.id).label("author_id"),
    col(User.username).label("author_username"),
    col(User.full_name).label("author_full_name"),
    col(User.created_at).label("author_created_at"),
).outerjoin(User, col(User.id) == col(Comment.author_id))
_COLUMNS = tuple(str(column.key) for column in _READ.selected_columns)
_ONE = Prebuilt(_READ.where(col(Comment.id) == sa.bindparam("comment_id")), tuple)
_THE_POSTS = col(Comment.post_id) == sa.bindparam("post_id")
_PAGE = PageQuery.of(
    _READ.where(_THE_POSTS)
    .order_by(col(Comment.created_at), col(Comment.id))
    .limit(sa.bindparam("limit"))
    .offset(sa.bindparam("offset")),
    sa.select(func.count()).select_from(Comment).where(_THE_POSTS),
)
_POST = Prebuilt(
    sa.select(col(Post.published), col(Post.author_id)).where(col(Post.id) == sa.bindparam("post_id")), tuple
)
# Counts the comment in and, in the same statement, proves the post is still published: the post's
# row stays locked until the comment commits, so an unpublish waits for it rather than racing it.
_COUNT_IN = Prebuilt(
    sa.update(Post)
    .where(col(Post.id) == sa.bindparam("post_id"), col(Post.published) == true())
    .values(comments_count=col(Post.comments_count) + 1)
    .returning(col(Post.id)),
    tuple,
)
_PARENT = Prebuilt(
    sa.select(col(Comment.post_id), col(Comment.parent_id), col(Comment.deleted)).where(
        col(Comment.id) == sa.bindparam("parent_id")
    ),
    tuple,
)
_INSERT = Prebuilt(
    sa.insert(Comment).returning(col(Comment.id)),
    tuple,
    binds=[
        "post_id",
        "author_id",
        "parent_id",
        "content",
        "content_html",
        "render_version",
        "deleted",
        "created_at",
        "updated_at",
        "version",
    ],
)


def _fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    author = None
    if row["author_id"] is not None:
        author = {
            "id": row["author_id"],
            "username": row["author_username"],
            "full_name": row["author_full_name"],
            "created_at": row["author_created_at"],
        }
    return {name: row[name] for name in _COLUMNS if not name.startswith("author_")} | {"author": author}


async def _one(db: Database | Transaction, comment_id: int) -> CommentRead:
    row = await db.first(_ONE, comment_id=comment_id)
    if row is None:
        raise CommentNotFound
    return CommentRead.model_validate(_fields(dict(zip(_COLUMNS, row, strict=True))))


def _may_see_post(published: bool, author_id: int, viewer: Principal | None) -> bool:
    return published or (viewer is not None and (viewer.user_id == author_id or viewer.is_admin))


async def list_for_post(
    *, database: Database, post_id: int, viewer: Principal | None, limit: int, offset: int
) -> Page[CommentRead]:
    """A post's comments and replies, oldest first; placeholders included, so threads keep their shape."""
    post = await database.first(_POST, post_id=post_id)
    if post is None or not _may_see_post(post[0], post[1], viewer):
        raise PostNotFound
    rows, total = await _PAGE.fetch(database, {"post_id": post_id, "limit": limit, "offset": offset})
    items = [_fields(dict(zip(_PAGE.columns, row, strict=True))) for row in rows]
    return Page[CommentRead].model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


def idempotency_scope(post_id: int) -> str:
    """Where a key was used: the same key on another post's comments is another request."""
    return f"POST /api/v1/posts/{post_id}/comments"


async def create(
    *, database: Database, post_id: int, author: Principal, data: CommentCreate, idempotency_key: str | None
) -> Outcome:
    """Comment on a published post (or reply to one of its top-level comments); needs a verified email."""
    if not author.is_verified:
        raise EmailNotVerified("Verify your email address before commenting.")
    made = markdown.render(data.content)
    now = utcnow()
    values = {
        "post_id": post_id,
        "author_id": author.user_id,
        "parent_id": data.parent_id,
        "content": data.content,
        "content_html": made.content_html,
        "render_version": made.render_version,
        "deleted": False,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with idempotency.creating(
        database, user_id=author.user_id, key=idempotency_key, scope=idempotency_scope(post_id), request=data
    ) as creation:
        if creation.outcome is None:
            if isinstance(creation.db, Transaction):
                comment_id = await _insert(creation.db, values)
            else:
                async with database.transaction() as transaction:
                    comment_id = await _insert(transaction, values)
            creation.keep(await _one(creation.db, comment_id))
    assert creation.outcome is not None
    return creation.outcome


async def _insert(transaction: Transaction, values: dict[str, Any]) -> int:
    if not await transaction.rows(_COUNT_IN, post_id=values["post_id"]):
        raise PostNotFound  # missing, a draft or unpublished: nobody comments there
    if values["parent_id"] is not None:
        parent = await transaction.first(_PARENT, parent_id=values["parent_id"])
        if parent is None or parent[0] != values["post_id"]:
            raise InvalidParent("The comment replied to is not on this post.")
        if parent[1] is not None:
            raise InvalidParent("Replies go one level deep: reply to the top-level comment instead.")
        if parent[2]:
            raise InvalidParent("The comment replied to was deleted.")
    ((comment_id,),) = await transaction.rows(_INSERT, **values)
    return int(comment_id)


async def _visible(session: AsyncSession, post_id: int, comment_id: int, viewer: Principal) -> tuple[Comment, Post]:
    """The live comment and its post, if the viewer may see the post; otherwise simply not found."""
    post = await session.get(Post, post_id)
    if post is None or not _may_see_post(post.published, post.author_id, viewer):
        raise PostNotFound
    comment = await session.get(Comment, comment_id)
    if comment is None or comment.post_id != post_id or comment.deleted:
        raise CommentNotFound
    return comment, post


async def _read(session: AsyncSession, comment_id: int) -> CommentRead:
    connection = await session.connection()
    row = (await connection.execute(_ONE.statement, {"comment_id": comment_id})).one()
    return CommentRead.model_validate(_fields(row._mapping))


async def update(
    *,
    database: Database,
    post_id: int,
    comment_id: int,
    editor: Principal,
    data: CommentUpdate,
    if_match: IfMatch | None = None,
) -> CommentRead:
    """Change a comment's text (its author only)."""

    async def work(session: AsyncSession) -> CommentRead:
        comment, _ = await _visible(session, post_id, comment_id, editor)
        if comment.author_id != editor.user_id:
            raise NotAuthor("Only its author can change this comment.")
        if if_match is not None:
            if_match.check(await _read(session, comment_id))
        if data.content is not None:
            made = markdown.render(data.content)
            comment.content, comment.content_html = data.content, made.content_html
            comment.render_version = made.render_version
            comment.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        return await _read(session, comment_id)

    return await versioned.edit(database, work, if_match=if_match)


async def delete(
    *, database: Database, post_id: int, comment_id: int, actor: Principal, if_match: IfMatch | None = None
) -> None:
    """Delete a comment (its author, the post's author or an admin); one with replies stays as a placeholder."""

    async def work(session: AsyncSession) -> None:
        comment, post = await _visible(session, post_id, comment_id, actor)
        if actor.user_id not in (comment.author_id, post.author_id) and not actor.is_admin:
            raise NotAuthor("Only its author, the post's author or an administrator can delete this comment.")
        if if_match is not None:
            if_match.check(await _read(session, comment_id))
        replies = await session.exec(sa.select(exists().where(col(Comment.parent_id) == comment_id)))  # type: ignore[call-overload]
        if replies.scalar():
            _as_placeholder(comment)
        else:
            parent_id = comment.parent_id
            await session.delete(comment)
            await session.flush()
            if parent_id is not None:
                await _drop_empty_placeholder(session, parent_id)
        await session.flush()
        await count(session, Counter({post_id: -1}))

    await versioned.edit(database, work, if_match=if_match)


def _as_placeholder(comment: Comment) -> None:
    comment.deleted = True
    comment.author_id = None
    comment.content, comment.content_html = DELETED, _DELETED_HTML
    comment.updated_at = utcnow()


async def _drop_empty_placeholder(session: AsyncSession, parent_id: int) -> None:
    """A placeholder whose last reply went has nothing left to hold together."""
    connection = await session.connection()
    await connection.execute(
        sa.delete(Comment).where(
            col(Comment.id) == parent_id,
            col(Comment.deleted) == true(),
            ~exists().where(col(Comment.parent_id) == parent_id),
        )
    )


async def count(session: AsyncSession, changes: Mapping[int, int]) -> None:
    """Add each change to its post's comment count, atomically, in the caller's transaction."""
    connection = await session.connection()
    for post_id, delta in changes.items():
        if delta:
            await connection.execute(
                sa.update(Post).where(col(Post.id) == post_id).values(comments_count=col(Post.comments_count) + delta)
            )


async def forget_author(*, session: AsyncSession, user_id: int) -> None:
    """A leaving user's comments: placeholders where they have replies, removed otherwise; counts kept exact."""
    connection = await session.connection()
    reply = aliased(Comment)
    has_replies = exists().where(col(reply.parent_id) == col(Comment.id))
    kept: Sequence[Any] = (
        await connection.execute(
            sa.update(Comment)
            .where(col(Comment.author_id) == user_id, has_replies)
            .values(
                deleted=True,
                author_id=None,
                content=DELETED,
                content_html=_DELETED_HTML,
                updated_at=utcnow(),
                version=col(Comment.version) + 1,
            )
            .returning(col(Comment.post_id))
        )
    ).all()
    removed: Sequence[Any] = (
        await connection.execute(
            sa.delete(Comment).where(col(Comment.author_id) == user_id).returning(col(Comment.post_id))
        )
    ).all()
    changes = Counter(row[0] for row in [*kept, *removed])
    await count(session, {post_id: -n for post_id, n in changes.items()})
