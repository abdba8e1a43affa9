"""todo search by owner: the trigram index for q= leads with owner_id

Revision ID: 4b7e0c2d9a61
Revises: 8dd1d13c5b78
Create Date: 2026-12-07 15:40:00.000000+00:00

The trigram index on todo titles and descriptions covered every owner: a search for a common term
collected its matches in the whole table (50,000 for `milk` at 1M todos) before keeping the
owner's. With `owner_id` as its first column (btree_gin gives GIN an equality operator for it), the
index yields only the owner's matches. Where btree_gin or pg_trgm cannot be had, the migration
goes on without the index, as the one before it did: q= stays correct, reading the owner's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import context, op
from sqlalchemy.exc import DBAPIError

from keel.core.logging import get_logger

revision: str = "4b7e0c2d9a61"
down_revision: str | None = "8dd1d13c5b78"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = get_logger("keel.migrations")

TODO_SEARCH = "ix_todo_search"  # the name keel.migrations.OPTIONAL_INDEXES knows
BY_OWNER = f"CREATE INDEX {TODO_SEARCH} ON todo USING gin (owner_id, lower(title) gin_trgm_ops, lower(description) gin_trgm_ops)"
WHOLE_TABLE = (
    f"CREATE INDEX {TODO_SEARCH} ON todo USING gin (lower(title) gin_trgm_ops, lower(description) gin_trgm_ops)"
)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite keeps its LIKE over the owner's rows
    extensions = ("CREATE EXTENSION IF NOT EXISTS pg_trgm", "CREATE EXTENSION IF NOT EXISTS btree_gin")
    if context.is_offline_mode():
        for statement in (*extensions, f"DROP INDEX IF EXISTS {TODO_SEARCH}", BY_OWNER):
            op.execute(statement)
        return
    connection = op.get_bind()
    try:
        # In a savepoint: a refusal must not spoil the migration's transaction.
        with connection.begin_nested():
            for statement in extensions:
                connection.exec_driver_sql(statement)
    except DBAPIError as exc:
        log.warning(
            "todo_search_index_skipped",
            reason="CREATE EXTENSION pg_trgm or btree_gin was refused; q= on todos works without the index, reading more rows",
            error=str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__,
        )
        return  # a whole-table index from before, if any, still serves
    connection.exec_driver_sql(f"DROP INDEX IF EXISTS {TODO_SEARCH}")
    connection.exec_driver_sql(BY_OWNER)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # Back to the whole-table index, where there was an index at all (the extensions stay: something
    # else may use them, and dropping one needs the privileges that created it).
    if context.is_offline_mode():
        op.execute(f"DROP INDEX IF EXISTS {TODO_SEARCH}")
        op.execute(WHOLE_TABLE)
        return
    connection = op.get_bind()
    if connection.exec_driver_sql(f"SELECT 1 FROM pg_indexes WHERE indexname = '{TODO_SEARCH}'").first():
        connection.exec_driver_sql(f"DROP INDEX {TODO_SEARCH}")
        connection.exec_driver_sql(WHOLE_TABLE)
