"""email sign-in codes: the table, and the `sign_in_code` email kind

Revision ID: 6c1f3a9e2d57
Revises: 5b8e2f71c0d4
Create Date: 2026-12-06 03:50:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "6c1f3a9e2d57"
down_revision: str | None = "5b8e2f71c0d4"
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
)
NEW_KINDS = ("sign_in_code",)


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates the table: it must keep AUTOINCREMENT, so an outbox id is never handed out twice.
OUTBOX_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, *NEW_KINDS), existing_nullable=False
        )
    op.create_table(
        "email_sign_in_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_email_sign_in_code_user_id_user"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_sign_in_code")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_email_sign_in_code_user_id"), "email_sign_in_code", ["user_id"])


def downgrade() -> None:
    op.drop_table("email_sign_in_code")
    op.execute(
        sa.text("DELETE FROM email_outbox WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, *NEW_KINDS), type_=_kind(*KINDS), existing_nullable=False
        )
