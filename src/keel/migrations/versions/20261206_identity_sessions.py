"""identity sessions: a provider sign-in's session (and its pending second step) names the identity
it came through, so unlinking that identity ends it; and the `identity_unlinked` email kind

Revision ID: 8e3f5c1a7b92
Revises: 8a3c5e1f9b27
Create Date: 2026-12-06 20:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e3f5c1a7b92"
down_revision: str | None = "8a3c5e1f9b27"
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
)
NEW_KINDS = ("identity_unlinked",)


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates the table: it must keep AUTOINCREMENT, so an outbox id is never handed out twice.
OUTBOX_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("user_session") as batch_op:
        batch_op.add_column(sa.Column("identity_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_user_session_identity_id_identity"), "identity", ["identity_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index(batch_op.f("ix_user_session_identity_id"), ["identity_id"])
    with op.batch_alter_table("pending_sign_in") as batch_op:
        batch_op.add_column(sa.Column("identity_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_pending_sign_in_identity_id_identity"),
            "identity",
            ["identity_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, *NEW_KINDS), existing_nullable=False
        )


def downgrade() -> None:
    op.execute(
        sa.text("DELETE FROM email_outbox WHERE kind IN :kinds").bindparams(
            sa.bindparam("kinds", NEW_KINDS, expanding=True)
        )
    )
    with op.batch_alter_table("email_outbox", table_kwargs=OUTBOX_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, *NEW_KINDS), type_=_kind(*KINDS), existing_nullable=False
        )
    with op.batch_alter_table("pending_sign_in") as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_pending_sign_in_identity_id_identity"), type_="foreignkey")
        batch_op.drop_column("identity_id")
    with op.batch_alter_table("user_session") as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_session_identity_id"))
        batch_op.drop_constraint(batch_op.f("fk_user_session_identity_id_identity"), type_="foreignkey")
        batch_op.drop_column("identity_id")
