"""Prebuilt statements: built once at import, with the shape of their rows, compiled once per dialect.

A hot path (a sign-in, a refresh, a page of todos) binds values to a statement it did not have to
build, and gets back rows with named fields. On asyncpg the compiled plan runs on the driver
itself (see `keel.core.db.Database`); the plan lives on the statement that owns it, so nothing is
cached by identity and a statement built per request would simply be compiled per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

import asyncpg
from sqlalchemy import Dialect
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler

Convert = Callable[[Any], Any]
_REQUIRED = object()


class NoRows(NamedTuple):
    """The row type of a statement that returns none (an UPDATE without RETURNING)."""


RowT = TypeVar("RowT", bound=tuple[Any, ...])


class Prebuilt(Generic[RowT]):
    """A statement with bound parameters and the NamedTuple its rows come back as.

    `binds` names the columns an INSERT built without `.values()` is given: such a statement
    compiles to exactly the columns it binds, so they are part of what is prebuilt. A SELECT is
    a read (`is_read`): on a connection that turns out to have died, it is safe to run again. Say
    `read=False` for a SELECT that changes something (a sequence, a function with side effects).

    `plan_with_values`: PostgreSQL plans the statement with each call's values, never with a generic
    plan. A prepared statement gets a generic plan after five calls, and a generic plan cannot see
    a value: for a trigram search it cannot tell that the pattern makes the search index the right
    one, and reads every row of the owner instead (14 ms at 10,000 todos against 3 ms). It costs
    a planning (a fraction of a millisecond) on every call, so only statements like that say so.
    """

    __slots__ = ("_make", "_plans", "binds", "is_read", "plan_with_values", "row", "statement")

    def __init__(
        self,
        statement: Executable,
        row: type[RowT],
        *,
        binds: Sequence[str] = (),
        read: bool | None = None,
        plan_with_values: bool = False,
    ) -> None:
        self.statement = statement
        self.row = row
        self.binds = tuple(sorted(binds))
        self.is_read = bool(getattr(statement, "is_select", False)) if read is None else read
        self.plan_with_values = plan_with_values
        # A plain tuple row needs no shaping: the plan's values already are tuples.
        self._make: Callable[[Sequence[Any]], RowT] | None = None if row is tuple else getattr(row, "_make", row)
        self._plans: dict[str, Plan] = {}

    def plan(self, dialect: Dialect) -> Plan:
        """Its SQL and conversions for asyncpg, compiled the first time a dialect asks."""
        plan = self._plans.get(dialect.name)
        if plan is None:
            plan = self._plans[dialect.name] = Plan.compile(self.statement, dialect, self.binds)
        return plan

    def shape(self, values: tuple[Any, ...]) -> RowT:
        return cast(RowT, values) if self._make is None else self._make(values)

    def __repr__(self) -> str:
        return f"Prebuilt({self.row.__name__}: {self.statement})"


@dataclass(frozen=True, slots=True)
class Plan:
    """A statement compiled for asyncpg: its SQL, its values in `$n` order, its conversions.

    The conversions are the ones SQLAlchemy itself would apply (the column types' bind and result
    processors, so `PriorityRank` and `UTCDateTime` behave exactly as through the ORM).
    """

    sql: str
    names: tuple[str, ...]
    # The value a literal in the statement carries (`func.f(1)`, `.limit(20)`), else _REQUIRED
    defaults: tuple[Any, ...]
    binds: tuple[Convert | None, ...]
    # (column position, conversion) for only the result columns that have one
    results: tuple[tuple[int, Convert], ...]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> Plan:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        assert isinstance(compiled, SQLCompiler)
        assert compiled.positiontup is not None
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("statements with expanding (IN) parameters are not prebuilt")
        # SQLAlchemy runs a column's Python-side default in its execution context, which the driver
        # path does not have: the column would silently get NULL. Such a column must be bound.
        unbound = sorted(column.key for column in compiled.insert_prefetch if column.key not in keys)
        if unbound:
            raise ValueError(f"a prebuilt INSERT must bind the columns with Python-side defaults: {unbound}")
        names = tuple(compiled.positiontup)
        parameters = [compiled.binds[name] for name in names]
        defaults = tuple(_REQUIRED if bind.required else bind.effective_value for bind in parameters)
        binds = tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in parameters)
        columns = statement.exported_columns if hasattr(statement, "exported_columns") else ()
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        results = tuple((index, convert) for index, convert in enumerate(processors) if convert is not None)
        return cls(str(compiled), names, defaults, binds, results)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = [params.get(name, default) for name, default in zip(self.names, self.defaults, strict=True)]
        for name, value in zip(self.names, values, strict=True):
            if value is _REQUIRED:
                raise InvalidRequestError(f"A value is required for bind parameter {name!r}")
        return [value if bind is None else bind(value) for bind, value in zip(self.binds, values, strict=True)]

    def values(self, records: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
        if not self.results:
            return [tuple(record) for record in records]
        rows = []
        for record in records:
            row = list(record)
            for index, convert in self.results:
                row[index] = convert(row[index])
            rows.append(tuple(row))
        return rows
