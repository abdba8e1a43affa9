"""Codes mailed to sign in with (keel.services.email_code)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class EmailSignInCode(SQLModel, table=True):
    """One emailed sign-in code, by keyed hash (keel.core.email_codes).

    Single use, for 10 minutes, and for at most 5 tries; a new request replaces an account's
    unused codes. Only accounts get rows: a request for an address with no account stores nothing.
    """

    __tablename__ = "email_sign_in_code"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    code_hash: str = Field(max_length=64)
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
