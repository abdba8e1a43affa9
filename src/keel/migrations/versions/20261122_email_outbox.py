"""email outbox

Revision ID: 75e098183503
Revises: cb3972fd9233
Create Date: 2026-11-22 01:16:15.834441+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import keel.models.base

revision: str = "75e098183503"
down_revision: str | None = "cb3972fd9233"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "email_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "verify_email",
                "signup_attempt",
                "password_reset",
                "reset_no_account",
                "password_changed",
                name="email_kind",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("to_address", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                name="outbox_status",
                native_enum=False,
                create_constraint=True,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("created_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", keel.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", keel.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_email_outbox_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_outbox")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_email_outbox_status_next_attempt_at", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_email_outbox_to_address_created_at", ["to_address", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("email_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_email_outbox_to_address_created_at")
        batch_op.drop_index("ix_email_outbox_status_next_attempt_at")

    op.drop_table("email_outbox")
