"""todos posts and votes

Revision ID: cb3972fd9233
Revises: 084095a7208a
Create Date: 2026-11-22 00:45:47.907820+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import keel.models.base

revision: str = "cb3972fd9233"
down_revision: str | None = "084095a7208a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "post",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("published_at", keel.models.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["user.id"], name=op.f("fk_post_author_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.create_index(
            "ix_post_author_feed",
            ["author_id", "published_at", "id"],
            unique=False,
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        )
        batch_op.create_index("ix_post_author_id_created_at", ["author_id", "created_at", "id"], unique=False)
        batch_op.create_index(
            "ix_post_feed",
            ["published_at", "id"],
            unique=False,
            postgresql_where=sa.text("published"),
            sqlite_where=sa.text("published = 1"),
        )

    op.create_table(
        "todo",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=5000), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("created_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"], name=op.f("fk_todo_owner_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_todo")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("todo", schema=None) as batch_op:
        batch_op.create_index("ix_todo_owner_id_created_at", ["owner_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_todo_owner_id_due_date", ["owner_id", "due_date", "id"], unique=False)
        batch_op.create_index("ix_todo_owner_id_priority", ["owner_id", "priority", "id"], unique=False)

    op.create_table(
        "vote",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("created_at", keel.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_vote_post_id_post"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_vote_user_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "post_id", name=op.f("pk_vote")),
    )
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vote_post_id"), ["post_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vote_post_id"))

    op.drop_table("vote")
    with op.batch_alter_table("todo", schema=None) as batch_op:
        batch_op.drop_index("ix_todo_owner_id_priority")
        batch_op.drop_index("ix_todo_owner_id_due_date")
        batch_op.drop_index("ix_todo_owner_id_created_at")

    op.drop_table("todo")
    with op.batch_alter_table("post", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_post_feed", postgresql_where=sa.text("published"), sqlite_where=sa.text("published = 1")
        )
        batch_op.drop_index("ix_post_author_id_created_at")
        batch_op.drop_index(
            "ix_post_author_feed", postgresql_where=sa.text("published"), sqlite_where=sa.text("published = 1")
        )

    op.drop_table("post")
