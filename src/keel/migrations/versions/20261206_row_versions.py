"""row versions: a counter on todos, posts and users that every ORM write checks and raises

Revision ID: 7c1e5a0d2b39
Revises: 3f6d2b9c81a4
Create Date: 2026-12-06 00:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e5a0d2b39"
down_revision: str | None = "3f6d2b9c81a4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("todo", "post", "user")


def upgrade() -> None:
    # ADD COLUMN with a constant default: no table rewrite on PostgreSQL, none on SQLite either.
    for table in TABLES:
        op.add_column(table, sa.Column("version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
            batch_op.drop_column("version")
