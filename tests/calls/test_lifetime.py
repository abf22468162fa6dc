"""A finished call is freed by reference counting, not left for the cycle
collector: the server runs full collections rarely (pbx/server/gc_tuning.py),
so a call kept alive by a reference cycle holds its memory, sessions and
messages long after it ended (at 10,000 concurrent calls that cost 1 MB per
1,000 calls, measured)."""

from __future__ import annotations

import gc
from collections import Counter

from pbx.routing.dialplan import CallSettings

from .harness import (ALICE, BOB, DOMAIN, SDP, Harness, ack_text, answer_call, cancel_text, from_alice, from_bob,
                      in_dialog_text, non_2xx_ack_text, place_call, requests, response_text, responses)

# What a call is made of, down to its transactions.
CALL_PARTS = frozenset({
    "Call", "Fork", "Leg", "InviteSession", "Dialog", "InviteServerTransaction", "InviteClientTransaction",
    "NonInviteServerTransaction", "NonInviteClientTransaction",
})


def test_finished_calls_leave_no_reference_cycles() -> None:
    h = Harness(CallSettings())
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            call = answer_call(h, a_headers=[], b_headers=[])
            h.deliver(ack_text(call), ALICE)
            h.deliver(in_dialog_text("BYE", target="sip:127.0.0.1:5060", call_id="c1",
                                     from_=f"<sip:2001@{DOMAIN}>;tag=alice", to=call.a_ok.get("to") or "", cseq=3,
                                     source=ALICE), ALICE)
            (bye,) = requests(h.take(BOB), "BYE")
            h.deliver(response_text(bye, 200, to_tag="bob"), BOB)
            assert [c.reason for c in h.recorder.ended] == ["bye"]
            h.recorder.started.clear()
            h.recorder.ended.clear()
            h.take(ALICE)
            h.advance(40.0)  # the transactions end, so the next call may reuse Call-ID and branches
        del call, bye
        unreachable = gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert unreachable == 0, kinds.most_common(10)


def live_call_parts() -> Counter[str]:
    gc.collect()
    return Counter(name for o in gc.get_objects() if (name := type(o).__name__) in CALL_PARTS)


def test_ended_calls_leave_no_objects_behind() -> None:
    # Indexes, timers and the transaction layer let go of every part of a
    # call once it has ended and lingered: at 50,000 calls a day nothing
    # may stay per call. One call of each way of ending.
    h = Harness(CallSettings())
    before = live_call_parts()

    for caller_hangs_up in (True, False):  # answered, then either side's BYE
        call = answer_call(h, a_headers=[], b_headers=[])
        h.deliver(ack_text(call), ALICE)
        by, other, tag = (ALICE, BOB, "bob") if caller_hangs_up else (BOB, ALICE, "alice")
        h.deliver(from_alice("BYE", call.a_ok, 3) if caller_hangs_up else from_bob("BYE", call.b_invite, 1), by)
        (bye,) = requests(h.take(other), "BYE")
        h.deliver(response_text(bye, 200, to_tag=tag), other)
        h.advance(40.0)

    # Cancelled while the callee's 200 crosses the CANCEL: its dialog is
    # ACKed and BYEd after the call's end (the sessions linger).
    a_invite = place_call(h)
    (b_invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(b_invite, 180, to_tag="bob", contact=BOB), BOB)
    h.deliver(cancel_text(a_invite), ALICE)
    (cancel,) = requests(h.take(BOB), "CANCEL")
    (final,) = [r for r in responses(h.take(ALICE), "INVITE") if r.status >= 300]
    h.deliver(non_2xx_ack_text(a_invite, final), ALICE)
    h.deliver(response_text(b_invite, 200, to_tag="bob", body=SDP, contact=BOB), BOB)
    h.deliver(response_text(cancel, 200, to_tag="bob"), BOB)
    (bye,) = requests(h.take(BOB), "BYE")
    h.deliver(response_text(bye, 200, to_tag="bob"), BOB)
    h.advance(40.0)

    assert [c.reason for c in h.recorder.ended] == ["bye", "bye", "caller_cancelled"]
    h.recorder.started.clear()
    h.recorder.ended.clear()
    controller = h.controller
    assert (controller.active, controller.sessions, controller.by_key, len(h.endpoint.transactions)) == (0, {}, {}, 0)
    assert controller.next_deadline() is None and h.endpoint.next_deadline() is None
    assert live_call_parts() == before
