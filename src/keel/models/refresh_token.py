from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class RefreshToken(SQLModel, table=True):
    """Every refresh token a session was given, by SHA-256 hash; used ones stay for reuse detection."""

    __tablename__ = "refresh_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    session_id: str = Field(foreign_key="user_session.id", ondelete="CASCADE", index=True, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
