"""The account's security activity: what its owner (and an admin) can read back."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class ActivityType(StrEnum):
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    NEW_DEVICE = "new_device"
    PASSWORD_CHANGED = "password_changed"
    PASSWORD_RESET = "password_reset"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    PASSKEY_ADDED = "passkey_added"
    PASSKEY_REMOVED = "passkey_removed"
    IDENTITY_LINKED = "identity_linked"
    IDENTITY_UNLINKED = "identity_unlinked"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    SESSION_REVOKED = "session_revoked"
    ROLE_CHANGED = "role_changed"
    ACCOUNT_DEACTIVATED = "account_deactivated"
    ACCOUNT_REACTIVATED = "account_reactivated"


class Activity(SQLModel, table=True):
    """One security event on an account, written in the transaction of the change it records.

    `user_agent` is the parsed description ("Firefox on macOS"), not the header; `detail` is a small
    JSON object kept as text, so every backend and both database paths write it as the plain string it is.
    """

    __tablename__ = "activity"
    __table_args__ = (
        # The owner's page, newest first.
        sa.Index("ix_activity_user_id_created_at", "user_id", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    type: str = Field(max_length=32)
    # Retention prunes by this alone.
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=255)
    detail: str = Field(default="{}", sa_type=sa.Text)
