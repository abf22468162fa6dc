"""Budget reservations and outside-call caps shared by nodes
(pbx/store/budgets.py: reserve, admit_outside, release, release_node): room
is never handed out twice, on PostgreSQL even when ten calls ask at the
same instant from ten connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from pbx.store import budgets as store

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
SALES = ("department:sales", "2026-12")
ALICE = ("extension:1001", "2026-12")


def reserve(engine: Engine, call: str, amount: int = 100, node: str = "node-a",
            limits: dict[tuple[str, str], int] | None = None) -> tuple[tuple[str, str], int, int] | None:
    with engine.begin() as conn:
        return store.reserve(call, limits or {SALES: 300}, amount, node, NOW, conn)


def at_once(count: int, ask: Callable[[str], object]) -> dict[str, object]:
    """``ask`` for calls c0, c1, ... from ``count`` threads released together."""
    start = threading.Barrier(count)
    results: dict[str, object] = {}

    def one(call: str) -> None:
        start.wait()
        results[call] = ask(call)

    threads = [threading.Thread(target=one, args=(f"c{n}",)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_room_is_spend_plus_calls_in_progress(migrated: Engine) -> None:
    with migrated.begin() as conn:
        store.add_spend([SALES], 100, NOW, conn)
    assert reserve(migrated, "c1") is None
    assert reserve(migrated, "c2") is None
    # 100 spent + 200 held: no room for 100 more.
    assert reserve(migrated, "c3") == (SALES, 100, 200)
    # c1 ends having cost 40: its hold goes, its cost counts.
    with migrated.begin() as conn:
        store.add_spend([SALES], 40, NOW, conn)
        store.release("c1", NOW, conn)
    assert reserve(migrated, "c3", amount=60) is None
    assert reserve(migrated, "c4", amount=1) == (SALES, 140, 160)


def test_every_budget_must_have_room_or_nothing_is_held(migrated: Engine) -> None:
    limits = {SALES: 1000, ALICE: 150}
    assert reserve(migrated, "c1", limits=limits) is None
    assert reserve(migrated, "c2", limits=limits) == (ALICE, 0, 100)
    # c2 holds nothing in the budget that had room either.
    assert reserve(migrated, "c3", amount=900, limits={SALES: 1000}) is None


def test_a_crashed_nodes_holds_go_when_it_starts_again(migrated: Engine) -> None:
    assert reserve(migrated, "a1", node="node-a") is None
    assert reserve(migrated, "b1", node="node-b") is None
    assert reserve(migrated, "a2", node="node-a") is None
    with migrated.begin() as conn:
        assert store.release_node("node-a", NOW, conn) == 2
    assert reserve(migrated, "x1", amount=200) is None
    assert reserve(migrated, "x2") == (SALES, 0, 300)


def test_asking_again_for_the_same_call_replaces_its_hold(migrated: Engine) -> None:
    assert reserve(migrated, "c1", amount=200) is None
    assert reserve(migrated, "c1", amount=300) is None   # its own earlier hold is not counted against it
    assert reserve(migrated, "c2", amount=1) == (SALES, 0, 300)


def test_ten_at_once_on_postgresql_exactly_three_fit(migrated: Engine) -> None:
    if migrated.dialect.name != "postgresql":
        pytest.skip("row locks across connections: PostgreSQL (SQLite has one node)")
    results = at_once(10, lambda call: reserve(migrated, call))
    assert len(results) == 10
    assert sum(1 for refused in results.values() if refused is None) == 3


def outside(engine: Engine, call: str, at: datetime = NOW, node: str = "node-a") -> tuple[str, int, int | None] | None:
    with engine.begin() as conn:
        return store.admit_outside(call, "1001", 2, 3, node, at, conn)


def test_outside_calls_count_against_both_caps_on_every_node(migrated: Engine) -> None:
    assert outside(migrated, "o1", node="node-a") is None
    assert outside(migrated, "o2", node="node-b") is None
    assert outside(migrated, "o3") == ("simultaneous", 2, None)       # two up, on two nodes
    with migrated.begin() as conn:
        store.release("o1", NOW + timedelta(seconds=5), conn)
    assert outside(migrated, "o3", NOW + timedelta(seconds=10)) is None
    with migrated.begin() as conn:
        store.release("o2", NOW + timedelta(seconds=15), conn)
    # Three started within the minute: the fourth waits till the first leaves it.
    assert outside(migrated, "o4", NOW + timedelta(seconds=20)) == ("per_minute", 3, 40)
    assert outside(migrated, "o4", NOW + timedelta(seconds=61)) is None
    with migrated.begin() as conn:  # a dead node's calls are up no more
        store.release_node("node-a", NOW + timedelta(seconds=62), conn)
    assert outside(migrated, "o5", NOW + timedelta(seconds=75)) is None


def test_ten_outside_calls_at_once_on_postgresql_exactly_two_are_up(migrated: Engine) -> None:
    if migrated.dialect.name != "postgresql":
        pytest.skip("advisory locks across connections: PostgreSQL (SQLite has one node)")
    results = at_once(10, lambda call: outside(migrated, call))
    assert len(results) == 10
    assert sum(1 for refused in results.values() if refused is None) == 2
