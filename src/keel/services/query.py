"""Small query helpers shared by the services."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from keel.core.db import SQLITE_LOWER


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


def contains(column: SQLColumnExpression[Any], term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match in which `%` and `_` are literal characters."""
    return _lower(column).like(f"%{escape_like(term.lower())}%", escape="\\")


async def insert_ignoring_conflict(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> None:
    """INSERT that silently does nothing when the row's unique key already exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.exec(insert(model).values(**values).on_conflict_do_nothing())
