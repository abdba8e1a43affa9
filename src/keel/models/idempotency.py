from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a create sent with an `Idempotency-Key`, kept to replay for 24 hours.

    The key is the user's own: two users may use the same key for different things.
    """

    __tablename__ = "idempotency_record"

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    key: str = Field(max_length=255, primary_key=True)
    # What the key was used for ("POST /api/v1/todos") and a SHA-256 of the validated body:
    # the same key with anything else is a different request, refused.
    scope: str = Field(max_length=100)
    fingerprint: str = Field(max_length=64)
    status_code: int
    response_body: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
