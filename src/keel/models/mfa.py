"""Second factors (TOTP, recovery codes, passkeys) and the sign-ins that wait for one."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from keel.models.base import UTCDateTime, utcnow


class TotpCredential(SQLModel, table=True):
    """A user's authenticator-app secret: pending until a first code confirms it, then in force."""

    __tablename__ = "totp_credential"

    user_id: int = Field(primary_key=True, foreign_key="user.id", ondelete="CASCADE")
    # Encrypted with a key derived from the secret key (keel.core.secret_box), bound to the user.
    secret: str = Field(max_length=255)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The time step of the last accepted code: a code of that step or an earlier one is refused.
    last_used_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RecoveryCode(SQLModel, table=True):
    """One single-use recovery code, by keyed hash; regenerating replaces a user's whole set."""

    __tablename__ = "recovery_code"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    code_hash: str = Field(max_length=64)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Passkey(SQLModel, table=True):
    """A WebAuthn credential registered to an account."""

    __tablename__ = "passkey"
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    # base64url, as browsers hand it over; unique across accounts (a discoverable sign-in finds
    # the account by it).
    credential_id: str = Field(max_length=1400, unique=True)
    public_key: str = Field(sa_type=sa.Text)  # the COSE key, base64url
    # An unsigned 32-bit counter in the authenticator: beyond a PostgreSQL integer.
    sign_count: int = Field(default=0, sa_type=sa.BigInteger)
    name: str = Field(max_length=64)
    transports: str | None = Field(default=None, max_length=255)  # comma-separated
    aaguid: str | None = Field(default=None, max_length=36)
    backed_up: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PendingSignIn(SQLModel, table=True):
    """A first factor that succeeded for an account with a second one: what an `mfa_token` names.

    The token itself is handed to the client; only its SHA-256 is kept. Finishing the sign-in
    deletes the row (single use); so does the fifth wrong code.
    """

    __tablename__ = "pending_sign_in"

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    # The RFC 8176 value of the first factor: `pwd`, `otp` (an emailed code), `fed` (social).
    first_factor: str = Field(max_length=16)
    failures: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    user_agent: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=45)
    # A provider sign-in's identity, for the session it opens (keel.models.session.UserSession).
    identity_id: int | None = Field(default=None, foreign_key="identity.id", ondelete="CASCADE")


class WebauthnChallenge(SQLModel, table=True):
    """A WebAuthn challenge, single use and short-lived, bound to what asked for it.

    Used where Redis is not configured; with Redis the same record lives there.
    """

    __tablename__ = "webauthn_challenge"

    challenge: str = Field(primary_key=True, max_length=128)  # base64url
    purpose: str = Field(max_length=16)  # "register" or "authenticate"
    # Registration: the signed-in session. Second factor: the pending sign-in's token hash.
    session_id: str | None = Field(default=None, max_length=32)
    pending_hash: str | None = Field(default=None, max_length=64)
    user_id: int | None = Field(default=None, foreign_key="user.id", ondelete="CASCADE", index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
