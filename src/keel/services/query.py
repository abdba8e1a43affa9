"""Small query helpers shared by the services."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, Select, SQLColumnExpression, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import SQLITE_LOWER, Database, Prebuilt


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _lower(FunctionElement[str]):
    """lower() that folds every letter, not only ASCII, on each backend."""

    type = String()
    inherit_cache = True


@compiles(_lower)
def _lower_default(element: _lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(_lower, "sqlite")
def _lower_sqlite(element: _lower, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_LOWER}({compiler.process(element.clauses, **kw)})"


def like_pattern(term: str) -> str:
    """The LIKE pattern `contains` needs for a search term."""
    return f"%{escape_like(term.lower())}%"


def contains(column: SQLColumnExpression[Any], term: str | BindParameter[str]) -> ColumnElement[bool]:
    """Case-insensitive substring match in which `%` and `_` are literal characters.

    Give a term, or a bound parameter that will carry its ``like_pattern``.
    """
    return _lower(column).like(like_pattern(term) if isinstance(term, str) else term, escape="\\")


async def insert_ignoring_conflict(
    session: AsyncSession,
    model: type[SQLModel],
    values: dict[str, Any],
    *,
    returning: SQLColumnExpression[Any] | None = None,
) -> list[Any]:
    """INSERT that silently does nothing when the row's unique key already exists.

    With `returning`, that column of the row it added: empty when there was one already.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values).on_conflict_do_nothing()
    if returning is None:
        await session.exec(statement)
        return []
    return list((await session.exec(statement.returning(returning))).scalars())


TOTAL = "total"


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A page of rows and the total it is part of, in one round trip and from one snapshot.

    The count rides along as an uncorrelated scalar subquery, which both databases evaluate once.
    Only a page past the end (no rows, offset > 0) needs the count on its own. Build one per
    shape of query (a service keeps the few it has), with bound parameters for the values: a
    request then only binds values to statements compiled once.
    """

    page: Prebuilt[tuple[Any, ...]]
    count: Prebuilt[tuple[Any, ...]]
    # The page's column names, in order; the total is the last column of every row.
    columns: tuple[str, ...]

    @classmethod
    def of(cls, page: Select[Any], count: Select[Any], *, plan_with_values: bool = False) -> PageQuery:
        """`plan_with_values`: see `Prebuilt` (for a search whose best index depends on the term)."""
        # correlate(None): the count never depends on the row it rides along with.
        page = page.add_columns(count.scalar_subquery().correlate(None).label(TOTAL))
        columns = tuple(str(column.key) for column in page.selected_columns)
        return cls(
            Prebuilt(page, tuple, plan_with_values=plan_with_values),
            Prebuilt(count, tuple, plan_with_values=plan_with_values),
            columns,
        )

    async def fetch(self, database: Database, params: dict[str, Any]) -> tuple[Sequence[Sequence[Any]], int]:
        """The page's rows (values in `columns` order) and the total."""
        rows = await database.rows(self.page, **params)
        if rows:
            total: int = rows[0][-1]
            return rows, total
        if not params.get("offset"):
            return rows, 0
        counted = await database.first(self.count, **params)
        return rows, int(counted[0]) if counted else 0
