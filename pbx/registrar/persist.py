"""Write-behind of registration bindings: coalesce in memory, write in bulk.

A phone that refreshes every minute changes only its row's expiry; a load
test re-registers the same contacts thousands of times a second. Writing
each change as its own statement would cost more Python time in the writer
thread than the whole SIP handling (and the thread competes for the GIL with
the event loop). So changes are collected per (aor, contact), last one
wins, and each ``flush`` hands them all to the writer as one op of a few
``executemany`` statements. The price: a binding made less than one flush
interval before a crash may be lost; the phone re-registers anyway.

A refresh (§10.2.4: same AOR and contact, from the same place) changes only
expiry, Call-ID, CSeq and the update time, so it is written as an UPDATE of
those columns: a third of the per-row work of the full upsert. That needs the
row to exist; when an UPDATE finds fewer rows than it was given (an earlier
write was lost, or the row was swept), those records are upserted whole.

Other nodes sharing the database hear of every flush in its transaction
(``pbx.store.change_events``: LISTEN/NOTIFY on PostgreSQL): refreshes too,
since each node keeps each binding's expiry in memory.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from sqlalchemy import Connection, bindparam, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect

from pbx.store.change_events import announce
from pbx.store.bindings import BINDINGS, BindingRecord
from pbx.store.prepared import Prepared, PreparedCache
from pbx.store.writer import BackgroundWriter

_KEY: Final = ("aor", "contact")
_FIELDS: Final = tuple(f.name for f in fields(BindingRecord))
# Columns a refresh may change; any other difference is a new row's worth.
_REFRESHED: Final = frozenset({"expires_at", "call_id", "cseq", "updated_at"})
_IDENTITY: Final = tuple(name for name in _FIELDS if name not in _REFRESHED)
# How many written rows are remembered to recognise refreshes. Past it the
# memory is emptied: the next write of each binding is a full upsert again.
MAX_REMEMBERED: Final = 500_000


def _identity(record: BindingRecord) -> tuple[object, ...]:
    return tuple(getattr(record, name) for name in _IDENTITY)


def _row(record: BindingRecord) -> dict[str, Any]:
    """Column name to value (as ``BindingRecord.values``, without re-reading
    the dataclass fields on every call)."""
    return {name: getattr(record, name) for name in _FIELDS}


def _refresh_row(record: BindingRecord) -> dict[str, Any]:
    return {
        "r_aor": record.aor,
        "r_contact": record.contact,
        "expires_at": record.expires_at,
        "call_id": record.call_id,
        "cseq": record.cseq,
        "updated_at": record.updated_at,
    }


class BindingWriteBehind:
    def __init__(self, writer: BackgroundWriter, node: str = "") -> None:
        self._writer = writer
        self._node = node
        self._pending: dict[tuple[str, str], BindingRecord | None] = {}
        # (aor, contact) -> identity of the row last handed to the writer.
        self._written: dict[tuple[str, str], tuple[object, ...]] = {}

    def upsert(self, record: BindingRecord) -> None:
        self._pending[(record.aor, record.contact)] = record

    def delete(self, aor: str, contact: str) -> None:
        self._pending[(aor, contact)] = None

    def __len__(self) -> int:
        return len(self._pending)

    def pending_aors(self) -> set[str]:
        """The AORs with a change made here not yet handed to the writer
        (the store does not have it yet: it must not be read back)."""
        return {aor for aor, _ in self._pending}

    def flush(self) -> None:
        """Hand everything pending to the writer as one op."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        written = self._written
        if len(written) + len(pending) > MAX_REMEMBERED:
            written.clear()
        upserts: list[BindingRecord] = []
        refreshes: list[BindingRecord] = []
        deletes: list[dict[str, str]] = []
        for key, record in pending.items():
            if record is None:
                deletes.append({"d_aor": key[0], "d_contact": key[1]})
                written.pop(key, None)
                continue
            identity = _identity(record)
            if written.get(key) == identity:
                refreshes.append(record)
            else:
                upserts.append(record)
                written[key] = identity

        node, aors = self._node, {key[0] for key in pending}

        # The rows are built in the writer thread: the event loop only sorts.
        def write(conn: Connection) -> None:
            refresh, upsert, delete_ = _PREPARED.get(conn.dialect)
            whole = upserts
            if refreshes:
                changed = refresh.run(conn, [_refresh_row(r) for r in refreshes])
                if not conn.dialect.supports_sane_multi_rowcount or changed != len(refreshes):
                    whole = upserts + refreshes  # some rows were missing: write them whole
            if whole:
                upsert.run(conn, [_row(r) for r in whole])
            if deletes:
                delete_.run(conn, deletes)
            announce(conn, node, "bindings", aors)

        self._writer.submit(write)


_REFRESH = (
    update(BINDINGS)
    .where(BINDINGS.c.aor == bindparam("r_aor"), BINDINGS.c.contact == bindparam("r_contact"))
    .values(
        expires_at=bindparam("expires_at"),
        call_id=bindparam("call_id"),
        cseq=bindparam("cseq"),
        updated_at=bindparam("updated_at"),
    )
)
_DELETE = delete(BINDINGS).where(
    BINDINGS.c.aor == bindparam("d_aor"), BINDINGS.c.contact == bindparam("d_contact")
)
_UPSERTED: Final = tuple(c.name for c in BINDINGS.columns if c.name != "id")


def _upsert_statement(dialect: str) -> Any:
    """INSERT … ON CONFLICT (aor, contact) DO UPDATE, without VALUES: each
    row gives every column."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    insert = module.insert(BINDINGS)
    return insert.on_conflict_do_update(
        index_elements=list(_KEY), set_={name: insert.excluded[name] for name in _UPSERTED if name not in _KEY}
    )


def _prepare(dialect: Dialect) -> tuple[Prepared, ...]:
    return (
        Prepared.compile(_REFRESH, ("r_aor", "r_contact", *sorted(_REFRESHED)), dialect),
        Prepared.compile(_upsert_statement(dialect.name), _UPSERTED, dialect),
        Prepared.compile(_DELETE, ("d_aor", "d_contact"), dialect),
    )


# Run with the driver's executemany (`pbx.store.prepared`): under a load of
# registrations the writer thread's per-row SQLAlchemy work was its largest.
_PREPARED: Final = PreparedCache(_prepare)
