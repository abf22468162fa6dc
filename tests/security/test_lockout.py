"""The lock-out's rules, on a hand-held clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.security.lockout import ANY_USER, Block, Lockout


def lockout(**overrides: float) -> Lockout:
    values: dict[str, float] = dict(max_failures=3, window=60, block_seconds=300, scan_usernames=4,
                                    targeted_failures=6, retry_seconds=2)
    values.update(overrides)
    return Lockout(**values)  # type: ignore[arg-type]


def test_failures_block_the_pair_only() -> None:
    guard = lockout()
    assert guard.failure("10.0.0.1", "1001", 0.0).blocks == ()
    assert guard.failure("10.0.0.1", "1001", 1.0).blocks == ()
    (block,) = guard.failure("10.0.0.1", "1001", 2.0).blocks
    assert block == Block(source="10.0.0.1", username="1001", until=302.0, failures=3)
    assert guard.blocked("10.0.0.1", "1001", 100.0) == block
    assert guard.blocked("10.0.0.1", "1002", 100.0) is None  # a neighbour behind the same NAT
    assert guard.blocked("10.0.0.2", "1001", 100.0) is None  # the owner from elsewhere
    assert guard.blocked("10.0.0.1", "1001", 302.0) is None


def test_failures_outside_the_window_do_not_add_up() -> None:
    guard = lockout()
    for at in (0.0, 30.0, 61.0, 92.0, 123.0):
        assert guard.failure("10.0.0.1", "1001", at).blocks == ()


def test_a_blocked_pair_is_checked_once_per_retry_interval() -> None:
    guard = lockout()
    for at in (0.0, 1.0, 2.0):
        guard.failure("10.0.0.1", "1001", at)
    assert not guard.may_check("10.0.0.1", "1001", 3.0)  # the blocking check was at 2.0
    assert guard.may_check("10.0.0.1", "1001", 4.0)
    assert not guard.may_check("10.0.0.1", "1001", 5.0)
    assert guard.may_check("10.0.0.1", "1001", 6.5)
    assert all(guard.may_check("10.0.0.1", "1002", t) for t in (3.0, 3.1, 3.2))


def test_a_scanner_blocks_its_source_but_not_untried_names() -> None:
    guard = lockout()
    results = [guard.failure("10.0.0.9", name, float(i)) for i, name in enumerate(["a", "b", "c", "d"])]
    assert [r.blocks for r in results[:3]] == [(), (), ()]
    (block,) = results[3].blocks
    assert (block.source, block.username, block.scope) == ("10.0.0.9", ANY_USER, "source")
    assert guard.blocked("10.0.0.9", "e", 10.0) == block
    # A name that failed there waits between checks; one that never did is
    # checked every time (a colleague behind the scanner's address).
    assert not guard.may_check("10.0.0.9", "d", 4.0)
    assert guard.may_check("10.0.0.9", "a", 4.0) and not guard.may_check("10.0.0.9", "a", 4.5)
    assert all(guard.may_check("10.0.0.9", "1001", 4.0 + t / 10) for t in range(5))


def test_a_targeted_username_is_reported_once_per_window_and_not_blocked() -> None:
    guard = lockout(max_failures=100, scan_usernames=100)
    reports = [guard.failure(f"10.1.0.{i}", "1001", float(i)).targeted for i in range(10)]
    assert reports == [0, 0, 0, 0, 0, 6, 0, 0, 0, 0]
    assert guard.blocked("10.1.0.99", "1001", 10.0) is None
    assert guard.failure("10.1.0.50", "1001", 70.0).targeted == 0  # 6 within the window again: not yet
    reports = [guard.failure("10.1.0.60", "1001", 70.0 + i).targeted for i in range(5)]
    assert reports[-1] == 6


def test_load_replaces_blocks_but_keeps_newer_local_ones() -> None:
    guard = lockout()
    for at in (100.0, 101.0, 102.0):
        guard.failure("10.0.0.1", "1001", at)
    stored = Block(source="10.0.0.7", username="", until=900.0, failures=12)
    guard.load([stored], read_at=101.0)  # read before the local block was set
    assert guard.blocked("10.0.0.7", "x", 200.0) == stored
    assert guard.blocked("10.0.0.1", "1001", 200.0) is not None
    guard.load([], read_at=150.0)  # the store has caught up, and lifted both
    assert guard.blocks(200.0) == []


def test_a_lifted_block_takes_its_failures_with_it() -> None:
    """The owner, unblocked by an administrator, mistypes once: not blocked
    again at once by the guesses that came before the lift."""
    guard = lockout()
    for at in (100.0, 101.0, 102.0):
        guard.failure("10.0.0.1", "1001", at)
    (block,) = guard.blocks(103.0)
    guard.load([block], read_at=104.0)  # written, read back
    assert guard.may_check("10.0.0.1", "1001", 105.0)
    assert guard.failure("10.0.0.1", "1001", 105.0).blocks == ()  # a guess while blocked: counted
    guard.load([], read_at=110.0)  # cleared in the store
    assert guard.blocked("10.0.0.1", "1001", 111.0) is None
    assert guard.may_check("10.0.0.1", "1001", 111.0)
    assert guard.failure("10.0.0.1", "1001", 111.0).blocks == ()
    assert guard.failure("10.0.0.1", "1001", 112.0).blocks == ()
    assert guard.failure("10.0.0.1", "1001", 113.0).blocks != ()  # three new ones block as ever


def test_a_lifted_source_block_forgets_the_sources_failures_only() -> None:
    guard = lockout()
    for i, name in enumerate("abcd"):
        guard.failure("10.0.0.9", name, float(i))
    guard.failure("10.0.0.8", "a", 4.0)
    guard.failure("10.0.0.8", "a", 5.0)
    guard.load(guard.blocks(6.0), read_at=6.0)
    guard.load([], read_at=7.0)
    for i, name in enumerate("efg"):  # three new names: not yet a scanner again
        assert guard.failure("10.0.0.9", name, 8.0 + i).blocks == ()
    assert guard.failure("10.0.0.9", "a", 11.0).blocks != ()  # the fourth name
    assert guard.failure("10.0.0.8", "a", 12.0).blocks != ()  # another source's count stands


def test_a_block_expiring_or_not_yet_stored_is_not_taken_for_lifted() -> None:
    guard = lockout(block_seconds=10)
    for at in (0.0, 1.0, 2.0):
        guard.failure("10.0.0.1", "1001", at)
    guard.load([], read_at=1.5)  # read before the block was set: kept, not lifted
    assert guard.blocked("10.0.0.1", "1001", 3.0) is not None
    guard.load(guard.blocks(3.0), read_at=3.0)
    guard.load([], read_at=20.0)  # ran out by itself (until 12.0): its failures age out as ever
    assert guard.failure("10.0.0.1", "1001", 30.0).blocks != ()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 2000)), max_size=400))
def test_memory_is_bounded(pairs: list[tuple[int, int]]) -> None:
    guard = lockout(max_failures=2, scan_usernames=3)
    guard.max_entries = 50
    for n, (source, user) in enumerate(pairs):
        guard.failure(f"10.{source // 250}.{source % 250}.1", str(user), float(n))
        guard.may_check(f"10.{source // 250}.{source % 250}.1", str(user), float(n))
    sizes = [len(t) for t in (guard._pairs, guard._users, guard._users_by_source, guard._blocks, guard._last_check)]
    assert max(sizes, default=0) <= 50
    guard.sweep(len(pairs) + 10_000.0)
    assert [len(t) for t in (guard._pairs, guard._users, guard._users_by_source, guard._blocks)] == [0, 0, 0, 0]
