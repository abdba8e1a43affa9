from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class EmailKind(StrEnum):
    VERIFY_EMAIL = "verify_email"
    SIGNUP_ATTEMPT = "signup_attempt"
    PASSWORD_RESET = "password_reset"
    RESET_NO_ACCOUNT = "reset_no_account"
    PASSWORD_CHANGED = "password_changed"
    ACCOUNT_LOCKED = "account_locked"
    SECOND_FACTOR_ADDED = "second_factor_added"
    SECOND_FACTOR_REMOVED = "second_factor_removed"
    RECOVERY_CODE_USED = "recovery_code_used"
    SIGN_IN_CODE = "sign_in_code"
    IDENTITY_LINK = "identity_link"
    IDENTITY_LINKED = "identity_linked"
    IDENTITY_UNLINKED = "identity_unlinked"
    LIST_INVITATION = "list_invitation"
    NEW_DEVICE = "new_device"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


def _enum(enum: type[StrEnum], name: str) -> sa.Enum:
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
    )


class EmailOutbox(SQLModel, table=True):
    """An email to send, written in the same transaction as the change that causes it.

    It stores ids, not the message: the message (and any link token in it) is rendered when it
    is sent, so the table never holds a usable link.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (
        # The relay's scan: rows still to deliver, oldest first.
        sa.Index("ix_email_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        # The per-address throttle.
        sa.Index("ix_email_outbox_to_address_created_at", "to_address", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: EmailKind = Field(sa_type=_enum(EmailKind, "email_kind"))
    to_address: str = Field(max_length=254)
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE")
    # The identity a link confirmation is about (its mail's link names it); gone with it.
    identity_id: int | None = Field(default=None, foreign_key="identity.id", ondelete="CASCADE")
    # The shared list an invitation is about; gone with it.
    list_id: int | None = Field(default=None, foreign_key="list.id", ondelete="CASCADE")
    # The sign-in a new-device notice is about (its mail tells when and from where); gone with it.
    activity_id: int | None = Field(default=None, foreign_key="activity.id", ondelete="CASCADE")
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=_enum(OutboxStatus, "outbox_status"))
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
