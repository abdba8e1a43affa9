"""post tags and the top feed: tags on posts, a post_tag index table, a kept vote count

Revision ID: 6b1e9d4f2a83
Revises: 4d7a2c9e1f60
Create Date: 2026-12-06 23:20:00.000000+00:00

`votes_count` starts as the count of each post's vote rows; from then on every vote and unvote
keeps it in its own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from keel.models.base import UTCDateTime

revision: str = "6b1e9d4f2a83"
down_revision: str | None = "4d7a2c9e1f60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUBLISHED: dict[str, Any] = {"postgresql_where": sa.text("published"), "sqlite_where": sa.text("published = 1")}


def upgrade() -> None:
    op.add_column("post", sa.Column("tags", sa.Text(), server_default="", nullable=False))
    op.add_column("post", sa.Column("votes_count", sa.Integer(), server_default="0", nullable=False))
    op.execute("UPDATE post SET votes_count = (SELECT count(*) FROM vote WHERE vote.post_id = post.id)")
    op.create_index("ix_post_top", "post", ["votes_count", "published_at", "id"], **PUBLISHED)
    op.create_table(
        "post_tag",
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=30), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("published_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("votes_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["post_id"], ["post.id"], name=op.f("fk_post_tag_post_id_post"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("post_id", "tag", name=op.f("pk_post_tag")),
    )
    op.create_index("ix_post_tag_feed", "post_tag", ["tag", "published_at", "post_id"], **PUBLISHED)
    op.create_index("ix_post_tag_top", "post_tag", ["tag", "votes_count", "published_at", "post_id"], **PUBLISHED)


def downgrade() -> None:
    op.drop_index("ix_post_tag_top", table_name="post_tag")
    op.drop_index("ix_post_tag_feed", table_name="post_tag")
    op.drop_table("post_tag")
    op.drop_index("ix_post_top", table_name="post")
    with op.batch_alter_table("post", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("votes_count")
        batch_op.drop_column("tags")
