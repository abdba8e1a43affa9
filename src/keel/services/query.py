"""Small query helpers shared by the services."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: SQLColumnExpression[Any], term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match in which `%` and `_` are literal characters."""
    return column.ilike(f"%{escape_like(term)}%", escape="\\")


async def insert_ignoring_conflict(session: AsyncSession, model: type[SQLModel], values: dict[str, Any]) -> None:
    """INSERT that silently does nothing when the row's unique key already exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.exec(insert(model).values(**values).on_conflict_do_nothing())
