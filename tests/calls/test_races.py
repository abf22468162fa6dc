"""SIP races in the call layer, on the in-memory wire with a hand-held clock.

Written against what the phones see on the wire (requests and responses to
each, their status, CSeq, tags) and the CDR the recorder gets, never the
controller's insides, so they hold for any controller that keeps RFC 3261:
forks that both answer (§13.2.2.4), CANCEL crossing a 2xx (§9.2), re-INVITE
glare (§14.1), BYE crossing a re-INVITE (§15), the 2xx retransmitted
until its ACK (§13.3.1.4), a lost ACK (§13.2.2.4), 422 and a retry (RFC
4028 §7.4), and a fork where one contact is busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from pbx.routing.dialplan import CallSettings
from pbx.sip.address import Peer
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import parse_message

from .harness import (
    ALICE,
    BOB,
    BOB_2,
    SDP,
    AnsweredCall,
    Harness,
    ack_text,
    answer_call,
    cancel_text,
    from_alice,
    from_bob,
    in_dialog_text,
    non_2xx_ack_text,
    place_call,
    requests,
    response_text,
    responses,
)

SDP_BOB_2 = SDP.replace(b"o=- 1 1", b"o=bob2 7 7")
SDP_TYPE = ["Content-Type: application/sdp"]


def finals(messages: list[Message], method: str = "INVITE") -> list[Response]:
    return [r for r in responses(messages, method) if r.status >= 200]


def statuses(messages: list[Message], method: str = "INVITE") -> list[int]:
    """Statuses of the responses to ``method``, 100 Trying left out (hop by hop)."""
    return [r.status for r in responses(messages, method) if r.status != 100]


def methods(messages: Sequence[Message]) -> list[str]:
    return [m.method for m in messages if isinstance(m, Request)]


def ended_as(h: Harness) -> tuple[str, str, str, int]:
    """The one ended call's disposition, hangup side, reason and status, as strings."""
    (call,) = h.recorder.ended
    return str(call.disposition), str(call.hangup_side), str(call.reason), int(call.hangup_status or 0)


def connected(h: Harness) -> AnsweredCall:
    """Alice calls Bob, Bob answers, Alice ACKs; what was sent is taken."""
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(ALICE)
    h.take(BOB)
    return call


def alice_hangs_up(h: Harness, ok: Response, cseq: int = 3) -> None:
    h.deliver(from_alice("BYE", ok, cseq), ALICE)
    assert statuses(h.take(ALICE), "BYE") == [200]


# ---------------------------------------------------------------- forks


@pytest.mark.parametrize("rang_first", [True, False], ids=["after-180", "without-180"])
def test_fork_both_answer_the_first_200_wins_the_second_is_acked_and_released(rang_first: bool) -> None:
    h = Harness(CallSettings())
    h.register("2002", BOB_2)
    place_call(h)
    (to_bob,) = requests(h.take(BOB), "INVITE")
    (to_bob_2,) = requests(h.take(BOB_2), "INVITE")
    if rang_first:
        h.deliver(response_text(to_bob, 180, to_tag="bob", contact=BOB), BOB)
        h.deliver(response_text(to_bob_2, 180, to_tag="bob2", contact=BOB_2), BOB_2)
    h.deliver(response_text(to_bob, 200, to_tag="bob", body=SDP, contact=BOB), BOB)
    # Bob's second phone answers too, before any CANCEL reached it.
    h.deliver(response_text(to_bob_2, 200, to_tag="bob2", body=SDP_BOB_2, contact=BOB_2), BOB_2)
    sent = h.take(BOB_2)
    for cancel in requests(sent, "CANCEL"):  # it crossed the 200: answered, no effect (§9.2)
        h.deliver(response_text(cancel, 200, to_tag="bob2"), BOB_2)
    # §13.2.2.4: the 2xx that lost is ACKed, then the session ended.
    released = [m for m in sent if isinstance(m, Request) and m.method != "CANCEL"]
    assert methods(released) == ["ACK", "BYE"]
    ack, bye = released
    assert (ack.call_id, ack.cseq.number, ack.to.tag) == (to_bob_2.call_id, to_bob_2.cseq.number, "bob2")
    assert (bye.call_id, bye.to.tag) == (to_bob_2.call_id, "bob2") and bye.cseq.number > to_bob_2.cseq.number
    h.deliver(response_text(bye, 200, to_tag="bob2"), BOB_2)

    to_alice = h.take(ALICE)
    (ok,) = finals(to_alice)
    assert ok.status == 200 and ok.body == SDP  # the first answer's, not the second's
    h.deliver(from_alice("ACK", ok, 2), ALICE)
    assert methods(h.take(BOB)) == ["ACK"]  # the winner is not disturbed
    h.advance(40.0)
    assert h.take(ALICE) == [] and h.take(BOB_2) == []  # no second 200, no BYE again
    alice_hangs_up(h, ok)
    assert len(h.recorder.started) == 1
    assert ended_as(h) == ("ANSWERED", "caller", "bye", 200)


def test_fork_one_busy_the_other_rings_and_answers() -> None:
    h = Harness(CallSettings())
    h.register("2002", BOB_2)
    place_call(h)
    (to_bob,) = requests(h.take(BOB), "INVITE")
    (to_bob_2,) = requests(h.take(BOB_2), "INVITE")
    h.deliver(response_text(to_bob, 486, to_tag="busy"), BOB)
    assert statuses(h.take(ALICE)) == []  # one busy contact does not end the fork
    h.deliver(response_text(to_bob_2, 180, to_tag="bob2", contact=BOB_2), BOB_2)
    h.deliver(response_text(to_bob_2, 200, to_tag="bob2", body=SDP_BOB_2, contact=BOB_2), BOB_2)
    to_alice = [r for r in responses(h.take(ALICE), "INVITE") if r.status != 100]
    assert [r.status for r in to_alice] == [180, 200]
    ringing, ok = to_alice
    assert ringing.to.tag == ok.to.tag and ok.body == SDP_BOB_2  # one dialog with Alice
    h.deliver(from_alice("ACK", ok, 2), ALICE)
    to_busy = h.take(BOB)
    assert methods(to_busy) == ["ACK"]  # §17.1.1.3; no CANCEL, no BYE for the busy contact
    assert [a.cseq.number for a in requests(to_busy, "ACK")] == [to_bob.cseq.number]
    alice_hangs_up(h, ok)
    assert ended_as(h) == ("ANSWERED", "caller", "bye", 200)
    (call,) = h.recorder.ended
    assert {leg.contact: leg.status for leg in call.legs} == {
        f"sip:2002@{BOB.host}:{BOB.port}": 486, f"sip:2002@{BOB_2.host}:{BOB_2.port}": 200}


# ---------------------------------------------------------------- CANCEL against 200


def cancelled_while_ringing(h: Harness) -> tuple[Request, Request]:
    """Alice calls, Bob rings, Alice cancels: the INVITE to Bob and the CANCEL
    that followed it."""
    a_invite = place_call(h)
    (b_invite,) = requests(h.take(BOB), "INVITE")
    h.deliver(response_text(b_invite, 180, to_tag="bob", contact=BOB), BOB)
    h.deliver(cancel_text(a_invite), ALICE)
    (cancel,) = requests(h.take(BOB), "CANCEL")
    to_alice = h.take(ALICE)
    assert statuses(to_alice, "CANCEL") == [200]
    (final,) = finals(to_alice)
    assert final.status == 487
    h.deliver(non_2xx_ack_text(a_invite, final), ALICE)
    # Bob answered before the CANCEL reached him: his 200 crosses it.
    h.deliver(response_text(b_invite, 200, to_tag="bob", body=SDP, contact=BOB), BOB)
    h.deliver(response_text(cancel, 200, to_tag="bob"), BOB)
    return b_invite, cancel


def test_cancel_crossing_the_callees_200_leaves_the_caller_with_487() -> None:
    h = Harness(CallSettings())
    cancelled_while_ringing(h)
    h.advance(40.0)
    assert statuses(h.take(ALICE)) == []  # never a 200 after the 487, nor the 487 again after the ACK
    assert ended_as(h) == ("CANCELLED", "caller", "caller_cancelled", 487)


def test_cancel_crossing_the_callees_200_acks_and_releases_the_callee() -> None:
    h = Harness(CallSettings())
    b_invite, _ = cancelled_while_ringing(h)
    sent = h.take(BOB)
    assert methods(sent) == ["ACK", "BYE"]  # §13.2.2.4, §15: a 2xx cannot be refused
    ack, bye = requests(sent, "ACK")[0], requests(sent, "BYE")[0]
    assert (ack.call_id, ack.cseq.number, ack.to.tag) == (b_invite.call_id, b_invite.cseq.number, "bob")
    assert (bye.call_id, bye.to.tag) == (b_invite.call_id, "bob")


def test_cancel_after_the_200_was_relayed_has_no_effect() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])
    h.take(BOB)
    # Alice sent CANCEL before she saw the 200 (§9.2: 200 for it, no effect).
    h.deliver(cancel_text(call.a_invite), ALICE)
    to_alice = h.take(ALICE)
    assert statuses(to_alice, "CANCEL") == [200]
    assert 487 not in statuses(to_alice)
    h.deliver(ack_text(call), ALICE)
    h.advance(40.0)
    assert set(methods(h.take(BOB))) <= {"ACK"}  # neither CANCEL nor BYE
    assert requests(h.take(ALICE), "BYE") == [] and h.recorder.ended == []
    alice_hangs_up(h, call.a_ok)
    assert ended_as(h) == ("ANSWERED", "caller", "bye", 200)


# ---------------------------------------------------------------- re-INVITE glare


@dataclass
class Phone:
    """A phone's UA core, enough for glare (§14.1): a re-INVITE received
    while its own is pending gets 491, otherwise 200; finals to its own
    re-INVITE are ACKed."""

    peer: Peer
    tag: str
    own: bytes
    answers: list[Response] = field(default_factory=list)
    acks_received: list[Request] = field(default_factory=list)
    answered_with: dict[int, int] = field(default_factory=dict)
    """CSeq of a re-INVITE the PBX sent it -> the status it answered."""

    @property
    def pending(self) -> bool:
        return not self.answers

    def handle(self, h: Harness, messages: list[Message]) -> None:
        own = parse_message(self.own)
        assert isinstance(own, Request)
        for message in messages:
            if isinstance(message, Request) and message.method == "INVITE":
                status = 491 if self.pending else 200
                self.answered_with[message.cseq.number] = status
                h.deliver(response_text(message, status, to_tag=self.tag, body=SDP if status == 200 else b"",
                                        contact=self.peer), self.peer)
            elif isinstance(message, Request) and message.method == "ACK":
                self.acks_received.append(message)
            elif isinstance(message, Response) and message.cseq == own.cseq and message.status >= 200:
                if not self.answers:
                    ack = non_2xx_ack_text(self.own, message) if message.status >= 300 else in_dialog_text(
                        "ACK", target=own.uri, call_id=own.call_id, from_=own.get("from") or "",
                        to=message.get("to") or "", cseq=own.cseq.number, source=self.peer)
                    h.deliver(ack, self.peer)
                self.answers.append(message)


def test_reinvite_glare_gives_each_side_a_final_answer_and_leaves_nothing_hanging() -> None:
    h = Harness(CallSettings())
    call = connected(h)
    contact_a, contact_b = (f"Contact: <sip:{p.host}:{p.port}>" for p in (ALICE, BOB))
    alice = Phone(ALICE, "alice", from_alice("INVITE", call.a_ok, 3, headers=[contact_a, *SDP_TYPE], body=SDP))
    bob = Phone(BOB, "bob", from_bob("INVITE", call.b_invite, 1, headers=[contact_b, *SDP_TYPE], body=SDP))
    # Both send at once: each re-INVITE is on the wire before the other arrives.
    h.deliver(alice.own, ALICE)
    h.deliver(bob.own, BOB)
    for _ in range(4):
        alice.handle(h, h.take(ALICE))
        bob.handle(h, h.take(BOB))
    for phone in (alice, bob):
        # One final answer (retransmissions aside), the other side's 491 or
        # one the PBX gave itself; at most one of the two re-INVITEs succeeds.
        assert len({r.status for r in phone.answers}) == 1, phone.answers
        assert phone.answers[0].status in (200, 491)
        # Every 491 the phone gave was ACKed (§17.1.1.3).
        refused = sorted(cseq for cseq, status in phone.answered_with.items() if status == 491)
        assert sorted(a.cseq.number for a in phone.acks_received if a.cseq.number in refused) == refused
    assert 491 in (alice.answers[0].status, bob.answers[0].status)
    h.advance(40.0)
    # Nothing left running: no retransmission after the ACKs, no 408, no BYE.
    assert h.take(ALICE) == [] and h.take(BOB) == []
    assert h.recorder.ended == []


# ---------------------------------------------------------------- BYE against re-INVITE


def bye_crossing_reinvite(h: Harness) -> tuple[AnsweredCall, bytes, list[Message]]:
    """Alice re-INVITEs; before Bob answers it, Bob hangs up and then
    answers the relayed re-INVITE 481 (§15: his dialog is gone). Returns
    the call, Alice's re-INVITE and what Alice was sent."""
    call = connected(h)
    reinvite = from_alice("INVITE", call.a_ok, 3, headers=[f"Contact: <sip:{ALICE.host}:{ALICE.port}>", *SDP_TYPE],
                          body=SDP)
    h.deliver(reinvite, ALICE)
    (relayed,) = requests(h.take(BOB), "INVITE")
    h.deliver(from_bob("BYE", call.b_invite, 1), BOB)
    assert statuses(h.take(BOB), "BYE") == [200]
    h.deliver(response_text(relayed, 481, to_tag="bob"), BOB)
    assert [a.cseq.number for a in requests(h.take(BOB), "ACK")] == [relayed.cseq.number]
    to_alice = h.take(ALICE)
    for bye in requests(to_alice, "BYE"):
        h.deliver(response_text(bye, 200, to_tag="alice"), ALICE)
    return call, reinvite, to_alice


def test_bye_crossing_a_reinvite_ends_the_call_on_the_callees_side() -> None:
    h = Harness(CallSettings())
    _, _, to_alice = bye_crossing_reinvite(h)
    assert len(requests(to_alice, "BYE")) == 1
    assert ended_as(h) == ("ANSWERED", "callee", "bye", 200)


def test_bye_crossing_a_reinvite_answers_the_pending_reinvite() -> None:
    h = Harness(CallSettings())
    _, reinvite, to_alice = bye_crossing_reinvite(h)
    h.advance(1.0)
    to_alice += h.take(ALICE)
    # §13.3.1: every INVITE gets a final response (one; over UDP it is
    # retransmitted until the ACK); 487 as §15.1.2 has it for requests
    # pending when a dialog ends, or Bob's 481 relayed.
    ((status, cseq),) = {(r.status, r.cseq.number) for r in finals(to_alice)}
    final = finals(to_alice)[0]
    assert status >= 300 and cseq == 3
    h.deliver(non_2xx_ack_text(reinvite, final), ALICE)
    h.advance(40.0)
    assert h.take(ALICE) == [] and h.take(BOB) == []


# ---------------------------------------------------------------- 2xx and ACK


def test_2xx_is_retransmitted_t1_doubling_to_t2_until_the_ack() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])  # the 200 goes to Alice at t = 0
    h.advance(20.0)
    h.deliver(ack_text(call), ALICE)
    h.advance(40.0)
    sent = [(at, m) for at, port, m in h.timeline
            if port == ALICE.port and isinstance(m, Response) and m.status == 200 and m.cseq.method == "INVITE"]
    # §13.3.1.4: T1, doubling up to T2; the ACK at t = 20 stops it.
    assert [at for at, _ in sent] == pytest.approx([0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5])
    assert {(m.to.tag, m.cseq.number) for _, m in sent} == {(call.a_ok.to.tag, 2)}
    assert requests(h.take(ALICE), "BYE") == [] and h.recorder.ended == []  # timer L did not end it


def test_lost_ack_the_callees_retransmitted_200_gets_the_same_ack_again() -> None:
    h = Harness(CallSettings())
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    (first,) = requests(h.take(BOB), "ACK")
    ok = response_text(call.b_invite, 200, to_tag="bob", body=SDP, contact=BOB)  # as answer_call sent it
    # Bob never saw the ACK: his 200 again on his §13.3.1.4 schedule (T1 doubling to T2, 64*T1 in all).
    sent_at = 0.0
    for at in (0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5):
        h.advance(at - sent_at)
        sent_at = at
        h.deliver(ok, BOB)
        (again,) = requests(h.take(BOB), "ACK")
        assert (again.call_id, again.cseq, again.top_via.branch, again.to.tag) == (
            first.call_id, first.cseq, first.top_via.branch, first.to.tag), at
    assert first.cseq.number == call.b_invite.cseq.number
    assert methods(h.take(BOB)) == [] and statuses(h.take(ALICE)) == []  # nothing else, for anyone
    assert h.recorder.ended == []


# ---------------------------------------------------------------- 422


def test_422_from_the_callee_is_retried_once_with_its_min_se_and_the_caller_sees_only_the_200() -> None:
    h = Harness(CallSettings(session_expires=600))
    place_call(h, a_headers=["Supported: timer"])
    (first,) = requests(h.take(BOB), "INVITE")
    assert first.get("session-expires") == "600"
    h.deliver(response_text(first, 422, to_tag="short", headers=["Min-SE: 1800"]), BOB)
    sent = h.take(BOB)
    assert methods(sent) == ["ACK", "INVITE"]
    ack, retry = sent[0], requests(sent, "INVITE")[0]
    assert isinstance(ack, Request) and ack.cseq.number == first.cseq.number
    # RFC 4028 §7.4, RFC 3261 §8.1.3.5: same Call-ID and From tag, next CSeq.
    assert (retry.call_id, retry.from_.tag) == (first.call_id, first.from_.tag)
    assert retry.cseq.number == first.cseq.number + 1 and retry.top_via.branch != first.top_via.branch
    session_expires = retry.get("session-expires") or ""
    assert int(session_expires.split(";")[0]) >= 1800 and retry.get("min-se") == "1800"
    assert retry.body == first.body and retry.to.tag is None
    h.deliver(response_text(retry, 200, to_tag="bob", headers=["Require: timer", "Session-Expires: 1800;refresher=uac"],
                            body=SDP, contact=BOB), BOB)
    (ok,) = [r for r in responses(h.take(ALICE), "INVITE") if r.status != 100]
    assert ok.status == 200  # never the 422
    h.deliver(from_alice("ACK", ok, 2), ALICE)
    assert [a.cseq.number for a in requests(h.take(BOB), "ACK")] == [retry.cseq.number]


def bob_2_ringing(h: Harness) -> tuple[Request, Request]:
    """Alice calls Bob's two phones; the second rings. Both INVITEs."""
    h.register("2002", BOB_2)
    place_call(h)
    (to_bob,) = requests(h.take(BOB), "INVITE")
    (to_bob_2,) = requests(h.take(BOB_2), "INVITE")
    h.deliver(response_text(to_bob_2, 180, to_tag="bob2", contact=BOB_2), BOB_2)
    return to_bob, to_bob_2


def test_the_answered_fork_cancels_the_others_as_completed_elsewhere() -> None:
    h = Harness(CallSettings())
    to_bob, to_bob_2 = bob_2_ringing(h)
    h.deliver(response_text(to_bob, 200, to_tag="bob", body=SDP, contact=BOB), BOB)
    (cancel,) = requests(h.take(BOB_2), "CANCEL")
    # RFC 3326: the phone that did not answer shows no missed call.
    assert cancel.get("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert cancel.cseq.number == to_bob_2.cseq.number and cancel.top_via.branch == to_bob_2.top_via.branch


def test_a_decline_on_one_fork_stops_the_others() -> None:
    h = Harness(CallSettings())
    to_bob, to_bob_2 = bob_2_ringing(h)
    h.deliver(response_text(to_bob, 603, to_tag="bob"), BOB)
    # §16.7: a 6xx ends the fork: the other phone stops ringing at once and
    # the caller hears the decline, not the other phone's eventual 487.
    (cancel,) = requests(h.take(BOB_2), "CANCEL")
    assert cancel.cseq.number == to_bob_2.cseq.number
    (final,) = finals(h.take(ALICE))
    assert final.status == 603
    h.deliver(response_text(to_bob_2, 487, to_tag="bob2"), BOB_2)
    assert finals(h.take(ALICE)) == []
    assert ended_as(h) == ("REJECTED", "callee", "declined", 603)
