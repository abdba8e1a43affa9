"""Posts: a public feed of published posts, drafts only their author (and admins) can see, votes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, RowMapping, Select, exists, false, true
from sqlalchemy import delete as sa_delete
from sqlmodel import col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.errors import EmailNotVerified, NotAuthor, PostNotFound
from keel.models import Post, User, Vote, utcnow
from keel.schemas.common import Page
from keel.schemas.post import PostCreate, PostRead, PostUpdate
from keel.schemas.user import UserPublic
from keel.services.idempotency import Claim
from keel.services.query import contains, insert_ignoring_conflict
from keel.services.session import Principal

_NEWEST_PUBLISHED = (col(Post.published_at).desc(), col(Post.id).desc())
_NEWEST_CREATED = (col(Post.created_at).desc(), col(Post.id).desc())


def _may_see(post: Post, viewer: Principal | None) -> bool:
    return post.published or (viewer is not None and (viewer.user_id == post.author_id or viewer.is_admin))


async def get_visible(*, session: AsyncSession, post_id: int, viewer: Principal | None) -> Post:
    """The post if the viewer may see it; a draft is simply not found for anyone but its author and admins."""
    post = await session.get(Post, post_id)
    if post is None or not _may_see(post, viewer):
        raise PostNotFound
    return post


def _read_statement(viewer: Principal | None) -> Select[*tuple[Any, ...]]:
    """Posts with their author, vote count and the viewer's vote: one statement for any page size.

    Plain columns, not ORM entities: a page is read-only, and the author's email and password
    hash have no business leaving the database here.
    """
    votes = sa.select(func.count()).where(col(Vote.post_id) == col(Post.id)).correlate(Post).scalar_subquery()
    voted: ColumnElement[bool] = (
        exists().where(col(Vote.post_id) == col(Post.id), col(Vote.user_id) == viewer.user_id).correlate(Post)
        if viewer is not None
        else false()
    )
    return sa.select(
        col(Post.id),
        col(Post.title),
        col(Post.content),
        col(Post.published),
        col(Post.published_at),
        col(Post.created_at),
        col(Post.updated_at),
        col(User.id).label("author_id"),
        col(User.username).label("author_username"),
        col(User.full_name).label("author_full_name"),
        col(User.created_at).label("author_created_at"),
        votes.label("votes"),
        voted.label("voted"),
    ).join(User, col(User.id) == col(Post.author_id))


def _to_read(row: RowMapping) -> PostRead:
    return PostRead(
        id=row["id"],
        title=row["title"],
        content=row["content"],
        published=row["published"],
        published_at=row["published_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        author=UserPublic(
            id=row["author_id"],
            username=row["author_username"],
            full_name=row["author_full_name"],
            created_at=row["author_created_at"],
        ),
        votes=row["votes"],
        voted=bool(row["voted"]),
    )


async def _rows(session: AsyncSession, statement: Select[*tuple[Any, ...]]) -> Sequence[RowMapping]:
    connection = await session.connection()
    result = await connection.execute(statement)
    rows: Sequence[RowMapping] = result.mappings().all()
    return rows


async def _page(
    session: AsyncSession,
    viewer: Principal | None,
    conditions: list[Any],
    order: tuple[Any, ...],
    limit: int,
    offset: int,
) -> Page[PostRead]:
    total = (await session.exec(select(func.count()).select_from(Post).where(*conditions))).one()
    rows = await _rows(session, _read_statement(viewer).where(*conditions).order_by(*order).limit(limit).offset(offset))
    return Page[PostRead](items=[_to_read(row) for row in rows], total=total, limit=limit, offset=offset)


async def read(*, session: AsyncSession, post: Post, viewer: Principal | None) -> PostRead:
    (row,) = await _rows(session, _read_statement(viewer).where(col(Post.id) == post.id))
    return _to_read(row)


async def list_feed(
    *,
    session: AsyncSession,
    viewer: Principal | None,
    author_id: int | None,
    q: str | None,
    limit: int,
    offset: int,
) -> Page[PostRead]:
    # `= true` (not IS TRUE) so PostgreSQL matches the partial feed index's predicate.
    conditions: list[Any] = [col(Post.published) == true()]
    if author_id is not None:
        conditions.append(col(Post.author_id) == author_id)
    if q:
        conditions.append(or_(contains(col(Post.title), q), contains(col(Post.content), q)))
    return await _page(session, viewer, conditions, _NEWEST_PUBLISHED, limit, offset)


async def list_mine(
    *, session: AsyncSession, author: Principal, published: bool | None, limit: int, offset: int
) -> Page[PostRead]:
    conditions: list[Any] = [col(Post.author_id) == author.user_id]
    if published is not None:
        conditions.append(col(Post.published) == published)
    return await _page(session, author, conditions, _NEWEST_CREATED, limit, offset)


async def create(*, session: AsyncSession, author: Principal, data: PostCreate, claim: Claim | None = None) -> PostRead:
    """Write a post; with an idempotency claim, its record commits together with the post."""
    if data.published and not author.is_verified:
        raise EmailNotVerified("Verify your email address before publishing.")
    now = utcnow()
    post = Post(
        author_id=author.user_id,
        title=data.title,
        content=data.content,
        published=data.published,
        published_at=now if data.published else None,
        created_at=now,
        updated_at=now,
    )
    session.add(post)
    await session.flush()
    answer = await read(session=session, post=post, viewer=author)
    if claim is not None:
        claim.record(session, answer, status_code=201)
    await session.commit()
    return answer


async def update(*, session: AsyncSession, post: Post, editor: Principal, data: PostUpdate) -> PostRead:
    if post.author_id != editor.user_id:
        raise NotAuthor
    changes = {key: value for key, value in data.model_dump(exclude_unset=True).items() if value is not None}
    if changes.get("published") and not post.published:
        if not editor.is_verified:
            raise EmailNotVerified("Verify your email address before publishing.")
        post.published_at = post.published_at or utcnow()
    post.sqlmodel_update(changes)
    post.updated_at = utcnow()
    session.add(post)
    await session.commit()
    return await read(session=session, post=post, viewer=editor)


async def delete(*, session: AsyncSession, post: Post, actor: Principal) -> None:
    if post.author_id != actor.user_id and not actor.is_admin:
        raise NotAuthor("Only the author or an administrator can delete this post.")
    await session.delete(post)
    await session.commit()


async def vote(*, session: AsyncSession, post: Post, voter: Principal) -> None:
    """Idempotent: voting twice leaves one vote."""
    if not post.published:
        raise PostNotFound  # drafts cannot be voted on, and most voters cannot see them
    if not voter.is_verified:
        raise EmailNotVerified("Verify your email address before voting.")
    await insert_ignoring_conflict(
        session, Vote, {"user_id": voter.user_id, "post_id": post.id, "created_at": utcnow()}
    )
    await session.commit()


async def unvote(*, session: AsyncSession, post: Post, voter: Principal) -> None:
    """Idempotent: removing a vote that is not there is fine."""
    await session.exec(sa_delete(Vote).where(col(Vote.post_id) == post.id, col(Vote.user_id) == voter.user_id))
    await session.commit()
