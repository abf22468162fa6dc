"""offline_messages on SQLite and PostgreSQL: kept in order, at most
``keep`` per recipient (the oldest go), gone after their retention, and
deleted once delivered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from pbx.store.chat import OfflineMessageStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_kept_bounded_and_in_order(migrated: Engine) -> None:
    store = OfflineMessageStore(migrated)
    for n in range(4):
        store.save("2002", "2001", "text/plain", f"m{n}".encode(), now=T0 + timedelta(seconds=n),
                   expires_at=T0 + timedelta(hours=1), keep=3)
    store.save("2003", "2001", "text/plain", b"other", now=T0, expires_at=T0 + timedelta(hours=1), keep=3)
    kept = store.pending("2002", T0)
    assert [m.body for m in kept] == [b"m1", b"m2", b"m3"]
    assert kept[0].sender == "2001" and kept[0].content_type == "text/plain"
    assert store.recipients(T0) == {"2002", "2003"}
    store.delete(kept[0].id)
    assert [m.body for m in store.pending("2002", T0)] == [b"m2", b"m3"]


def test_retention(migrated: Engine) -> None:
    store = OfflineMessageStore(migrated)
    store.save("2002", "2001", "text/plain", b"soon gone", now=T0, expires_at=T0 + timedelta(hours=1), keep=10)
    store.save("2002", "2001", "text/plain", b"stays", now=T0, expires_at=T0 + timedelta(hours=3), keep=10)
    later = T0 + timedelta(hours=2)
    assert [m.body for m in store.pending("2002", later)] == [b"stays"]  # not offered once past it
    assert store.sweep(later) == 1
    assert store.recipients(T0 + timedelta(hours=4)) == set()
