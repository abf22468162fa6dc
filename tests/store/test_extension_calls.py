"""Calls per extension and node in the store (pbx/store/presence.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from pbx.store import presence

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


def test_each_node_sees_the_others_calls_and_a_dead_nodes_go(migrated: Engine) -> None:
    with migrated.begin() as conn:
        presence.set_calls("node-a", "1003", 1, NOW, conn)
        presence.set_calls("node-b", "1003", 2, NOW, conn)
        presence.set_calls("node-a", "1004", 1, NOW, conn)
        presence.set_calls("node-a", "1004", 0, NOW, conn)   # ended: the row goes
    with migrated.connect() as conn:
        assert presence.elsewhere("node-b", ["1003", "1004", "1005"], conn) == {"1003": 1, "1004": 0, "1005": 0}
        assert presence.elsewhere("node-c", None, conn) == {"1003": 3}
    with migrated.begin() as conn:
        assert presence.forget_node("node-b", conn) == ["1003"]
    with migrated.connect() as conn:
        assert presence.elsewhere("node-c", None, conn) == {"1003": 1}
