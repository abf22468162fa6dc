"""Presence across nodes (pbx/calls/presence.py): this node's changes go out
with their new count, the other nodes' counts make an extension busy here."""

from __future__ import annotations

from pbx.calls.presence import Presence


def test_own_changes_are_shared_with_the_new_count() -> None:
    presence = Presence()
    shared: list[tuple[str, int]] = []
    lamps: list[str] = []
    presence.shared = lambda extension, calls: shared.append((extension, calls))
    presence.listener = lamps.append
    held = presence.hold((), "1001")
    held = presence.hold(held, "1002")
    other = presence.hold((), "1001")
    presence.release(held)
    presence.release(other)
    assert shared == [("1001", 1), ("1002", 1), ("1001", 2), ("1001", 1), ("1002", 0), ("1001", 0)]
    assert lamps == ["1001", "1002", "1001", "1001", "1002", "1001"]


def test_a_call_through_another_node_makes_busy_here() -> None:
    presence = Presence()
    lamps: list[str] = []
    presence.listener = lamps.append
    presence.elsewhere({"1003": 1, "1004": 0})
    assert presence.busy("1003") and not presence.busy("1004")
    assert presence.calls("1003") == 1
    held = presence.hold((), "1003")                    # and one here: both count against max_calls
    assert presence.calls("1003") == 2
    presence.elsewhere({"1003": 1})                     # no change: no lamp update
    presence.elsewhere({"1003": 0})
    assert presence.calls("1003") == 1 and presence.busy("1003")
    presence.release(held)
    assert not presence.busy("1003")
    assert presence.elsewhere_now() == []
    assert lamps == ["1003", "1003", "1003", "1003"]
