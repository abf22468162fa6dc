"""Budget reservations shared by nodes (pbx/store/budgets.py: reserve,
release, release_node): room is never handed out twice, on PostgreSQL even
when ten calls ask at the same instant from ten connections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

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
        store.release("c1", conn)
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
        assert store.release_node("node-a", conn) == 2
    assert reserve(migrated, "x1", amount=200) is None
    assert reserve(migrated, "x2") == (SALES, 0, 300)


def test_asking_again_for_the_same_call_replaces_its_hold(migrated: Engine) -> None:
    assert reserve(migrated, "c1", amount=200) is None
    assert reserve(migrated, "c1", amount=300) is None   # its own earlier hold is not counted against it
    assert reserve(migrated, "c2", amount=1) == (SALES, 0, 300)


def test_ten_at_once_on_postgresql_exactly_three_fit(migrated: Engine) -> None:
    if migrated.dialect.name != "postgresql":
        pytest.skip("row locks across connections: PostgreSQL (SQLite has one node)")
    start = threading.Barrier(10)
    results: dict[str, object] = {}

    def ask(call: str) -> None:
        start.wait()
        results[call] = reserve(migrated, call)

    threads = [threading.Thread(target=ask, args=(f"c{n}",)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    admitted = sorted(call for call, refused in results.items() if refused is None)
    assert len(results) == 10
    assert len(admitted) == 3
