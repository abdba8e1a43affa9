"""Small query helpers shared by the services."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: ColumnElement[Any], term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match in which `%` and `_` are literal characters."""
    return column.ilike(f"%{escape_like(term)}%", escape="\\")
