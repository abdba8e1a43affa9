"""account locked email: the notice sent when wrong passwords lock an account

Revision ID: 3f6d2b9c81a4
Revises: 054f909c0452
Create Date: 2026-12-05 17:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f6d2b9c81a4"
down_revision: str | None = "054f909c0452"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("verify_email", "signup_attempt", "password_reset", "reset_no_account", "password_changed")


def _kind(*values: str) -> sa.Enum:
    # The kinds live in the column's CHECK constraint; Alembic replaces it when given both types in full.
    return sa.Enum(*values, name="email_kind", native_enum=False, create_constraint=True, length=24)


# SQLite recreates the table: it must keep AUTOINCREMENT, so an outbox id is never handed out twice.
TABLE_KWARGS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("email_outbox", schema=None, table_kwargs=TABLE_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS), type_=_kind(*KINDS, "account_locked"), existing_nullable=False
        )


def downgrade() -> None:
    op.execute("DELETE FROM email_outbox WHERE kind = 'account_locked'")
    with op.batch_alter_table("email_outbox", schema=None, table_kwargs=TABLE_KWARGS) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=_kind(*KINDS, "account_locked"), type_=_kind(*KINDS), existing_nullable=False
        )
