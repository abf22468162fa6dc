"""Write-behind of registration bindings: coalesce in memory, write in bulk.

A phone that refreshes every minute changes only its row's expiry; a load
test re-registers the same contacts thousands of times a second. Writing
each change as its own statement would cost more Python time in the writer
thread than the whole SIP handling (and the thread competes for the GIL with
the event loop). So changes are collected per (aor, contact), last one
wins, and every ``interval`` seconds one writer op writes them all with two
``executemany`` statements. The price: a binding made less than
``interval`` before a crash may be lost; the phone re-registers anyway.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, bindparam, delete
from sqlalchemy.dialects import postgresql, sqlite

from pbx.store.bindings import BINDINGS, BindingRecord
from pbx.store.writer import BackgroundWriter

_KEY: Final = ("aor", "contact")


class BindingWriteBehind:
    def __init__(self, writer: BackgroundWriter) -> None:
        self._writer = writer
        self._pending: dict[tuple[str, str], BindingRecord | None] = {}

    def upsert(self, record: BindingRecord) -> None:
        self._pending[(record.aor, record.contact)] = record

    def delete(self, aor: str, contact: str) -> None:
        self._pending[(aor, contact)] = None

    def __len__(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Hand everything pending to the writer as one op."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        upserts = [r.values() for r in pending.values() if r is not None]
        deletes = [{"d_aor": aor, "d_contact": contact} for (aor, contact), r in pending.items() if r is None]

        def write(conn: Connection) -> None:
            if upserts:
                conn.execute(_upsert_statement(conn.dialect.name), upserts)
            if deletes:
                conn.execute(_DELETE, deletes)

        self._writer.submit(write)


_DELETE = delete(BINDINGS).where(
    BINDINGS.c.aor == bindparam("d_aor"), BINDINGS.c.contact == bindparam("d_contact")
)
_statements: dict[str, Any] = {}


def _upsert_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT (aor, contact) DO UPDATE, built once per dialect."""
    statement = _statements.get(dialect)
    if statement is None:
        module: Any = postgresql if dialect == "postgresql" else sqlite
        insert = module.insert(BINDINGS)
        columns = [c.name for c in BINDINGS.columns if c.name not in _KEY and c.name != "id"]
        statement = insert.on_conflict_do_update(
            index_elements=list(_KEY), set_={name: insert.excluded[name] for name in columns}
        )
        _statements[dialect] = statement
    return statement
