"""username reservations: usernames asked for by registrations of addresses that have an account

Revision ID: 054f909c0452
Revises: 883b05e4ba4b
Create Date: 2026-12-05 16:18:19.483178+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import keel.models.base

revision: str = "054f909c0452"
down_revision: str | None = "883b05e4ba4b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "username_reservation",
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_username_reservation_user_id_user"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_username_reservation")),
    )
    with op.batch_alter_table("username_reservation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_username_reservation_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("username_reservation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_username_reservation_user_id"))

    op.drop_table("username_reservation")
