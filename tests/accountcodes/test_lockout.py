"""Lock-out counting: N wrong codes in a window lock the source; a right
code clears the count; a code is flagged once at M refused uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pbx.accountcodes.lockout import LockoutPolicy, SourceState, after_failure, after_success, flags_now, locked

POLICY = LockoutPolicy(failures=3, window=60, lock_seconds=300, flag_after=4)
T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_nth_failure_in_the_window_locks_for_lock_seconds() -> None:
    state: SourceState | None = None
    results = []
    for second in (0, 10, 20):
        state, now_locked = after_failure(state, "ext:1099", at(second), POLICY)
        results.append(now_locked)
    assert results == [False, False, True]
    assert state is not None and state.locked_until == at(320)
    assert locked(state, at(319)) and not locked(state, at(320))
    assert state.failures == 0  # a fresh count after the lock


def test_failures_outside_the_window_start_a_new_count() -> None:
    state, _ = after_failure(None, "ext:1099", at(0), POLICY)
    state, _ = after_failure(state, "ext:1099", at(30), POLICY)
    state, now_locked = after_failure(state, "ext:1099", at(61), POLICY)  # the window opened at 0
    assert not now_locked and state.failures == 1 and state.window_started_at == at(61)


def test_a_right_code_clears_the_count_but_not_a_lock() -> None:
    state, _ = after_failure(None, "ext:1099", at(0), POLICY)
    state, _ = after_failure(state, "ext:1099", at(1), POLICY)
    cleared = after_success(state)
    assert cleared is not None and cleared.failures == 0
    _, now_locked = after_failure(cleared, "ext:1099", at(2), POLICY)
    assert not now_locked
    lock = SourceState(source="ext:1099", locked_until=at(100))
    assert locked(after_success(lock), at(50))
    assert after_success(None) is None


def test_a_code_is_flagged_once_at_the_threshold() -> None:
    assert [flags_now(after, False, POLICY) for after in range(1, 7)] == [False, False, False, True, True, True]
    assert [flags_now(after, True, POLICY) for after in range(1, 7)] == [False] * 6
