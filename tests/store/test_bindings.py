"""BindingStore against SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select

from pbx.store.bindings import BINDINGS, BindingRecord, BindingStore

from .conftest import NOW, MakeBinding


def test_upsert_then_load_active_returns_every_field(
    migrated: Engine, make_binding: MakeBinding
) -> None:
    store = BindingStore(migrated)
    full = make_binding(
        aor="1002",
        contact="sip:1002@[2001:db8::2]:5061;transport=tls",
        q=0.7,
        transport="tls",
        source_host="2001:db8::2",
        source_port=5061,
        connection_id="tls-17",
        instance_id='"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
        reg_id=1,
        cseq=2**32 - 1,
    )
    sparse = make_binding(aor="1001", user_agent=None)
    store.upsert(full)
    store.upsert(sparse)
    assert store.load_active(NOW) == [sparse, full]  # ordered by aor


def test_upsert_on_same_aor_and_contact_updates_in_place(
    migrated: Engine, make_binding: MakeBinding
) -> None:
    store = BindingStore(migrated)
    first = make_binding(cseq=1)
    store.upsert(first)
    refresh = replace(
        first,
        cseq=2,
        expires_at=NOW + timedelta(seconds=600),
        source_port=40002,  # NAT rebinding moved the phone's port
        node="pbx-b",
        q=0.5,
        updated_at=NOW + timedelta(seconds=30),
    )
    store.upsert(refresh)
    assert store.load_active(NOW) == [refresh]
    with migrated.connect() as conn:
        assert len(conn.execute(select(BINDINGS.c.id)).all()) == 1
    # A second Contact for the same AOR is a second binding (§10.3 step 7).
    other = make_binding(contact="sip:1001@192.0.2.11:5060")
    store.upsert(other)
    assert store.for_aor("1001", NOW) == [refresh, other]


def test_sweep_deletes_only_expired_bindings(
    migrated: Engine, make_binding: MakeBinding
) -> None:
    store = BindingStore(migrated)
    gone = make_binding(contact="sip:a@192.0.2.1", expires_at=NOW - timedelta(seconds=1))
    edge = make_binding(contact="sip:b@192.0.2.1", expires_at=NOW)
    alive = make_binding(contact="sip:c@192.0.2.1", expires_at=NOW + timedelta(seconds=1))
    for record in (gone, edge, alive):
        store.upsert(record)
    # Expired rows are not returned even before the sweep runs.
    assert store.load_active(NOW) == [alive]
    assert store.sweep(NOW) == 2
    assert store.sweep(NOW) == 0
    assert store.load_active(NOW - timedelta(days=1)) == [alive]


def test_delete_and_delete_aor(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    a1 = make_binding(aor="1001", contact="sip:1001@192.0.2.1")
    a2 = make_binding(aor="1001", contact="sip:1001@192.0.2.2")
    b1 = make_binding(aor="1002", contact="sip:1002@192.0.2.3")
    for record in (a1, a2, b1):
        store.upsert(record)
    assert store.delete("1001", "sip:1001@192.0.2.1") == 1
    assert store.delete("1001", "sip:1001@192.0.2.1") == 0
    assert store.for_aor("1001", NOW) == [a2]
    store.upsert(a1)
    assert store.delete_aor("1001") == 2
    assert store.for_aor("1001", NOW) == []
    assert store.load_active(NOW) == [b1]


def test_contact_is_kept_byte_for_byte(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    contact = "<sip:Alice@192.0.2.4:5060;transport=UDP;rinstance=3f>;+sip.instance=\"x\""
    store.upsert(make_binding(contact=contact))
    store.upsert(make_binding(contact=contact.lower()))  # a different string, a different row
    assert [r.contact for r in store.for_aor("1001", NOW)] == sorted([contact, contact.lower()])


def test_datetimes_round_trip_as_aware_utc(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    plus_two = timezone(timedelta(hours=2))
    expires = datetime(2025, 3, 30, 4, 0, 0, 123456, tzinfo=plus_two)
    store.upsert(make_binding(expires_at=expires, updated_at=NOW.astimezone(plus_two)))
    (record,) = store.load_active(NOW)
    assert record.expires_at == expires
    assert record.expires_at.tzinfo == UTC
    assert record.expires_at.hour == 2 and record.expires_at.microsecond == 123456
    assert record.updated_at == NOW and record.updated_at.tzinfo == UTC
    # Comparison in SQL is by instant, whatever zone `now` is given in.
    just_before = (expires - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-5)))
    assert store.load_active(just_before) == [record]
    assert store.load_active(expires) == []


def test_writes_join_a_given_transaction(migrated: Engine, make_binding: MakeBinding) -> None:
    store = BindingStore(migrated)
    with migrated.connect() as conn:
        with conn.begin() as outer:
            store.upsert(make_binding(), conn=conn)
            assert len(store.load_active(NOW, conn=conn)) == 1
            outer.rollback()
    assert store.load_active(NOW) == []


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"expires_at": datetime(2025, 1, 1)}, "expires_at must be a timezone-aware"),
        ({"updated_at": datetime(2025, 1, 1)}, "updated_at must be a timezone-aware"),
        ({"transport": "sctp"}, "transport must be one of"),
        ({"source_port": 0}, "source_port"),
        ({"source_port": 65536}, "source_port"),
        ({"source_host": "phone.example.com"}, "source_host must be an IP"),
        ({"q": 1.5}, "q must be between"),
        ({"cseq": -1}, "cseq"),
        ({"cseq": 2**32}, "cseq"),
        ({"aor": ""}, "aor"),
        ({"contact": ""}, "contact"),
        ({"reg_id": 0}, "reg_id"),
        ({"node": ""}, "node"),
    ],
)
def test_bad_records_are_refused(
    make_binding: MakeBinding, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        make_binding(**overrides)


def test_naive_now_is_refused(migrated: Engine) -> None:
    store = BindingStore(migrated)
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        store.load_active(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        store.sweep(datetime(2025, 1, 1))


def test_record_is_frozen(make_binding: MakeBinding) -> None:
    record: BindingRecord = make_binding()
    with pytest.raises(AttributeError):
        record.cseq = 5  # type: ignore[misc]
