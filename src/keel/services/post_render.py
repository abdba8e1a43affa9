"""Posts and comments rendered again after the Markdown rules changed (`keel posts rerender`).

A post's HTML, excerpt and reading time, and a comment's HTML, are made when they are written.
When keel.core.markdown's rules change (and its RENDERER_VERSION with them), rows made under older
rules are made again here, a batch at a time, each batch its own transaction. A row edited
meanwhile is left alone: the edit rendered it with the current rules already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from keel.core import markdown
from keel.core.db import Database, Prebuilt
from keel.models import Comment, Post

BATCH = 200


@dataclass(frozen=True)
class _Kind:
    """One table of rendered Markdown: which rows are stale, and how one is stored again."""

    stale: Prebuilt[tuple[Any, ...]]
    store: Prebuilt[tuple[Any, ...]]
    fields: tuple[str, ...]  # what of keel.core.markdown.Rendered the table keeps


def _kind(model: type[Post] | type[Comment], fields: tuple[str, ...]) -> _Kind:
    stale = Prebuilt(
        sa.select(col(model.id), col(model.content), col(model.version))
        .where(col(model.render_version) < sa.bindparam("current"), col(model.id) > sa.bindparam("after"))
        .order_by(col(model.id))
        .limit(sa.bindparam("batch")),
        tuple,
    )
    # Not a user's edit, so the row's version (and with it any client's If-Match) is left as it
    # is; conditioned on it all the same, so a row edited since it was read keeps its edit's rendering.
    store = Prebuilt(
        sa.update(model)
        .where(
            col(model.id) == sa.bindparam("row_id"),
            col(model.version) == sa.bindparam("read_version"),
            col(model.render_version) < sa.bindparam("current"),
        )
        .values({name: sa.bindparam(name) for name in (*fields, "render_version")})
        .returning(col(model.id)),
        tuple,
    )
    return _Kind(stale, store, fields)


_POSTS = _kind(Post, ("content_html", "excerpt", "reading_minutes"))
_COMMENTS = _kind(Comment, ("content_html",))


async def rerender(*, database: Database, batch: int = BATCH) -> int:
    """Render every post made with older rules; the number rendered. Running it again finds none."""
    return await _rerender(database, _POSTS, batch)


async def rerender_comments(*, database: Database, batch: int = BATCH) -> int:
    """The same for comments (a "[deleted]" placeholder renders as it did: its text is fixed)."""
    return await _rerender(database, _COMMENTS, batch)


async def _rerender(database: Database, kind: _Kind, batch: int) -> int:
    done = 0
    after = 0
    current = markdown.RENDERER_VERSION
    while True:
        rows = await database.rows(kind.stale, current=current, after=after, batch=batch)
        if not rows:
            return done
        async with database.transaction() as transaction:
            for row_id, content, version in rows:
                made = markdown.render(content)
                stored = await transaction.rows(
                    kind.store,
                    row_id=row_id,
                    read_version=version,
                    current=current,
                    render_version=made.render_version,
                    **{name: getattr(made, name) for name in kind.fields},
                )
                done += len(stored)
        after = rows[-1][0]
