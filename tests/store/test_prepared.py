"""`Prepared` statements: the driver's executemany with SQLAlchemy's own
bind processors, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.dialects import sqlite

from pbx.store.bindings import BINDINGS, BindingRecord, BindingStore
from pbx.store.prepared import Prepared, PreparedCache

from .conftest import NOW

_MOVE = update(BINDINGS).where(BINDINGS.c.aor == bindparam("which")).values(expires_at=bindparam("until"))


def _binding(aor: str) -> BindingRecord:
    return BindingRecord(aor=aor, contact=f"<{aor};transport=udp>", expires_at=NOW + timedelta(hours=1),
                         call_id="c", cseq=1, q=None, transport="udp", source_host="127.0.0.1",
                         source_port=5060, connection_id=None, node="n1", user_agent=None,
                         instance_id=None, reg_id=None, updated_at=NOW)


def test_an_update_binds_through_the_column_types_and_counts_its_rows(migrated: Engine) -> None:
    store = BindingStore(migrated)
    for aor in ("sip:1001@pbx", "sip:1002@pbx"):
        store.upsert(_binding(aor))
    hanoi = timezone(timedelta(hours=7))
    later = datetime(2026, 12, 7, 16, 0, tzinfo=hanoi)
    with migrated.begin() as conn:
        (move,) = PreparedCache(lambda dialect: (Prepared.compile(_MOVE, ("which", "until"), dialect),)).get(conn.dialect)
        changed = move.run(conn, [{"which": "sip:1001@pbx", "until": later}, {"which": "sip:9999@pbx", "until": later}])
        assert move.run(conn, []) == 0
    if migrated.dialect.supports_sane_multi_rowcount:
        assert changed == 1
    by_aor = {record.aor: record for record in store.load_active(NOW)}
    # Read back as the same instant in UTC, whatever zone it was given in.
    assert by_aor["sip:1001@pbx"].expires_at == later and by_aor["sip:1001@pbx"].expires_at.tzinfo == UTC
    assert by_aor["sip:1002@pbx"].expires_at == NOW + timedelta(hours=1)
    with migrated.connect() as conn:
        assert conn.execute(select(BINDINGS.c.aor)).scalars().all().count("sip:1001@pbx") == 1


def test_parameters_must_be_the_statements_own() -> None:
    with pytest.raises(ValueError, match="binds"):
        Prepared.compile(_MOVE, ("which",), sqlite.dialect())


def test_fits_apply_to_values_that_are_not_none(migrated: Engine) -> None:
    BindingStore(migrated).upsert(_binding("sip:1001@pbx"))
    later = NOW + timedelta(hours=2)
    prepared = Prepared.compile(_MOVE, ("which", "until"), migrated.dialect, {"which": str.lower})
    with migrated.begin() as conn:
        prepared.run(conn, [{"which": "SIP:1001@PBX", "until": later}])
        prepared.run(conn, [{"which": None, "until": later}])  # a fit never sees None
    (record,) = BindingStore(migrated).load_active(NOW)
    assert record.expires_at == later
