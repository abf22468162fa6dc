"""The agents' state cache: merging what the store holds never goes back
in time, so a read racing a write of ours changes nothing, and a newer
log-in change from elsewhere (another node, ``pbx hunt``) wins."""

from __future__ import annotations

from pbx.calls.hunt_state import GroupRecord, HuntState, MemberRecord

T0 = 1_800_000_000.0


def test_a_newer_login_change_from_the_store_wins_an_older_one_does_not() -> None:
    state = HuntState()
    state.set_login("500", "1003", False, T0 + 10)
    state.merge([MemberRecord(group="500", member="1003", logged_in=True, login_changed_at=T0)])
    assert not state.logged_in("500", "1003")
    state.merge([MemberRecord(group="500", member="1003", logged_in=True, login_changed_at=T0 + 20)])
    assert state.logged_in("500", "1003")


def test_times_and_counts_only_grow_and_a_new_day_starts_again() -> None:
    state = HuntState()
    state.answered("500", "1003", T0, "2027-02-08")
    state.answered("500", "1003", T0 + 100, "2027-02-08")
    state.ended("500", "1003", T0 + 200)
    state.merge([MemberRecord(group="500", member="1003", last_answered_at=T0, last_ended_at=T0 + 50,
                              calls_day="2027-02-08", calls_count=1)])
    assert state.calls_today("500", "1003", "2027-02-08") == 2
    assert state.idle_since("1003") == T0 + 200
    state.merge([MemberRecord(group="500", member="1003", calls_day="2027-02-09", calls_count=4)])
    assert state.calls_today("500", "1003", "2027-02-09") == 4
    state.merge([GroupRecord(group="500", last_member="1005", updated_at=T0 + 50)])
    assert state.last_member("500") == "1003"  # ours (T0 + 100) is newer
    state.merge([GroupRecord(group="500", last_member="1005", updated_at=T0 + 500)])
    assert state.last_member("500") == "1005"


def test_idle_since_is_the_latest_over_every_group_of_the_member() -> None:
    state = HuntState()
    state.ended("500", "1004", T0)
    state.ended("501", "1004", T0 + 30)
    assert state.idle_since("1004") == T0 + 30
    assert state.idle_since("1005") is None
