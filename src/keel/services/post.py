"""Posts: a public feed of published posts, drafts only their author (and admins) can see, votes."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Select, exists, false, true
from sqlalchemy import delete as sa_delete
from sqlmodel import col, func, or_
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.conditional import IfMatch
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import EmailNotVerified, NotAuthor, PostNotFound
from keel.models import Post, User, Vote, utcnow
from keel.schemas.common import Page
from keel.schemas.post import PostCreate, PostRead, PostUpdate
from keel.services import idempotency, versioned
from keel.services.idempotency import Outcome
from keel.services.query import PageQuery, contains, insert_ignoring_conflict, like_pattern
from keel.services.session import Principal

_NEWEST_PUBLISHED = (col(Post.published_at).desc(), col(Post.id).desc())
_NEWEST_CREATED = (col(Post.created_at).desc(), col(Post.id).desc())


def _may_see(post: Post, viewer: Principal | None) -> bool:
    return post.published or (viewer is not None and (viewer.user_id == post.author_id or viewer.is_admin))


async def _visible(session: AsyncSession, post_id: int, viewer: Principal | None) -> Post:
    """The post if the viewer may see it; a draft is simply not found for anyone but its author and admins."""
    post = await session.get(Post, post_id)
    if post is None or not _may_see(post, viewer):
        raise PostNotFound
    return post


@lru_cache(maxsize=2)
def _read_statement(*, with_viewer: bool) -> Select[*tuple[Any, ...]]:
    """Posts with their author, vote count and the viewer's vote (``viewer_id``): one statement for any page.

    Plain columns, not ORM entities: a page is read-only, and the author's email and password
    hash have no business leaving the database here.
    """
    votes = sa.select(func.count()).where(col(Vote.post_id) == col(Post.id)).correlate(Post).scalar_subquery()
    voted: ColumnElement[bool] = (
        exists()
        .where(col(Vote.post_id) == col(Post.id), col(Vote.user_id) == sa.bindparam("viewer_id"))
        .correlate(Post)
        if with_viewer
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


def _fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A PostRead as plain data, so a whole page is validated in one pydantic call."""
    return {
        "id": row["id"],
        "title": row["title"],
        "content": row["content"],
        "published": row["published"],
        "published_at": row["published_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "author": {
            "id": row["author_id"],
            "username": row["author_username"],
            "full_name": row["author_full_name"],
            "created_at": row["author_created_at"],
        },
        "votes": row["votes"],
        "voted": bool(row["voted"]),
    }


_PAGE = Page[PostRead]


def _viewer_params(viewer: Principal | None) -> dict[str, Any]:
    return {"viewer_id": viewer.user_id} if viewer is not None else {}


_ONE = {
    with_viewer: Prebuilt(
        _read_statement(with_viewer=with_viewer).where(col(Post.id) == sa.bindparam("post_id")), tuple
    )
    for with_viewer in (False, True)
}
_ONE_COLUMNS = tuple(str(column.key) for column in _read_statement(with_viewer=False).selected_columns)


async def get(*, database: Database, post_id: int, viewer: Principal | None) -> PostRead:
    """The post as the viewer sees it; a draft is simply not found for anyone but its author and admins."""
    post = await _one(database, post_id, viewer)
    mine = viewer is not None and (viewer.user_id == post.author.id or viewer.is_admin)
    if not (post.published or mine):
        raise PostNotFound
    return post


async def _one(db: Database | Transaction, post_id: int, viewer: Principal | None) -> PostRead:
    row = await db.first(_ONE[viewer is not None], post_id=post_id, **_viewer_params(viewer))
    if row is None:
        raise PostNotFound
    return PostRead.model_validate(_fields(dict(zip(_ONE_COLUMNS, row, strict=True))))


async def read(*, session: AsyncSession, post: Post, viewer: Principal | None) -> PostRead:
    statement = _read_statement(with_viewer=viewer is not None).where(col(Post.id) == post.id)
    connection = await session.connection()
    row = (await connection.execute(statement, _viewer_params(viewer))).one()
    return PostRead.model_validate(_fields(row._mapping))


@cache  # a handful of shapes
def _page_query(*, with_viewer: bool, mine: bool, by_author: bool, by_published: bool, search: bool) -> PageQuery:
    """The feed (published posts, newest first) or an author's own posts (newest created first)."""
    conditions: list[Any] = []
    if mine:
        conditions.append(col(Post.author_id) == sa.bindparam("viewer_id"))
    else:
        # `= true` (not IS TRUE) so PostgreSQL matches the partial feed index's predicate.
        conditions.append(col(Post.published) == true())
    if by_author:
        conditions.append(col(Post.author_id) == sa.bindparam("author_id"))
    if by_published:
        conditions.append(col(Post.published) == sa.bindparam("published"))
    if search:
        pattern = sa.bindparam("pattern", type_=sa.String)
        conditions.append(or_(contains(col(Post.title), pattern), contains(col(Post.content), pattern)))
    order = _NEWEST_CREATED if mine else _NEWEST_PUBLISHED
    return PageQuery.of(
        _read_statement(with_viewer=with_viewer)
        .where(*conditions)
        .order_by(*order)
        .limit(sa.bindparam("limit"))
        .offset(sa.bindparam("offset")),
        sa.select(func.count()).select_from(Post).where(*conditions),
    )


async def _page(
    database: Database, query: PageQuery, params: dict[str, Any], *, limit: int, offset: int
) -> Page[PostRead]:
    rows, total = await query.fetch(database, {**params, "limit": limit, "offset": offset})
    items = [_fields(dict(zip(query.columns, row, strict=True))) for row in rows]
    return _PAGE.model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


async def list_feed(
    *,
    database: Database,
    viewer: Principal | None,
    author_id: int | None,
    q: str | None,
    limit: int,
    offset: int,
) -> Page[PostRead]:
    query = _page_query(
        with_viewer=viewer is not None, mine=False, by_author=author_id is not None, by_published=False, search=bool(q)
    )
    params = {**_viewer_params(viewer), "author_id": author_id, "pattern": like_pattern(q or "")}
    return await _page(database, query, params, limit=limit, offset=offset)


async def list_mine(
    *, database: Database, author: Principal, published: bool | None, limit: int, offset: int
) -> Page[PostRead]:
    query = _page_query(with_viewer=True, mine=True, by_author=False, by_published=published is not None, search=False)
    params = {**_viewer_params(author), "published": published}
    return await _page(database, query, params, limit=limit, offset=offset)


# Where an Idempotency-Key was used (kept with its record: the same key elsewhere is another request).
IDEMPOTENCY_SCOPE = "POST /api/v1/posts"
_INSERT = Prebuilt(
    sa.insert(Post).returning(col(Post.id)),
    tuple,
    binds=["author_id", "title", "content", "published", "published_at", "created_at", "updated_at", "version"],
)


async def create(*, database: Database, author: Principal, data: PostCreate, idempotency_key: str | None) -> Outcome:
    """Write a post, once per idempotency key (see keel.services.idempotency), the way a todo is created."""
    if data.published and not author.is_verified:
        raise EmailNotVerified("Verify your email address before publishing.")
    now = utcnow()
    values = {
        "author_id": author.user_id,
        "title": data.title,
        "content": data.content,
        "published": data.published,
        "published_at": now if data.published else None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with idempotency.creating(
        database, user_id=author.user_id, key=idempotency_key, scope=IDEMPOTENCY_SCOPE, request=data
    ) as creation:
        if creation.outcome is None:
            ((post_id,),) = await creation.db.rows(_INSERT, **values)
            creation.keep(await _one(creation.db, post_id, author))
    assert creation.outcome is not None
    return creation.outcome


async def update(
    *, database: Database, post_id: int, editor: Principal, data: PostUpdate, if_match: IfMatch | None = None
) -> PostRead:
    """Merge the given fields into the post (its author only); null leaves a field as it is."""
    changes = {key: value for key, value in data.model_dump(exclude_unset=True).items() if value is not None}

    async def work(session: AsyncSession) -> PostRead:
        post = await _visible(session, post_id, editor)
        if post.author_id != editor.user_id:
            raise NotAuthor
        if if_match is not None:
            if_match.check(await read(session=session, post=post, viewer=editor))
        if changes.get("published") and not post.published:
            if not editor.is_verified:
                raise EmailNotVerified("Verify your email address before publishing.")
            post.published_at = post.published_at or utcnow()
        post.sqlmodel_update(changes)
        post.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        return await read(session=session, post=post, viewer=editor)

    return await versioned.edit(database, work, if_match=if_match)


async def delete(*, database: Database, post_id: int, actor: Principal, if_match: IfMatch | None = None) -> None:
    async def work(session: AsyncSession) -> None:
        post = await _visible(session, post_id, actor)
        if post.author_id != actor.user_id and not actor.is_admin:
            raise NotAuthor("Only the author or an administrator can delete this post.")
        if if_match is not None:
            if_match.check(await read(session=session, post=post, viewer=actor))
        await session.delete(post)
        await session.flush()

    await versioned.edit(database, work, if_match=if_match)


async def vote(*, database: Database, post_id: int, voter: Principal) -> None:
    """Idempotent: voting twice leaves one vote."""
    async with database.session() as session:
        post = await _visible(session, post_id, voter)
        if not post.published:
            raise PostNotFound  # drafts cannot be voted on, and most voters cannot see them
        if not voter.is_verified:
            raise EmailNotVerified("Verify your email address before voting.")
        await insert_ignoring_conflict(
            session, Vote, {"user_id": voter.user_id, "post_id": post_id, "created_at": utcnow()}
        )
        await session.commit()


async def unvote(*, database: Database, post_id: int, voter: Principal) -> None:
    """Idempotent: removing a vote that is not there is fine."""
    async with database.session() as session:
        await _visible(session, post_id, voter)
        await session.exec(sa_delete(Vote).where(col(Vote.post_id) == post_id, col(Vote.user_id) == voter.user_id))
        await session.commit()
