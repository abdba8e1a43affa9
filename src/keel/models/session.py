from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class UserSession(SQLModel, table=True):
    """One sign-in: the access and refresh tokens it issues all carry its id."""

    __tablename__ = "user_session"

    id: str = Field(primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The absolute end; the idle end is last_used_at + the idle limit.
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    user_agent: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=45)
    # How the sign-in was made: RFC 8176 values, space-separated ("pwd", "pwd otp mfa", "hwk user").
    amr: str = Field(default="pwd", max_length=64, sa_column_kwargs={"server_default": "pwd"})
    # The last time its user proved who they are (the sign-in, or /auth/reauthenticate): sensitive
    # operations need this to be recent. None for sessions from before it was kept: never recent.
    authenticated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The linked identity a provider sign-in opened it through: unlinking that identity ends it.
    identity_id: int | None = Field(default=None, foreign_key="identity.id", ondelete="SET NULL", index=True)
