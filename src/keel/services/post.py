"""Posts: a public feed of published posts, drafts only their author (and admins) can see, votes."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Select, exists, false, true
from sqlmodel import col, func, or_
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core import markdown
from keel.core.conditional import IfMatch
from keel.core.db import Database, Prebuilt, Transaction
from keel.core.errors import EmailNotVerified, NotAuthor, PostNotFound
from keel.models import Post, PostTag, User, Vote, utcnow
from keel.schemas.common import Page
from keel.schemas.post import PostCreate, PostRead, PostSummary, PostUpdate
from keel.services import idempotency, versioned
from keel.services import tag as tag_service
from keel.services.idempotency import Outcome
from keel.services.query import PageQuery, contains, like_pattern
from keel.services.session import Principal

RENDERED_FIELDS = ("content_html", "excerpt", "reading_minutes", "render_version")


def rendered(content: str) -> dict[str, Any]:
    """The columns made from a post's Markdown, at the write (keel.core.markdown)."""
    made = markdown.render(content)
    return {name: getattr(made, name) for name in RENDERED_FIELDS}


_NEWEST_CREATED = (col(Post.created_at).desc(), col(Post.id).desc())


def _may_see(post: Post, viewer: Principal | None) -> bool:
    return post.published or (viewer is not None and (viewer.user_id == post.author_id or viewer.is_admin))


async def visible(session: AsyncSession, post_id: int, viewer: Principal | None) -> Post:
    """The post if the viewer may see it; a draft is simply not found for anyone but its author and admins."""
    post = await session.get(Post, post_id)
    if post is None or not _may_see(post, viewer):
        raise PostNotFound
    return post


@lru_cache(maxsize=4)
def _read_statement(*, with_viewer: bool, whole: bool = True) -> Select[*tuple[Any, ...]]:
    """Posts with their author, vote count and the viewer's vote (``viewer_id``): one statement for any page.

    Plain columns, not ORM entities: a page is read-only, and the author's email and password
    hash have no business leaving the database here. A page (`whole=False`) leaves out the
    bodies: its items are summaries.
    """
    voted: ColumnElement[bool] = (
        exists()
        .where(col(Vote.post_id) == col(Post.id), col(Vote.user_id) == sa.bindparam("viewer_id"))
        .correlate(Post)
        if with_viewer
        else false()
    )
    is_author: ColumnElement[bool] = col(Post.author_id) == sa.bindparam("viewer_id") if with_viewer else false()
    body = (col(Post.content), col(Post.content_html)) if whole else ()
    return sa.select(
        col(Post.id),
        col(Post.title),
        *body,
        col(Post.excerpt),
        col(Post.reading_minutes),
        col(Post.published),
        col(Post.tags),
        col(Post.published_at),
        col(Post.created_at),
        col(Post.updated_at),
        col(User.id).label("author_id"),
        col(User.username).label("author_username"),
        col(User.full_name).label("author_full_name"),
        col(User.created_at).label("author_created_at"),
        col(Post.votes_count).label("votes"),
        col(Post.comments_count),
        voted.label("voted"),
        is_author.label("is_author"),
    ).join(User, col(User.id) == col(Post.author_id))


def _fields(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A PostRead (or, without the body columns, a PostSummary) as plain data, for one pydantic call a page."""
    fields = {
        "id": row["id"],
        "title": row["title"],
        "excerpt": row["excerpt"],
        "reading_minutes": row["reading_minutes"],
        "published": row["published"],
        "tags": row["tags"],
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
        "comments_count": row["comments_count"],
        "voted": bool(row["voted"]),
        "is_author": bool(row["is_author"]),
    }
    if "content" in row:
        fields["content"] = row["content"]
        fields["content_html"] = row["content_html"]
    return fields


_PAGE = Page[PostSummary]


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


class Sort(StrEnum):
    NEW = "new"
    TOP = "top"


# Each order is an index's order read backwards (ix_post_feed, ix_post_top; on a tag's page
# ix_post_tag_feed, ix_post_tag_top), the id last so that pages are stable.
_ORDER = {
    Sort.NEW: (col(Post.published_at).desc(), col(Post.id).desc()),
    Sort.TOP: (col(Post.votes_count).desc(), col(Post.published_at).desc(), col(Post.id).desc()),
}
_TAG_ORDER = {
    Sort.NEW: (col(PostTag.published_at).desc(), col(PostTag.post_id).desc()),
    Sort.TOP: (col(PostTag.votes_count).desc(), col(PostTag.published_at).desc(), col(PostTag.post_id).desc()),
}


@cache  # a handful of shapes
def _page_query(
    *,
    with_viewer: bool,
    mine: bool,
    by_author: bool,
    by_published: bool,
    search: bool,
    by_tag: bool = False,
    sort: Sort = Sort.NEW,
) -> PageQuery:
    """The feed (published posts, newest or top first) or an author's own posts (newest created first).

    A tag's page starts from post_tag, whose copies of the ordering columns keep it one index scan.
    """
    conditions: list[Any] = []
    if mine:
        conditions.append(col(Post.author_id) == sa.bindparam("viewer_id"))
    elif by_tag:
        conditions += [col(PostTag.tag) == sa.bindparam("tag"), col(PostTag.published) == true()]
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
    order = _NEWEST_CREATED if mine else _TAG_ORDER[sort] if by_tag else _ORDER[sort]
    page = _read_statement(with_viewer=with_viewer, whole=False)
    count: Select[Any] = sa.select(func.count()).select_from(Post)
    if by_tag:
        page = page.join(PostTag, col(PostTag.post_id) == col(Post.id))
        count = count.join(PostTag, col(PostTag.post_id) == col(Post.id))
    count = count.where(*conditions)
    if not (mine or by_author or search):
        # The whole feed, or a whole tag: their totals are kept (keel.services.tag.count_published),
        # exact and one row to read, where counting them was O(published posts) on every page.
        count = tag_service.tagged_total() if by_tag else tag_service.published_total()
    return PageQuery.of(
        page.where(*conditions).order_by(*order).limit(sa.bindparam("limit")).offset(sa.bindparam("offset")), count
    )


async def _page(
    database: Database, query: PageQuery, params: dict[str, Any], *, limit: int, offset: int
) -> Page[PostSummary]:
    rows, total = await query.fetch(database, {**params, "limit": limit, "offset": offset})
    items = [_fields(dict(zip(query.columns, row, strict=True))) for row in rows]
    return _PAGE.model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


async def list_feed(
    *,
    database: Database,
    viewer: Principal | None,
    author_id: int | None,
    q: str | None,
    tag: str | None = None,
    sort: Sort = Sort.NEW,
    limit: int,
    offset: int,
) -> Page[PostSummary]:
    query = _page_query(
        with_viewer=viewer is not None,
        mine=False,
        by_author=author_id is not None,
        by_published=False,
        search=bool(q),
        by_tag=tag is not None,
        sort=sort,
    )
    params = {**_viewer_params(viewer), "author_id": author_id, "pattern": like_pattern(q or ""), "tag": tag}
    return await _page(database, query, params, limit=limit, offset=offset)


async def list_mine(
    *, database: Database, author: Principal, published: bool | None, limit: int, offset: int
) -> Page[PostSummary]:
    query = _page_query(with_viewer=True, mine=True, by_author=False, by_published=published is not None, search=False)
    params = {**_viewer_params(author), "published": published}
    return await _page(database, query, params, limit=limit, offset=offset)


# Where an Idempotency-Key was used (kept with its record: the same key elsewhere is another request).
IDEMPOTENCY_SCOPE = "POST /api/v1/posts"
_INSERT = Prebuilt(
    sa.insert(Post).returning(col(Post.id)),
    tuple,
    binds=[
        "author_id",
        "title",
        "content",
        *RENDERED_FIELDS,
        "tags",
        "votes_count",
        "comments_count",
        "published",
        "published_at",
        "created_at",
        "updated_at",
        "version",
    ],
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
        **rendered(data.content),
        "tags": data.tags,
        "votes_count": 0,
        "comments_count": 0,
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
            if isinstance(creation.db, Transaction) or not (data.tags or data.published):
                post_id = await _insert(creation.db, values)
            else:  # the post, its tag rows and the counts together; a draft without tags is one INSERT
                async with database.transaction() as transaction:
                    post_id = await _insert(transaction, values)
            creation.keep(await _one(creation.db, post_id, author))
    assert creation.outcome is not None
    return creation.outcome


async def _insert(db: Database | Transaction, values: dict[str, Any]) -> int:
    ((post_id,),) = await db.rows(_INSERT, **values)
    if values["tags"] or values["published"]:
        assert isinstance(db, Transaction)
        await tag_service.sync(db, post_id=post_id, tags=values["tags"])
        if values["published"]:
            await tag_service.count_published(db, added=[values["tags"]])
    return int(post_id)


async def update(
    *, database: Database, post_id: int, editor: Principal, data: PostUpdate, if_match: IfMatch | None = None
) -> PostRead:
    """Merge the given fields into the post (its author only); null leaves a field as it is."""
    changes = {key: value for key, value in data.model_dump(exclude_unset=True).items() if value is not None}

    async def work(session: AsyncSession) -> PostRead:
        post = await visible(session, post_id, editor)
        if post.author_id != editor.user_id:
            raise NotAuthor
        if if_match is not None:
            if_match.check(await read(session=session, post=post, viewer=editor))
        if changes.get("published") and not post.published:
            if not editor.is_verified:
                raise EmailNotVerified("Verify your email address before publishing.")
            post.published_at = post.published_at or utcnow()
        if "content" in changes:
            changes.update(rendered(changes["content"]))
        reindex = ("tags" in changes and changes["tags"] != post.tags) or (
            "published" in changes and changes["published"] != post.published
        )
        # What the counts hold for this post now; the version check of the flush proves it is what
        # the row held until this write.
        counted = [list(post.tags)] if post.published else []
        post.sqlmodel_update(changes)
        post.updated_at = utcnow()
        await session.flush()  # raises StaleDataError if another write got there first
        if reindex:  # after the flush: the post's row is written (and locked) with what the copies read
            assert post.id is not None
            await tag_service.sync(session, post_id=post.id, tags=post.tags)
            await tag_service.count_published(session, removed=counted, added=[post.tags] if post.published else [])
        return await read(session=session, post=post, viewer=editor)

    return await versioned.edit(database, work, if_match=if_match)


async def delete(*, database: Database, post_id: int, actor: Principal, if_match: IfMatch | None = None) -> None:
    async def work(session: AsyncSession) -> None:
        post = await visible(session, post_id, actor)
        if post.author_id != actor.user_id and not actor.is_admin:
            raise NotAuthor("Only the author or an administrator can delete this post.")
        if if_match is not None:
            if_match.check(await read(session=session, post=post, viewer=actor))
        await session.delete(post)
        await session.flush()  # its post_tag rows go by ON DELETE CASCADE
        if post.published:  # as the flush's version check proves it was until this delete
            await tag_service.count_published(session, removed=[post.tags])

    await versioned.edit(database, work, if_match=if_match)


_DELETE_AUTHORS = Prebuilt(
    sa.delete(Post)
    .where(col(Post.author_id) == sa.bindparam("author_id"))
    .returning(col(Post.published), col(Post.tags)),
    tuple,
)


async def forget_author(*, session: AsyncSession, user_id: int) -> None:
    """Delete a leaving user's posts in the deletion's transaction, and take them off the counts.

    The account's ON DELETE CASCADE would take the posts too, but without telling what it took.
    RETURNING gives each post as it was deleted, so a publish that raced this is counted out too.
    """
    connection = await session.connection()
    deleted = await connection.execute(_DELETE_AUTHORS.statement, {"author_id": user_id})
    await tag_service.count_published(session, removed=[tags for published, tags in deleted if published])
