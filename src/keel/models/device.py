"""The devices an account has signed in from, so that a new one can be told apart."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class KnownDevice(SQLModel, table=True):
    """A device seen signing in to an account: the SHA-256 of its device cookie, or of its user agent and network."""

    __tablename__ = "known_device"

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    device_hash: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Pruned with the activity once it has not signed in for the retention period.
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
