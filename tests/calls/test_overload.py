"""The overload gate's decisions (pbx/calls/overload.py): when it closes,
when it opens again, what a refusal says; and the controller refusing a new
call, and only a new call, while it is closed."""

from __future__ import annotations

import random

import pytest

from pbx.calls.overload import HIGH_WATER, HOLD, LOW_WATER_SHARE, RETRY_AFTER, OverloadGate

LOW_WATER = HIGH_WATER // LOW_WATER_SHARE


def test_closes_above_high_water_only() -> None:
    gate = OverloadGate()
    assert gate.observe(0.0, 0) is None
    assert gate.observe(0.1, HIGH_WATER) is None and not gate.shedding
    change = gate.observe(0.2, HIGH_WATER + 1280)
    assert change is not None and change.kind == "started" and change.queued == HIGH_WATER + 1280
    assert gate.shedding and gate.in_episode


def test_opens_after_the_backlog_stays_drained_for_hold() -> None:
    gate = OverloadGate()
    gate.observe(0.0, HIGH_WATER + 1)
    # Between the marks: still behind, still refusing.
    assert gate.observe(1.0, LOW_WATER + 1) is None and gate.shedding
    assert gate.observe(2.0, LOW_WATER) is None and gate.shedding  # drained from now
    # A burst before HOLD is up starts the wait again.
    assert gate.observe(2.0 + HOLD / 2, LOW_WATER * 2) is None and gate.shedding
    assert gate.observe(3.0, 0) is None and gate.shedding
    assert gate.observe(3.0 + HOLD * 0.9, 0) is None and gate.shedding
    assert gate.observe(3.0 + HOLD, 0) is None
    assert not gate.shedding and gate.in_episode


def test_an_episode_spans_every_closing_until_quiet_and_is_reported_once() -> None:
    gate = OverloadGate(hold=0.1, quiet=10.0)
    changes = []
    # At the limit: the gate closes and opens several times a second.
    t = 0.0
    for _ in range(20):
        changes.append(gate.observe(t, HIGH_WATER + 1))
        gate.refuse()
        changes.append(gate.observe(t + 0.02, 0))
        changes.append(gate.observe(t + 0.13, 0))
        assert not gate.shedding
        t += 0.5
    started = [c for c in changes if c is not None]
    assert [c.kind for c in started] == ["started"], "one episode, however often the gate closed"
    last_open = t - 0.5 + 0.13
    assert gate.observe(last_open + 9.9, 0) is None and gate.in_episode
    ended = gate.observe(last_open + 10.0, 0)
    assert ended is not None and ended.kind == "ended"
    assert ended.refused == 20
    assert ended.lasted == pytest.approx(last_open)
    assert ended.shed == pytest.approx(20 * 0.13)
    assert not gate.in_episode


def test_marks_are_lowered_to_fit_a_small_receive_buffer() -> None:
    gate = OverloadGate()
    assert not gate.capped(16 << 20) and gate.high == HIGH_WATER
    # 212,992 bytes asked (the default net.core.rmem_max): the kernel gives twice that.
    assert gate.capped(425_984)
    assert gate.high == 212_992 and gate.low == 212_992 // LOW_WATER_SHARE
    assert gate.observe(0.0, 212_993) is not None and gate.shedding


def test_refusals_are_counted_per_episode_and_retry_after_is_spread() -> None:
    gate = OverloadGate(rng=random.Random(7), quiet=1.0)
    gate.observe(0.0, HIGH_WATER + 1)
    waits = {gate.refuse() for _ in range(200)}
    assert waits <= set(range(RETRY_AFTER, 2 * RETRY_AFTER + 1)) and len(waits) > 3
    assert gate.refused == 200
    gate.observe(1.0, 0)
    gate.observe(1.0 + HOLD, 0)
    ended = gate.observe(2.0 + HOLD, 0)
    assert ended is not None and ended.refused == 200
    change = gate.observe(50.0, HIGH_WATER + 1)
    assert change is not None and change.kind == "started" and gate.refused == 0


# ---------------------------------------------------------------- the controller

def closed_gate() -> OverloadGate:
    gate = OverloadGate(rng=random.Random(1))
    gate.observe(0.0, HIGH_WATER + 1)
    assert gate.shedding
    return gate


def test_a_new_call_is_refused_503_before_any_work_and_a_call_in_progress_goes_on() -> None:
    from pbx.routing.dialplan import CallSettings

    from .harness import (ALICE, BOB, Harness, ack_text, answer_call, in_dialog_text, invite_text, requests,
                          responses)

    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(BOB)
    h.controller.overload = gate = closed_gate()

    h.deliver(invite_text(call_id="c2", cseq=1, branch="z9hG4bKn1", headers=[]), ALICE)
    (refusal,) = responses(h.take(ALICE), "INVITE")
    assert refusal.status == 503
    assert RETRY_AFTER <= int(refusal.get("retry-after") or "0") <= 2 * RETRY_AFTER
    assert "proxy-authenticate" not in {name for name, _ in refusal.headers}, "refused before authentication"
    assert requests(h.take(BOB), "INVITE") == []
    assert len(h.recorder.started) == 1, "no CDR for a call refused before its caller is known"
    assert gate.refused == 1

    # The call set up before goes on: Alice's BYE reaches Bob.
    h.deliver(in_dialog_text("BYE", target="sip:127.0.0.1:5060", call_id="c1", from_="<sip:2001@pbx.example.com>;tag=alice",
                             to=call.a_ok.get("to") or "", cseq=3, source=ALICE), ALICE)
    assert len(requests(h.take(BOB), "BYE")) == 1

    # The gate open again: the next new call is challenged as usual.
    h.controller.overload = OverloadGate()
    h.deliver(invite_text(call_id="c3", cseq=1, branch="z9hG4bKn3", headers=[]), ALICE)
    assert [r.status for r in responses(h.take(ALICE), "INVITE")] == [407]


def test_an_emergency_number_is_never_refused_for_overload() -> None:
    import dataclasses

    from pbx.routing.classes import EMERGENCY, NumberPlan, NumberPlanEntry
    from pbx.routing.dialplan import CallSettings
    from pbx.routing.patterns import parse_pattern

    from .harness import ALICE, Harness, invite_text, responses

    h = Harness(CallSettings())
    table = NumberPlan(key="vn", entries=(
        NumberPlanEntry(pattern=parse_pattern("11[345]"), call_class=EMERGENCY, rule="number_plans.vn[0]"),))
    h.controller.plan = dataclasses.replace(h.plan, number_plans={"vn": table})
    h.controller.overload = gate = closed_gate()
    emergency = invite_text(call_id="e1", cseq=1, branch="z9hG4bKe1", headers=[]).replace(
        b"INVITE sip:2002@", b"INVITE sip:113@", 1)
    h.deliver(emergency, ALICE)
    assert [r.status for r in responses(h.take(ALICE), "INVITE")] == [407], "handled as any call, not shed"
    ordinary = invite_text(call_id="e2", cseq=1, branch="z9hG4bKe2", headers=[])
    h.deliver(ordinary, ALICE)
    assert [r.status for r in responses(h.take(ALICE), "INVITE")] == [503]
    assert gate.refused == 1
