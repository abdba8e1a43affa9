"""rendered posts: each post's Markdown kept beside its sanitised HTML, excerpt and reading time

Revision ID: 4d7a2c9e1f60
Revises: 8a3c5e7f9b12
Create Date: 2026-12-06 23:00:00.000000+00:00

Existing posts are rendered here, with the same module the service uses, a batch at a time so a
large table is never held in memory at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from keel.core.markdown import render

revision: str = "4d7a2c9e1f60"
down_revision: str | None = "8a3c5e7f9b12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500

_post = sa.table(
    "post",
    sa.column("id", sa.Integer),
    sa.column("content", sa.Text),
    sa.column("content_html", sa.Text),
    sa.column("excerpt", sa.String),
    sa.column("reading_minutes", sa.Integer),
    sa.column("render_version", sa.Integer),
)


def render_existing(connection: sa.Connection) -> None:
    after = 0
    while True:
        rows = connection.execute(
            sa.select(_post.c.id, _post.c.content).where(_post.c.id > after).order_by(_post.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        for post_id, content in rows:
            made = render(content)
            connection.execute(
                _post.update()
                .where(_post.c.id == post_id)
                .values(
                    content_html=made.content_html,
                    excerpt=made.excerpt,
                    reading_minutes=made.reading_minutes,
                    render_version=made.render_version,
                )
            )
        after = rows[-1][0]


def upgrade() -> None:
    # Constant defaults: no table rewrite on PostgreSQL, none on SQLite either.
    op.add_column("post", sa.Column("content_html", sa.Text(), server_default="", nullable=False))
    op.add_column("post", sa.Column("excerpt", sa.String(length=300), server_default="", nullable=False))
    op.add_column("post", sa.Column("reading_minutes", sa.Integer(), server_default="1", nullable=False))
    op.add_column("post", sa.Column("render_version", sa.Integer(), server_default="0", nullable=False))
    render_existing(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("post", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        for column in ("render_version", "reading_minutes", "excerpt", "content_html"):
            batch_op.drop_column(column)
