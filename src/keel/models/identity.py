"""Accounts at other providers linked to local ones, and the provider sign-ins under way."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class Identity(SQLModel, table=True):
    """An account at a provider (`provider`, `subject`) that signs in to a local account.

    `confirmed_at` is None while the link waits for the local account's owner to confirm it by the
    mailed link (see keel.services.identity.resolve_account); until then it signs in to nothing.
    """

    __tablename__ = "identity"
    __table_args__ = (
        sa.UniqueConstraint("provider", "subject", name="uq_identity_provider_subject"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    provider: str = Field(max_length=32)
    subject: str = Field(max_length=255)
    # The address the provider gave when the identity was linked (for the owner's list).
    email: str | None = Field(default=None, max_length=254)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OidcFlow(SQLModel, table=True):
    """A provider sign-in (or link) that left for the provider and has not come back yet.

    Keyed by the SHA-256 of its `state`; `browser_hash` is that of the random value in the browser's
    short-lived cookie, so only the browser that started the flow can finish it. Finishing deletes
    the row: a state works once.
    """

    __tablename__ = "oidc_flow"

    state_hash: str = Field(primary_key=True, max_length=64)
    browser_hash: str = Field(max_length=64)
    provider: str = Field(max_length=32)
    nonce: str = Field(max_length=64)
    code_verifier: str = Field(max_length=128)
    next_path: str = Field(max_length=512)
    # A link flow: the signed-in account and session that asked for it.
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE", index=True)
    session_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
