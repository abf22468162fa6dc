"""The hunt groups' lasting state in SQL (SQLite and PostgreSQL): rows
written whole and read back, a second write replacing the first, and a
fresh cache filled from the store seeing what another node wrote."""

from __future__ import annotations

from sqlalchemy import Engine

from pbx.calls.hunt_state import GroupRecord, HuntState, MemberRecord
from pbx.store.hunt import HuntStore

T0 = 1_800_000_000.0


def test_rows_round_trip_and_upsert(migrated: Engine) -> None:
    store = HuntStore(migrated)
    assert store.load() == []
    assert store.member("501", "1006") == MemberRecord(group="501", member="1006")  # defaults: logged in
    record = MemberRecord(group="501", member="1006", logged_in=False, login_changed_at=T0,
                          last_answered_at=T0 + 1.5, last_ended_at=T0 + 60.25, calls_day="2027-02-08", calls_count=3)
    store.save(record)
    store.save(GroupRecord(group="501", last_member="1006", updated_at=T0 + 1.5))
    assert sorted(store.load(), key=repr) == sorted([record, GroupRecord(group="501", last_member="1006",
                                                                         updated_at=T0 + 1.5)], key=repr)
    store.save(MemberRecord(group="501", member="1006", logged_in=True, login_changed_at=T0 + 90))
    assert store.member("501", "1006") == MemberRecord(group="501", member="1006", logged_in=True,
                                                       login_changed_at=T0 + 90)
    store.save(GroupRecord(group="501", last_member="1007", updated_at=T0 + 100))
    groups = [r for r in store.load() if isinstance(r, GroupRecord)]
    assert groups == [GroupRecord(group="501", last_member="1007", updated_at=T0 + 100)]


def test_a_restarted_node_reads_what_was_written_through(migrated: Engine) -> None:
    store = HuntStore(migrated)
    node = HuntState(save=store.save)
    node.set_login("500", "1003", False, T0)
    node.answered("500", "1004", T0 + 5, "2027-02-08")
    node.ended("500", "1004", T0 + 65)
    fresh = HuntState()
    fresh.merge(store.load())
    assert not fresh.logged_in("500", "1003")
    assert fresh.last_member("500") == "1004"
    assert fresh.idle_since("1004") == T0 + 65
    assert fresh.calls_today("500", "1004", "2027-02-08") == 1
    assert fresh.calls_today("500", "1004", "2027-02-09") == 0
