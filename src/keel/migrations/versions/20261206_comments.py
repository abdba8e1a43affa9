"""comments: comments on posts with one level of replies, and each post's kept comment count

Revision ID: 2e8c4a6f1d97
Revises: 6b1e9d4f2a83
Create Date: 2026-12-06 23:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "2e8c4a6f1d97"
down_revision: str | None = "6b1e9d4f2a83"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("post", sa.Column("comments_count", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "comment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.Column("render_version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["user.id"], name=op.f("fk_comment_author_id_user"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["comment.id"], name=op.f("fk_comment_parent_id_comment"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_comment_post_id_post"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comment")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_comment_post_id_created_at", "comment", ["post_id", "created_at", "id"])
    op.create_index(op.f("ix_comment_author_id"), "comment", ["author_id"])
    op.create_index(op.f("ix_comment_parent_id"), "comment", ["parent_id"])


def downgrade() -> None:
    op.drop_table("comment")
    with op.batch_alter_table("post", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("comments_count")
