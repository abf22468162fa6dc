"""Write-behind of bindings through the real writer thread, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pbx.registrar.persist import BindingWriteBehind
from pbx.store.bindings import BindingRecord, BindingStore
from pbx.store.db import make_engine, migrate
from pbx.store.writer import BackgroundWriter
from tests.postgres import postgres_schema

NOW = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a fresh SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'pbx.sqlite3'}")
        migrate(engine)
        yield engine
        engine.dispose()
        return
    with postgres_schema("pbx_persist") as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def writer(engine: Engine) -> Iterator[BackgroundWriter]:
    writer = BackgroundWriter(engine)
    yield writer
    writer.close(10.0)


def record(aor: str = "1001", **changes: object) -> BindingRecord:
    base = BindingRecord(
        aor=aor,
        contact=f"sip:{aor}@192.0.2.10:5062",
        expires_at=NOW + timedelta(hours=1),
        call_id="call-1",
        cseq=1,
        q=None,
        transport="udp",
        source_host="192.0.2.10",
        source_port=5062,
        connection_id=None,
        node="node-a",
        user_agent="phone/1.0",
        instance_id=None,
        reg_id=None,
        updated_at=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def write(behind: BindingWriteBehind, writer: BackgroundWriter) -> None:
    behind.flush()
    assert writer.flush(10.0)
    assert writer.stats().failed == 0


def test_new_bindings_are_written_and_the_last_change_per_contact_wins(
    engine: Engine, writer: BackgroundWriter
) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001", cseq=1))
    behind.upsert(record("1001", cseq=2))
    behind.upsert(record("1002"))
    assert len(behind) == 2
    write(behind, writer)
    assert len(behind) == 0
    assert BindingStore(engine).load_active(NOW) == [record("1001", cseq=2), record("1002")]


def test_refreshes_update_expiry_call_id_cseq_and_time(engine: Engine, writer: BackgroundWriter) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001"))
    behind.upsert(record("1002"))
    write(behind, writer)
    later = NOW + timedelta(minutes=5)
    refreshed = record(
        "1001", expires_at=later + timedelta(hours=1), call_id="call-2", cseq=7, updated_at=later
    )
    behind.upsert(refreshed)
    write(behind, writer)
    assert BindingStore(engine).load_active(NOW) == [refreshed, record("1002")]


def test_a_refresh_of_a_row_gone_from_the_database_writes_it_whole(
    engine: Engine, writer: BackgroundWriter
) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001"))
    behind.upsert(record("1002"))
    write(behind, writer)
    store = BindingStore(engine)
    assert store.delete("1001", "sip:1001@192.0.2.10:5062") == 1  # e.g. swept by another node
    refreshed = [record("1001", cseq=2), record("1002", cseq=2)]
    for binding in refreshed:
        behind.upsert(binding)
    write(behind, writer)
    assert store.load_active(NOW) == refreshed


def test_a_change_beyond_a_refresh_rewrites_every_column(engine: Engine, writer: BackgroundWriter) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001"))
    write(behind, writer)
    moved = record("1001", source_host="198.51.100.7", source_port=40000, user_agent="phone/2.0", cseq=2)
    behind.upsert(moved)
    write(behind, writer)
    assert BindingStore(engine).load_active(NOW) == [moved]


def test_deletes_remove_the_row_and_a_later_binding_is_written_whole(
    engine: Engine, writer: BackgroundWriter
) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001"))
    write(behind, writer)
    behind.delete("1001", "sip:1001@192.0.2.10:5062")
    write(behind, writer)
    store = BindingStore(engine)
    assert store.load_active(NOW) == []
    again = record("1001", cseq=3)
    behind.upsert(again)
    write(behind, writer)
    assert store.load_active(NOW) == [again]


def test_a_delete_after_an_upsert_in_the_same_interval_wins(engine: Engine, writer: BackgroundWriter) -> None:
    behind = BindingWriteBehind(writer)
    behind.upsert(record("1001"))
    behind.delete("1001", "sip:1001@192.0.2.10:5062")
    write(behind, writer)
    assert BindingStore(engine).load_active(NOW) == []


def test_flush_with_nothing_pending_submits_nothing(writer: BackgroundWriter) -> None:
    behind = BindingWriteBehind(writer)
    behind.flush()
    assert writer.stats().submitted == 0
