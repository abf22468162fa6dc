"""Statements the writer thread runs thousands of times: compiled once, run
with the driver's own executemany.

Through `Connection.execute`, every batch looks its statement up in the
compiled cache, builds each row's parameters and runs each value through
its type's processor one call at a time. For the CDR upserts that was two
thirds of the writer's Python time per call, more than SQLite's own work
(``bench/cdr_write_cost.py``); registrations under load pay the same per
refreshed binding. A `Prepared` statement does that work once: the SQL text
and the order of its parameters for the connection's driver, and the bind
processor of each parameter's type (the same SQLAlchemy would apply: UTC
instants to naive text on SQLite, enums to their values). A batch is then
one pass over its rows and one ``exec_driver_sql``.

Only for statements whose parameters are all given by every row (no
defaults computed by SQLAlchemy, no RETURNING): the writers' upserts,
updates and deletes by key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.expression import Executable

Fit = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """One statement compiled for one driver."""

    sql: str
    names: tuple[str, ...]
    """Every parameter, in the order the statement binds them."""
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(index in `names`, processor) for the parameters that have one."""
    fits: tuple[tuple[int, Fit], ...]
    """(index in `names`, function) applied before the processors to values
    that are not None: what the caller wants done to a value on its way in
    (the CDR writer fits text to its column)."""
    positional: bool

    @classmethod
    def compile(
        cls,
        statement: Executable,
        names: Sequence[str],
        dialect: Dialect,
        fits: Mapping[str, Fit] | None = None,
    ) -> Prepared:
        """`statement` for `dialect`, its parameters being exactly `names`
        (the columns of a VALUES-less insert, or the statement's bindparams)."""
        compiled = statement.compile(dialect=dialect, column_keys=list(names))  # type: ignore[attr-defined]
        order = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
        if sorted(order) != sorted(names):
            raise ValueError(f"the statement binds {sorted(order)}, not {sorted(names)}")
        processors = []
        for index, name in enumerate(order):
            process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((index, process))
        fitted = tuple((index, fits[name]) for index, name in enumerate(order) if fits and name in fits)
        return cls(compiled.string, order, tuple(processors), fitted, bool(compiled.positional))

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Execute once per row (each row names every parameter; the rows are
        not changed, so a retried batch starts again from the same values).
        The rows the driver reports changed: trust it only where the dialect
        says ``supports_sane_multi_rowcount``."""
        names, processors, fits = self.names, self.processors, self.fits
        params: list[Any] = []
        for row in rows:
            values = [row[name] for name in names]
            for index, fit in fits:
                value = values[index]
                if value is not None:
                    values[index] = fit(value)
            for index, process in processors:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            params.append(tuple(values) if self.positional else dict(zip(names, values)))
        if not params:
            return 0
        return conn.exec_driver_sql(self.sql, params).rowcount


class PreparedCache:
    """Statements prepared on first use, per driver (SQLite and PostgreSQL
    have different SQL text and parameter styles)."""

    def __init__(self, make: Callable[[Dialect], tuple[Prepared, ...]]) -> None:
        self._make = make
        self._prepared: dict[tuple[str, str], tuple[Prepared, ...]] = {}

    def get(self, dialect: Dialect) -> tuple[Prepared, ...]:
        key = (dialect.name, dialect.driver)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._make(dialect)
        return prepared
