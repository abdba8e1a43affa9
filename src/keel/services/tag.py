"""Tags: the post_tag rows that make a tag's page one index scan, the tags in use and their counts.

A post's tags live on the post (in the author's order, read with it at no extra cost) and, one row
each, in post_tag with copies of the post's feed ordering (published, published_at, votes_count).
Those copies are written in the same transaction as the change they copy: `sync` after a post is
created or its tags or publication change, `count_vote` beside every change to its vote count.

How many published posts carry each tag (`tag.published_posts`) and how many are published at all
(the `published_posts` counter) are kept the same way, by `count_published`, so that GET /tags, a
tag page's total and the feed's total read a row where they used to count up to millions.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import col, func
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import Database, NoRows, Prebuilt, Transaction
from keel.models import PUBLISHED_POSTS, Counter, Post, PostTag, Tag
from keel.schemas.common import Page
from keel.schemas.post import TagCount

_CLEAR = Prebuilt(sa.delete(PostTag).where(col(PostTag.post_id) == sa.bindparam("post_id")), NoRows)
# The copies are read from the post row as it is now, inside the writer's transaction.
_ADD = Prebuilt(
    sa.insert(PostTag).from_select(
        ["post_id", "tag", "published", "published_at", "votes_count"],
        sa.select(
            col(Post.id),
            sa.bindparam("tag", type_=sa.String),
            col(Post.published),
            col(Post.published_at),
            col(Post.votes_count),
        ).where(col(Post.id) == sa.bindparam("post_id")),
    ),
    NoRows,
)

_Steps = Iterable[tuple[Prebuilt[Any], dict[str, Any]]]


async def sync(db: Transaction | AsyncSession, *, post_id: int, tags: Sequence[str]) -> None:
    """Make the post's post_tag rows match its tags and publication (a handful of rows at most)."""
    steps: list[tuple[Prebuilt[Any], dict[str, Any]]] = [(_CLEAR, {"post_id": post_id})]
    steps += [(_ADD, {"post_id": post_id, "tag": tag}) for tag in tags]
    await _run(db, steps)


async def _run(db: Transaction | AsyncSession, steps: _Steps) -> None:
    # In a session, on its connection: plain statements, not the ORM's bulk writes.
    connection = None if isinstance(db, Transaction) else await db.connection()
    for prebuilt, params in steps:
        if connection is None:
            assert isinstance(db, Transaction)
            await db.rows(prebuilt, **params)
        else:
            await connection.execute(prebuilt.statement, params)


async def count_vote(session: AsyncSession, *, post_ids: Sequence[int], delta: int) -> None:
    """Add `delta` to the posts' vote counts, on the posts and on their tag rows, atomically."""
    if not post_ids:
        return
    connection = await session.connection()
    for model in (Post, PostTag):
        key = col(Post.id) if model is Post else col(PostTag.post_id)
        await connection.execute(
            sa.update(model).where(key.in_(post_ids)).values(votes_count=model.votes_count + delta)
        )


# Upserts that add to a count inside the row (`n = n + delta`, never a value read beforehand), so
# two transactions counting the same tag both land; a missing row (a tag new to the site, or an
# emptied database) is created holding the delta. On PostgreSQL the row stays locked until the
# writer commits: publishers of one tag, and every publish or unpublish for the counter, take
# turns on that row. Callers count last, just before their commit, to keep each turn short.
# (PostgreSQL's ON CONFLICT compiles for SQLite as it is.)
_new_tag = postgresql.insert(Tag).values(name=sa.bindparam("name"), published_posts=sa.bindparam("delta"))
_COUNT_TAG = Prebuilt(
    _new_tag.on_conflict_do_update(
        index_elements=[col(Tag.name)],
        set_={"published_posts": col(Tag.published_posts) + _new_tag.excluded.published_posts},
    ),
    NoRows,
)
_new_count = postgresql.insert(Counter).values(name=sa.bindparam("name"), value=sa.bindparam("delta"))
_COUNT = Prebuilt(
    _new_count.on_conflict_do_update(
        index_elements=[col(Counter.name)], set_={"value": col(Counter.value) + _new_count.excluded.value}
    ),
    NoRows,
)


async def count_published(
    db: Transaction | AsyncSession, *, removed: Iterable[Sequence[str]] = (), added: Iterable[Sequence[str]] = ()
) -> None:
    """Keep the counts of published posts in the writer's transaction.

    `removed` holds the tags of each published post that stops counting (unpublished, deleted, or
    as it was before an edit), `added` those of each that starts. Call it once the posts' rows are
    written: every writer then locks rows in one order (posts, their post_tag rows, the tags by
    name, the counter), so no two wait for each other in a cycle. Only what changed is written: a
    retagged published post touches the tags it gained or lost, and not the counter.
    """
    tally: Tally[str] = Tally()
    posts = 0
    for tags in removed:
        tally.subtract(set(tags))
        posts -= 1
    for tags in added:
        tally.update(set(tags))
        posts += 1
    steps = [(_COUNT_TAG, {"name": name, "delta": delta}) for name, delta in sorted(tally.items()) if delta]
    if posts:
        steps.append((_COUNT, {"name": PUBLISHED_POSTS, "delta": posts}))
    await _run(db, steps)


# A literal, not a parameter, so that PostgreSQL matches the partial index's predicate (ix_tag_in_use).
_IN_USE = col(Tag.published_posts) > sa.literal_column("0", sa.Integer)
_TAGS = Prebuilt(
    sa.select(col(Tag.name), col(Tag.published_posts))
    .where(_IN_USE)
    # Most used first; the name breaks ties, so pages are stable. ix_tag_in_use is in this order.
    .order_by(col(Tag.published_posts).desc(), col(Tag.name))
    .limit(sa.bindparam("limit"))
    .offset(sa.bindparam("offset"))
    .add_columns(
        sa.select(func.count()).select_from(Tag).where(_IN_USE).scalar_subquery().correlate(None).label("total")
    ),
    tuple,
)
_TOTAL = Prebuilt(sa.select(func.count()).select_from(Tag).where(_IN_USE), tuple)


async def list_in_use(*, database: Database, limit: int, offset: int) -> Page[TagCount]:
    """The tags on published posts with how many carry each, most used first."""
    rows = await database.rows(_TAGS, limit=limit, offset=offset)
    total: Any = rows[0][2] if rows else (await database.first(_TOTAL) or (0,))[0] if offset else 0
    items = [{"tag": tag, "count": count} for tag, count, _ in rows]
    return Page[TagCount].model_validate({"items": items, "total": total, "limit": limit, "offset": offset})


def published_total() -> sa.Select[tuple[int]]:
    """The number of published posts, from its counter (no row yet: none)."""
    kept = sa.select(col(Counter.value)).where(col(Counter.name) == PUBLISHED_POSTS).scalar_subquery()
    return sa.select(func.coalesce(kept, 0))


def tagged_total() -> sa.Select[tuple[int]]:
    """The number of published posts with the tag bound as `tag`, from its kept count."""
    kept = sa.select(col(Tag.published_posts)).where(col(Tag.name) == sa.bindparam("tag")).scalar_subquery()
    return sa.select(func.coalesce(kept, 0))
