from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


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
        # An author's own posts, drafts included (/posts/mine), newest first.
        sa.Index("ix_post_author_id_created_at", "author_id", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    author_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    title: str = Field(max_length=200)
    content: str = Field(sa_type=sa.Text)
    published: bool = Field(default=False)
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
