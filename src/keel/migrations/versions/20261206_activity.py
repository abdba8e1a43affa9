"""activity: the account's security activity, the devices it signed in from, and the new-device mail

Revision ID: 8a3c5e7f9b12
Revises: 9b3f6d2a7c15
Create Date: 2026-12-06 20:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "8a3c5e7f9b12"
down_revision: str | None = "9b3f6d2a7c15"
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
    "identity_link",
    "identity_linked",
    "identity_unlinked",
    "list_invitation",
)
NEW_KINDS = ("new_device",)


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates the table: it must keep AUTOINCREMENT, so an outbox id is never handed out twice.
OUTBOX_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_activity_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_activity_user_id_created_at", "activity", ["user_id", "created_at"])
    op.create_index(op.f("ix_activity_created_at"), "activity", ["created_at"])
    op.create_table(
        "known_device",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_known_device_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "device_hash", name=op.f("pk_known_device")),
    )
    op.create_index(op.f("ix_known_device_last_seen_at"), "known_device", ["last_seen_at"])
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, *NEW_KINDS), existing_nullable=False
        )
        batch_op.add_column(sa.Column("activity_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_email_outbox_activity_id_activity"), "activity", ["activity_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM email_outbox WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_email_outbox_activity_id_activity"), type_="foreignkey")
        batch_op.drop_column("activity_id")
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, *NEW_KINDS), type_=_kind(*KINDS), existing_nullable=False
        )
    op.drop_table("known_device")
    op.drop_table("activity")
