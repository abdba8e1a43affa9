"""identities: accounts at other providers linked to local ones, provider sign-ins under way,
and the link confirmation emails

Revision ID: 7d2e4b0f3a68
Revises: 6c1f3a9e2d57
Create Date: 2026-12-06 04:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "7d2e4b0f3a68"
down_revision: str | None = "6c1f3a9e2d57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


KINDS = (
    "verify_email",
    "signup_attempt",
    "password_reset",
    "reset_no_account",
    "password_changed",
    "account_locked",
    "second_factor_added",
    "second_factor_removed",
    "recovery_code_used",
    "sign_in_code",
)
NEW_KINDS = ("identity_link", "identity_linked")


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates the table: it must keep AUTOINCREMENT, so an outbox id is never handed out twice.
OUTBOX_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_identity_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity")),
        sa.UniqueConstraint("provider", "subject", name="uq_identity_provider_subject"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_identity_user_id"), "identity", ["user_id"])
    op.create_table(
        "oidc_flow",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("next_path", sa.String(length=512), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_oidc_flow_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_oidc_flow")),
    )
    op.create_index(op.f("ix_oidc_flow_user_id"), "oidc_flow", ["user_id"])
    op.create_index(op.f("ix_oidc_flow_expires_at"), "oidc_flow", ["expires_at"])
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, *NEW_KINDS), existing_nullable=False
        )
        batch_op.add_column(sa.Column("identity_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_email_outbox_identity_id_identity"), "identity", ["identity_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM email_outbox WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_email_outbox_identity_id_identity"), type_="foreignkey")
        batch_op.drop_column("identity_id")
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, *NEW_KINDS), type_=_kind(*KINDS), existing_nullable=False
        )
    op.drop_table("oidc_flow")
    op.drop_table("identity")
