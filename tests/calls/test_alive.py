"""Signs of life of an answered call for its CDR (the end of its row if the
process dies): in-dialog messages from either side, not timeouts, not before
the answer."""

from __future__ import annotations

from pbx.routing.dialplan import CallSettings

from .harness import (
    ALICE,
    BOB,
    WALL_EPOCH,
    Harness,
    ack_text,
    answer_call,
    from_alice,
    place_call,
    requests,
    response_text,
    responses,
)


def test_in_dialog_messages_are_signs_of_life_timeouts_are_not() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    assert h.recorder.alive == []  # the answer itself is in the row already

    h.advance(10.0)
    h.deliver(from_alice("INFO", call.a_ok, 3), ALICE)
    relayed = requests(h.take(BOB), "INFO")[0]
    h.deliver(response_text(relayed, 200, to_tag="bob"), BOB)
    assert [r.status for r in responses(h.take(ALICE), "INFO")] == [200]
    assert h.recorder.alive == [WALL_EPOCH + 10.0, WALL_EPOCH + 10.0]  # the request, then its answer

    h.advance(10.0)
    h.deliver(from_alice("INFO", call.a_ok, 4), ALICE)
    h.advance(40.0)  # Bob never answers: timer F, a 408 to Alice
    assert [r.status for r in responses(h.take(ALICE), "INFO")] == [408]
    assert h.recorder.alive == [WALL_EPOCH + 10.0, WALL_EPOCH + 10.0, WALL_EPOCH + 20.0]


def test_nothing_before_the_answer() -> None:
    h = Harness(CallSettings())
    place_call(h)
    invite = requests(h.take(BOB), "INVITE")[0]
    h.deliver(response_text(invite, 180, to_tag="bob"), BOB)
    h.advance(5.0)
    h.deliver(response_text(invite, 486, to_tag="bob"), BOB)
    assert h.recorder.alive == []
