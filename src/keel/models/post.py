from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow
from keel.models.todo import LabelSet


class Post(SQLModel, table=True):
    __tablename__ = "post"
    __table_args__ = (
        # The public feed: published posts, newest first (partial, so drafts cost it nothing).
        sa.Index(
            "ix_post_feed",
            "published_at",
            "id",
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        ),
        # The feed filtered by author.
        sa.Index(
            "ix_post_author_feed",
            "author_id",
            "published_at",
            "id",
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        ),
        # The feed by most votes, then newest (`sort=top`).
        sa.Index(
            "ix_post_top",
            "votes_count",
            "published_at",
            "id",
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        ),
        # An author's own posts, drafts included (/posts/mine), newest first.
        sa.Index("ix_post_author_id_created_at", "author_id", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    title: str = Field(max_length=200)
    content: str = Field(sa_type=sa.Text)
    # Made from `content` at every write (keel.core.markdown), never at a read: a page costs no rendering.
    content_html: str = Field(default="", sa_type=sa.Text, sa_column_kwargs={"server_default": ""})
    excerpt: str = Field(default="", max_length=300, sa_column_kwargs={"server_default": ""})
    reading_minutes: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # The keel.core.markdown.RENDERER_VERSION the three above were made with (`keel posts rerender`).
    render_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    published: bool = Field(default=False)
    # In the order the author gave them, as `,a,b,` (see keel.models.todo.LabelSet); PostTag indexes them.
    tags: list[str] = Field(default_factory=list, sa_type=LabelSet, sa_column_kwargs={"server_default": ""})
    # Kept with each vote in the vote's transaction (an atomic `votes_count + 1`): sort=top reads an index.
    votes_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Live comments (not "[deleted]" placeholders), kept the same way by every comment write.
    comments_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Set when the post is first published; unpublishing and republishing keep it.
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    # Raised by every ORM write and checked by it (UPDATE/DELETE ... WHERE version = the one read):
    # a write that raced another fails rather than overwriting it (see keel.core.conditional).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class PostTag(SQLModel, table=True):
    """One tag of one post, with copies of the post's feed ordering so a tag page is one index scan.

    `published`, `published_at` and `votes_count` follow the post's in the same transaction as
    every change to them (publishing, a vote, a tag edit): a tag's page, newest or top, then reads
    this table's index in order and joins each post by its key, never sorting the tag's posts.
    """

    __tablename__ = "post_tag"
    __table_args__ = (
        sa.Index(
            "ix_post_tag_feed",
            "tag",
            "published_at",
            "post_id",
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        ),
        sa.Index(
            "ix_post_tag_top",
            "tag",
            "votes_count",
            "published_at",
            "post_id",
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        ),
    )

    post_id: int = Field(foreign_key="post.id", ondelete="CASCADE", primary_key=True)
    tag: str = Field(max_length=30, primary_key=True)
    published: bool = Field(default=False)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    votes_count: int = Field(default=0)
