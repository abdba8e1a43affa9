from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class PersonalAccessToken(SQLModel, table=True):
    """A long-lived bearer credential a user made for a script, limited to `scopes`.

    Only the SHA-256 of the secret is kept (keel.core.personal_token). A revoked token keeps its row
    (revoked_at set) so the cache can be refilled from it; deleting the user deletes it.
    """

    __tablename__ = "personal_access_token"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    name: str = Field(max_length=100)
    token_hash: str = Field(max_length=64, unique=True)
    # Space-separated scopes (keel.core.personal_token.Scope).
    scopes: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # None: never expires (only where KEEL_PERSONAL_TOKENS_ALLOW_NO_EXPIRY allows it).
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
