from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class Vote(SQLModel, table=True):
    """One user's vote for one post: the primary key makes a second vote impossible."""

    __tablename__ = "vote"

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    post_id: int = Field(foreign_key="post.id", ondelete="CASCADE", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
