"""BlockStore against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select

from pbx.store.blocks import BLOCKS, BlockStore

from .conftest import NOW, ends


def test_block_then_active(migrated: Engine) -> None:
    store = BlockStore(migrated)
    store.block("203.0.113.9", NOW + timedelta(minutes=10), "auth_failures", 5, created_at=NOW)
    store.block("2001:DB8::9", NOW + timedelta(minutes=20), "auth_failures", 7, created_at=NOW)
    assert ends(store.active(NOW)) == {
        "203.0.113.9": NOW + timedelta(minutes=10),
        "2001:db8::9": NOW + timedelta(minutes=20),  # canonical form
    }
    for until in ends(store.active(NOW)).values():
        assert until.tzinfo == UTC


def test_block_again_extends_and_keeps_created_at(migrated: Engine) -> None:
    store = BlockStore(migrated)
    store.block("203.0.113.9", NOW + timedelta(minutes=10), "auth_failures", 5, created_at=NOW)
    later = NOW + timedelta(minutes=5)
    store.block("203.0.113.9", later + timedelta(hours=1), "scanner", 9, created_at=later)
    assert ends(store.active(NOW)) == {"203.0.113.9": later + timedelta(hours=1)}
    with migrated.connect() as conn:
        row = conn.execute(select(BLOCKS)).one()
    assert (row.reason, row.failures, row.created_at) == ("scanner", 9, NOW)


def test_sweep_and_unblock(migrated: Engine) -> None:
    store = BlockStore(migrated)
    store.block("192.0.2.1", NOW - timedelta(seconds=1), "auth_failures", 5)
    store.block("192.0.2.2", NOW, "auth_failures", 5)
    store.block("192.0.2.3", NOW + timedelta(hours=1), "auth_failures", 5)
    store.block("192.0.2.4", NOW + timedelta(hours=1), "auth_failures", 5)
    assert set(ends(store.active(NOW))) == {"192.0.2.3", "192.0.2.4"}
    assert store.sweep(NOW) == 2
    assert store.unblock("192.0.2.3") == 1
    assert store.unblock("192.0.2.3") == 0
    assert ends(store.active(NOW - timedelta(days=1))) == {"192.0.2.4": NOW + timedelta(hours=1)}


def test_until_in_another_zone_is_the_same_instant(migrated: Engine) -> None:
    store = BlockStore(migrated)
    until = datetime(2025, 3, 30, 12, 0, tzinfo=timezone(timedelta(hours=9)))
    store.block("192.0.2.1", until, "auth_failures", 3)
    assert ends(store.active(NOW)) == {"192.0.2.1": datetime(2025, 3, 30, 3, 0, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("source", "until", "reason", "failures", "problem"),
    [
        ("not-an-ip", NOW, "auth_failures", 1, "source must be an IP"),
        ("192.0.2.1", datetime(2025, 1, 1), "auth_failures", 1, "until must be a timezone-aware"),
        ("192.0.2.1", NOW, "", 1, "reason"),
        ("192.0.2.1", NOW, "auth_failures", -1, "failures"),
    ],
)
def test_bad_blocks_are_refused(
    migrated: Engine, source: str, until: datetime, reason: str, failures: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        BlockStore(migrated).block(source, until, reason, failures)
    assert BlockStore(migrated).active(NOW - timedelta(days=1)) == []


def test_blocks_per_username_live_beside_the_source_block(migrated: Engine) -> None:
    store = BlockStore(migrated)
    store.block("192.0.2.1", NOW + timedelta(minutes=5), "auth_failures", 5, username="1001", created_at=NOW)
    store.block("192.0.2.1", NOW + timedelta(minutes=6), "auth_failures", 5, username="1002", created_at=NOW)
    store.block("192.0.2.1", NOW + timedelta(minutes=7), "auth_scan", 10, created_at=NOW)
    found = store.active(NOW)
    assert [(b.source, b.username, b.until) for b in found] == [
        ("192.0.2.1", "1001", NOW + timedelta(minutes=5)),
        ("192.0.2.1", "1002", NOW + timedelta(minutes=6)),
        ("192.0.2.1", "", NOW + timedelta(minutes=7)),
    ]
    assert store.unblock("192.0.2.1", "1001") == 1
    assert [b.username for b in store.active(NOW)] == ["1002", ""]
    assert store.unblock() == 2
    assert store.active(NOW) == []
