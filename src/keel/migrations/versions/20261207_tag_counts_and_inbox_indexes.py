"""tag counts and inbox indexes: kept counts for GET /tags and the feed's total, partial inbox indexes

Revision ID: 8dd1d13c5b78
Revises: 2e8c4a6f1d97
Create Date: 2026-12-07 06:30:00.000000+00:00

`tag.published_posts` and the `published_posts` counter start as the counts of today's rows; from
then on every write that publishes, unpublishes, retags or deletes a post keeps them in its own
transaction (keel.services.tag). The owner's todo indexes become partial on the inbox
(`list_id IS NULL`), and on PostgreSQL a trigram index serves `q=` where pg_trgm can be had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.exc import DBAPIError

from keel.core.logging import get_logger

revision: str = "8dd1d13c5b78"
down_revision: str | None = "2e8c4a6f1d97"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = get_logger("keel.migrations")

INBOX: dict[str, Any] = {"postgresql_where": sa.text("list_id IS NULL"), "sqlite_where": sa.text("list_id IS NULL")}
# Not in the models: it exists only where the extension could be created (see keel.migrations.OPTIONAL_INDEXES).
TODO_SEARCH = "ix_todo_search"

_post = sa.table("post", sa.column("published", sa.Boolean()))
_post_tag = sa.table("post_tag", sa.column("tag", sa.String()), sa.column("published", sa.Boolean()))
_tag = sa.table("tag", sa.column("name", sa.String()), sa.column("published_posts", sa.Integer()))
_counter = sa.table("counter", sa.column("name", sa.String()), sa.column("value", sa.Integer()))


def upgrade() -> None:
    op.create_table(
        "tag",
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("published_posts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tag")),
    )
    op.create_index(
        "ix_tag_in_use",
        "tag",
        [sa.column("published_posts").desc(), "name"],
        postgresql_where=sa.text("published_posts > 0"),
        sqlite_where=sa.text("published_posts > 0"),
    )
    op.create_table(
        "counter",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counter")),
    )
    # The counts as GET /tags and the feed computed them until now: from post_tag and post themselves.
    op.execute(
        _tag.insert().from_select(
            ["name", "published_posts"],
            sa.select(_post_tag.c.tag, sa.func.count())
            .where(_post_tag.c.published == sa.true())
            .group_by(_post_tag.c.tag),
        )
    )
    op.execute(
        _counter.insert().from_select(
            ["name", "value"],
            sa.select(sa.literal("published_posts"), sa.func.count())
            .select_from(_post)
            .where(_post.c.published == sa.true()),
        )
    )

    op.drop_index("ix_todo_owner_id_created_at", table_name="todo")
    op.drop_index("ix_todo_owner_id_due_date", table_name="todo")
    op.drop_index("ix_todo_owner_id_priority", table_name="todo")
    op.create_index(
        "ix_todo_inbox_created_at",
        "todo",
        ["owner_id", "created_at", "id"],
        postgresql_include=["completed", "labels"],
        **INBOX,
    )
    op.create_index("ix_todo_inbox_due_date", "todo", ["owner_id", "due_date", "id"], **INBOX)
    op.create_index("ix_todo_inbox_priority", "todo", ["owner_id", "priority", "id"], **INBOX)
    op.create_index("ix_todo_owner_id", "todo", ["owner_id"])
    _create_todo_search()


def _create_todo_search() -> None:
    """`q=` matches `lower(title)` and `lower(description)` with LIKE '%term%': a trigram index can serve that.

    pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+: a role with CREATE on
    the database may add it), but a managed or locked-down server may still refuse. Then the
    migration goes on without the index: `q=` stays correct, reading the owner's inbox entries.
    """
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite keeps its LIKE over the owner's rows
    create_extension = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
    create_index = (
        f"CREATE INDEX {TODO_SEARCH} ON todo USING gin (lower(title) gin_trgm_ops, lower(description) gin_trgm_ops)"
    )
    if context.is_offline_mode():
        op.execute(create_extension)
        op.execute(create_index)
        return
    connection = op.get_bind()
    try:
        # In a savepoint: a refusal must not spoil the migration's transaction.
        with connection.begin_nested():
            connection.exec_driver_sql(create_extension)
    except DBAPIError as exc:
        log.warning(
            "todo_search_index_skipped",
            reason="CREATE EXTENSION pg_trgm was refused; q= on todos works without the index, reading more rows",
            error=str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__,
        )
        return
    connection.exec_driver_sql(create_index)


def downgrade() -> None:
    # The extension stays: something else may use it, and dropping it needs the privileges it took.
    op.execute(f"DROP INDEX IF EXISTS {TODO_SEARCH}")
    op.drop_index("ix_todo_owner_id", table_name="todo")
    op.drop_index("ix_todo_inbox_priority", table_name="todo")
    op.drop_index("ix_todo_inbox_due_date", table_name="todo")
    op.drop_index("ix_todo_inbox_created_at", table_name="todo")
    op.create_index("ix_todo_owner_id_priority", "todo", ["owner_id", "priority", "id"])
    op.create_index("ix_todo_owner_id_due_date", "todo", ["owner_id", "due_date", "id"])
    op.create_index("ix_todo_owner_id_created_at", "todo", ["owner_id", "created_at", "id"])
    op.drop_table("counter")
    op.drop_index("ix_tag_in_use", table_name="tag")
    op.drop_table("tag")
