"""Store change notifications (pbx/store/change_events.py): payloads, and
a real LISTEN/NOTIFY round trip on PostgreSQL (nothing at all on SQLite)."""

from __future__ import annotations

import json
import queue
import threading

import pytest
from sqlalchemy import Engine

from pbx.store.change_events import (
    MAX_PAYLOAD, ChangeListener, StoreChanged, announce, parse_payload, payloads,
)


def test_payloads_sort_deduplicate_and_split_under_the_limit() -> None:
    keys = [f"{n:06d}" for n in range(3000)] * 2
    sent = list(payloads("node-a", "bindings", reversed(keys)))
    assert len(sent) > 1
    assert all(len(p.encode()) < MAX_PAYLOAD for p in sent)
    changes = [parse_payload(p) for p in sent]
    assert all(c is not None and (c.node, c.topic) == ("node-a", "bindings") for c in changes)
    got = [key for c in changes if c is not None for key in c.keys]
    assert got == sorted(set(keys))


@pytest.mark.parametrize("payload", [
    "", "not json", "[]", '{"node": "a"}', '{"node": 1, "topic": "hunt", "keys": []}',
    '{"node": "a", "topic": "weather", "keys": ["x"]}', '{"node": "a", "topic": "hunt", "keys": [1]}',
    '{"node": "a", "topic": "hunt", "keys": "701"}',
])
def test_anything_else_on_the_channel_is_ignored(payload: str) -> None:
    assert parse_payload(payload) is None


def test_an_unknown_topic_is_refused_when_sent(migrated: Engine) -> None:
    with migrated.begin() as conn, pytest.raises(ValueError, match="unknown topic"):
        announce(conn, "node-a", "weather", ["x"])


def test_other_nodes_hear_a_change_at_commit_and_not_their_own(migrated: Engine) -> None:
    if not ChangeListener.applies(migrated):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite has one node")
    heard: queue.Queue[StoreChanged] = queue.Queue()
    gaps = threading.Event()
    listener = ChangeListener(migrated, "node-b", heard.put, gaps.set)
    listener.start()
    try:
        assert listener.listening.wait(10.0)
        with migrated.begin() as conn:
            announce(conn, "node-b", "bindings", ["1001"])     # its own: ignored
            announce(conn, "node-a", "hunt", ["701", "700"])
            assert heard.empty()                              # not before the commit
        with migrated.begin() as conn:
            announce(conn, "node-a", "bindings", ["1003"])
            conn.rollback()                                   # rolled back: never sent
        with migrated.begin() as conn:
            announce(conn, "node-a", "features", ["1002"])
        with migrated.begin() as conn:
            announce(conn, "", "blocks", ["198.51.100.7"])   # named by no node: heard by all
        assert heard.get(timeout=10.0) == StoreChanged("node-a", "hunt", ("700", "701"))
        assert heard.get(timeout=10.0) == StoreChanged("node-a", "features", ("1002",))
        assert heard.get(timeout=10.0) == StoreChanged("", "blocks", ("198.51.100.7",))
        assert heard.empty()
        assert not gaps.is_set()
    finally:
        listener.close()


def test_payload_shape_is_stable() -> None:
    # Nodes of two versions may share a database during an upgrade.
    [payload] = payloads("n", "hunt", ["701"])
    assert json.loads(payload) == {"node": "n", "topic": "hunt", "keys": ["701"]}
