"""Forwards, do not disturb and call waiting's limit hold for a caller in
the same short-number group as the callee: routing makes that call a
member call (RingMember), which used to ring the desk past all three.
And a forward to a hunt group rings its members. On the in-memory wire,
with the plan of tests/calls/test_transfer_rights.py plus a group of
Alice (2001) and Bob (2002)."""

from __future__ import annotations

from pathlib import Path

from pbx.sip.address import Peer

from .harness import ALICE, BOB, Harness, place_call, requests, responses
from .test_transfer_rights import PLAN, harness

CAROL = Peer("udp", "127.0.0.1", 5074)


GROUP = """\
groups:
  office:
    members:
      "21": {name: Alice, extension: "2001"}
      "22": {name: Bob, extension: "2002"}
"""


def test_do_not_disturb_holds_for_a_caller_in_the_same_group(tmp_path: Path) -> None:
    # Alice and Bob share a short-number group: her call to his extension
    # (or his short number) is a member call, and his DND still holds.
    h = harness(tmp_path, bob(", dnd: true"))
    place_call(h)
    assert requests(h.take(BOB), "INVITE") == []
    assert finals(h) == [486]


def test_a_forward_holds_for_a_caller_in_the_same_group(tmp_path: Path) -> None:
    h = harness(tmp_path, bob(", forward: {always: '2003'}").replace(
        "extensions:\n", "extensions:\n  2003: {name: Carol, department: ops, password: carol-secret-2003}\n"))
    h.register("2003", CAROL)
    place_call(h)
    assert requests(h.take(BOB), "INVITE") == [] and len(requests(h.take(CAROL), "INVITE")) == 1
    (call,) = h.recorder.started
    assert call.transfers == ["forward always 2002 -> 2003"]


def test_beyond_max_calls_a_caller_in_the_same_group_gets_busy(tmp_path: Path) -> None:
    h = harness(tmp_path, bob(", max_calls: 1"))
    h.controller.presence.hold((), "2002")  # Bob is on a call already
    place_call(h)
    assert requests(h.take(BOB), "INVITE") == [] and finals(h) == [486]


def bob(fields: str) -> str:
    return PLAN.replace("password: bob-secret-2002}", f"password: bob-secret-2002{fields}}}") + GROUP


def finals(h: Harness) -> list[int]:
    return [r.status for r in responses(h.take(ALICE), "INVITE") if r.status >= 200]


def test_a_forward_to_a_hunt_group_rings_its_members(tmp_path: Path) -> None:
    plan = PLAN.replace("password: bob-secret-2002}", "password: bob-secret-2002, forward: {always: '700'}}") \
        .replace("extensions:\n", "extensions:\n  2003: {name: Carol, department: ops, password: carol-secret-2003}\n") \
        + 'hunt_groups:\n  "700": {name: Front desk, strategy: ring_all, members: ["2003"], member_seconds: 20}\n'
    h = harness(tmp_path, plan)
    h.register("2003", CAROL)
    place_call(h)
    assert requests(h.take(BOB), "INVITE") == [] and len(requests(h.take(CAROL), "INVITE")) == 1
    (call,) = h.recorder.started
    assert call.transfers == ["forward always 2002 -> 700"]
