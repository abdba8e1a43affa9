from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class Comment(SQLModel, table=True):
    """A comment on a post, or a reply to one (one level: a reply's parent has no parent)."""

    __tablename__ = "comment"
    __table_args__ = (
        # A post's comments, oldest first.
        sa.Index("ix_comment_post_id_created_at", "post_id", "created_at", "id"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    post_id: int = Field(foreign_key="post.id", ondelete="CASCADE")
    # Null once the comment is deleted but kept as a "[deleted]" placeholder for its replies.
    author_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL", index=True)
    parent_id: int | None = Field(default=None, foreign_key="comment.id", ondelete="CASCADE", index=True)
    content: str = Field(sa_type=sa.Text)
    content_html: str = Field(sa_type=sa.Text)
    render_version: int = Field(default=0)
    deleted: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Checked by every ORM write, as on posts (see keel.core.conditional).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
