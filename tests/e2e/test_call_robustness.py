"""What UDP does to a call, played out exactly with hand-driven user agents
(tests/e2e/sipua.py) registered as extensions of a real `pbx serve`: late,
repeated, crossing and lost messages (RFC 3261 §13, §15, §17; RFC 6026),
and in-dialog requests relayed between the legs (UPDATE, INFO; RFC 3311
in the early dialog too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import parse_message

from .harness import AGENT_EXTENSIONS, Agents, Pbx, rows_once
from .sipua import UaDialog, sdp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DIALPLAN = "domain: pbx.example.com\n" + AGENT_EXTENSIONS


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


@dataclass
class Answered:
    a: UaDialog       # Alice's dialog with the PBX
    b: UaDialog       # Bob's dialog with the PBX
    b_invite: Request
    b_ok: bytes       # Bob's 200, to retransmit


def is_request(method: str, call_id: str | None = None) -> Callable[[Message], bool]:
    def match(message: Message) -> bool:
        return isinstance(message, Request) and message.method == method and (
            call_id is None or message.call_id == call_id)
    return match


def is_response(status: int, method: str, call_id: str) -> Callable[[Message], bool]:
    def match(message: Message) -> bool:
        return (isinstance(message, Response) and message.status == status and message.cseq.method == method
                and message.call_id == call_id)
    return match


def ring_and_answer(agents: Agents, *, offer: bool = True, ack: bool = True) -> Answered:
    """Alice calls Bob, Bob rings and answers; Alice ACKs unless ``ack`` is false."""
    a = agents.alice.invite("2002", body=sdp(40000) if offer else b"")
    b_invite = agents.bob.expect_request("INVITE")
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 180, to_tag=b.local_tag)
    b_ok = agents.bob.respond(b_invite, 200, to_tag=b.local_tag, body=sdp(42000))
    ok = a.expect_response(200, method="INVITE")
    a.confirm(ok)
    if offer:
        agents.bob.expect_request("ACK", call_id=b.call_id)  # offer in the INVITE: ACKed at once
    if ack:
        a.ack(body=b"" if offer else sdp(40000))
        if not offer:
            assert agents.bob.expect_request("ACK", call_id=b.call_id).body == sdp(40000)
    return Answered(a, b, b_invite, b_ok)


def hang_up(agents: Agents, call: Answered) -> None:
    call.a.send("BYE")
    bye = call.b.expect_request("BYE")
    agents.bob.respond(bye, 200)
    call.a.expect_response(200, method="BYE")


def answered_rows(pbx: Pbx) -> list[dict[str, str]]:
    """Alice's calls to Bob, once one of them has ended."""
    def ours(row: dict[str, str]) -> bool:
        return row["caller_number"] == "2001" and row["dialed_number"] == "2002"

    rows_once(pbx.cdrs, lambda row: ours(row) and bool(row["ended_at"]), 1)
    return [row for row in pbx.cdrs() if ours(row)]


# --------------------------------------------------------------- in-dialog relay


def test_update_and_info_relayed_both_ways_with_their_responses(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents)
    # Alice -> Bob: UPDATE with a new offer; Bob's answer comes back.
    call.a.send("UPDATE", body=sdp(40002))
    update = call.b.expect_request("UPDATE")
    assert update.body == sdp(40002)
    assert update.to.tag == call.b.local_tag and update.from_.tag == call.b.remote_tag == call.b_invite.from_.tag
    agents.bob.respond(update, 200, body=sdp(42002))
    ok = call.a.expect_response(200, method="UPDATE")
    assert ok.body == sdp(42002) and ok.has("contact")
    # Bob -> Alice: INFO, and a refusal relayed as it is.
    call.b.send("INFO", headers=["Content-Type: application/dtmf-relay"], body=b"Signal=5\r\nDuration=160\r\n")
    info = call.a.expect_request("INFO")
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    assert info.get("content-type") == "application/dtmf-relay"
    agents.alice.respond(info, 200)
    call.b.expect_response(200, method="INFO")
    call.b.send("UPDATE", body=sdp(42004))
    update = call.a.expect_request("UPDATE")
    agents.alice.respond(update, 488, "Not Acceptable Here")
    assert call.b.expect_response(method="UPDATE").status == 488
    # Alice -> Bob INFO answered 415: the status comes back unchanged.
    call.a.send("INFO", headers=["Content-Type: text/plain"], body=b"hello")
    info = call.b.expect_request("INFO")
    agents.bob.respond(info, 415, "Unsupported Media Type")
    assert call.a.expect_response(method="INFO").status == 415
    hang_up(agents, call)
    row = pbx.cdr_for("2001", "2002")
    assert (row["disposition"], row["hangup_side"]) == ("ANSWERED", "caller")


def test_early_dialog_update_relayed_both_ways(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(40000))
    b_invite = agents.bob.expect_request("INVITE")
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 183, "Session Progress", to_tag=b.local_tag, body=sdp(42000))
    progress = a.expect_response(183, method="INVITE")
    assert progress.body == sdp(42000)
    a.confirm(progress)  # Alice's early dialog with the PBX
    # Caller -> callee in the early dialog (RFC 3311 §5.1).
    a.send("UPDATE", body=sdp(40010))
    update = b.expect_request("UPDATE")
    assert update.to.tag == b.local_tag and update.body == sdp(40010)
    agents.bob.respond(update, 200, body=sdp(42010))
    ok = a.expect_response(200, method="UPDATE")
    assert ok.body == sdp(42010)
    # Callee -> caller in the early dialog.
    b.send("UPDATE", body=sdp(42020))
    update = a.expect_request("UPDATE")
    assert update.to.tag == a.local_tag and update.from_.tag == a.remote_tag and update.body == sdp(42020)
    agents.alice.respond(update, 200, body=sdp(40020))
    assert b.expect_response(200, method="UPDATE").body == sdp(40020)
    # Then the answer, as usual.
    agents.bob.respond(b_invite, 200, to_tag=b.local_tag, body=sdp(42030))
    a.expect_response(200, method="INVITE")
    a.ack()
    b.expect_request("ACK")
    hang_up(agents, Answered(a, b, b_invite, b""))
    assert pbx.cdr_for("2001", "2002")["disposition"] == "ANSWERED"


def test_early_update_refused_by_callee_then_call_fails_normally(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(40000))
    b_invite = agents.bob.expect_request("INVITE")
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 180, to_tag=b.local_tag)
    a.confirm(a.expect_response(180, method="INVITE"))
    a.send("UPDATE", body=sdp(40010))
    update = b.expect_request("UPDATE")
    agents.bob.respond(update, 491, "Request Pending")
    assert a.expect_response(method="UPDATE").status == 491
    agents.bob.respond(b_invite, 486, to_tag=b.local_tag)
    b.expect_request("ACK")
    a.expect_response(486, method="INVITE")
    row = pbx.cdr_for("2001", "2002")
    assert row["disposition"] == "BUSY"


# --------------------------------------------------------------- reordering


def test_180_after_200_answers_normally(pbx: Pbx, agents: Agents) -> None:
    a = agents.alice.invite("2002", body=sdp(40000))
    b_invite = agents.bob.expect_request("INVITE")
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 200, to_tag=b.local_tag, body=sdp(42000))
    agents.bob.respond(b_invite, 180, to_tag=b.local_tag)  # overtaken by the 200
    ok = a.expect_response(200, method="INVITE")
    assert ok.body == sdp(42000)
    a.confirm(ok)
    a.ack()
    b.expect_request("ACK")
    # The late 180 is not relayed after the answer, and nothing fails.
    agents.alice.absent(is_response(180, "INVITE", a.call_id), 0.5)
    hang_up(agents, Answered(a, b, b_invite, b""))
    rows = answered_rows(pbx)
    assert [r["disposition"] for r in rows] == ["ANSWERED"]


@pytest.mark.parametrize("offer", [True, False], ids=["offer_in_invite", "delayed_offer"])
def test_ack_after_bye_ends_the_call_cleanly(pbx: Pbx, agents: Agents, offer: bool) -> None:
    call = ring_and_answer(agents, offer=offer, ack=False)
    call.a.send("BYE")  # overtakes its ACK
    if not offer:
        # Bob's 2xx must be ACKed before the BYE (§13.2.2.4), answer or not.
        ack = call.b.expect_request("ACK")
        assert ack.cseq.number == call.b_invite.cseq.number
    bye = call.b.expect_request("BYE")
    agents.bob.respond(bye, 200)
    call.a.expect_response(200, method="BYE")
    call.a.ack()  # the late ACK
    # It stops the 2xx retransmissions and starts nothing new.
    agents.alice.drain(0.3)
    agents.alice.absent(lambda m: True, 1.5)
    agents.bob.absent(lambda m: isinstance(m, Request), 0.2)
    rows = answered_rows(pbx)
    assert [(r["disposition"], r["hangup_side"]) for r in rows] == [("ANSWERED", "caller")]


def test_callee_bye_before_callers_ack_waits_for_it(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents, ack=False)
    call.b.send("BYE")
    call.b.expect_response(200, method="BYE")
    # §15: no BYE to Alice before she ACKed the 2xx; she gets the 2xx again.
    agents.alice.absent(is_request("BYE"), 1.2)
    assert any(isinstance(m, Response) and m.status == 200 and m.cseq.method == "INVITE"
               for m in agents.alice.drain(0.0))
    call.a.ack()
    bye = call.a.expect_request("BYE")
    agents.alice.respond(bye, 200)
    row = pbx.cdr_for("2001", "2002")
    assert (row["disposition"], row["hangup_side"]) == ("ANSWERED", "callee")


def test_bye_crossing_bye(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents)
    call.a.send("BYE")
    call.b.send("BYE")
    assert call.a.expect_response(method="BYE").status in (200, 481)
    assert call.b.expect_response(method="BYE").status in (200, 481)
    # A BYE from the PBX that crossed Bob's gets the 481 a phone would send.
    for ua in (agents.alice, agents.bob):
        for message in ua.drain(1.0):
            if isinstance(message, Request) and message.method == "BYE":
                ua.respond(message, 481)
    agents.alice.absent(lambda m: isinstance(m, Request), 1.0)
    agents.bob.absent(lambda m: isinstance(m, Request), 0.1)
    rows = answered_rows(pbx)
    assert len(rows) == 1 and rows[0]["disposition"] == "ANSWERED"
    assert rows[0]["hangup_side"] in ("caller", "callee")


# --------------------------------------------------------------- retransmission


def test_invite_retransmitted_after_answer_makes_no_second_call(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents, ack=False)
    agents.alice.send(call.a.invite)  # the caller missed the 200 and repeats its INVITE
    # RFC 6026 §7.1: absorbed; the 2xx itself keeps coming until the ACK.
    again = call.a.expect_response(200, method="INVITE", timeout=3.0)
    assert again.to.tag == call.a.remote_tag
    call.a.ack()
    agents.alice.send(call.a.invite)  # and once more after the ACK
    agents.alice.drain(0.5)
    agents.alice.absent(lambda m: isinstance(m, Response) and m.cseq.method == "INVITE", 1.0)
    invites = [r.message for r in agents.bob.log if isinstance(r.message, Request) and r.message.method == "INVITE"]
    assert {m.call_id for m in invites} == {call.b.call_id}
    assert {m.top_via.branch for m in invites} == {call.b_invite.top_via.branch}
    hang_up(agents, call)
    rows = answered_rows(pbx)
    assert [r["disposition"] for r in rows] == ["ANSWERED"]


def test_callee_2xx_retransmitted_gets_the_same_ack_again(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents)  # Bob got the ACK already; pretend it was lost
    first = [r.message for r in agents.bob.log if isinstance(r.message, Request) and r.message.method == "ACK"]
    agents.bob.send(call.b_ok)
    again = call.b.expect_request("ACK")
    assert again.cseq.number == call.b_invite.cseq.number
    assert again.top_via.branch == first[-1].top_via.branch  # the very same ACK
    # A re-INVITE's 2xx, retransmitted, is ACKed again as well.
    call.a.send("INVITE", body=sdp(40004))
    reinvite = call.b.expect_request("INVITE")
    reinvite_ok = agents.bob.respond(reinvite, 200, body=sdp(42004))
    ok = call.a.expect_response(200, method="INVITE")
    call.a.send("ACK", cseq=ok.cseq.number)
    ack = call.b.expect_request("ACK")
    assert ack.cseq.number == reinvite.cseq.number
    agents.bob.send(reinvite_ok)
    repeated = call.b.expect_request("ACK")
    assert repeated.cseq.number == reinvite.cseq.number and repeated.top_via.branch == ack.top_via.branch
    hang_up(agents, call)
    assert [r["disposition"] for r in answered_rows(pbx)] == ["ANSWERED"]


def test_delayed_offer_2xx_retransmitted_waits_for_the_callers_answer(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents, offer=False, ack=False)
    agents.bob.send(call.b_ok)
    # No answer from Alice yet, so no ACK to Bob: it would have to carry one.
    agents.bob.absent(is_request("ACK"), 0.8)
    call.a.ack(body=sdp(40000))
    ack = call.b.expect_request("ACK")
    assert ack.body == sdp(40000)
    agents.bob.send(call.b_ok)
    assert call.b.expect_request("ACK").body == sdp(40000)
    hang_up(agents, call)


def test_cancel_of_a_reinvite_is_relayed_and_its_487_comes_back(pbx: Pbx, agents: Agents) -> None:
    call = ring_and_answer(agents)
    sent = call.a.send("INVITE", body=sdp(40006))
    reinvite = call.b.expect_request("INVITE")
    agents.bob.respond(reinvite, 100)
    # Alice gives up on her re-INVITE (§9.1: same Request-URI, Call-ID, From,
    # To, Via branch and CSeq number as the INVITE).
    origin = parse_message(sent)
    assert isinstance(origin, Request)
    lines = [f"CANCEL {origin.uri} SIP/2.0", f"Via: {origin.get('via')}", "Max-Forwards: 70",
             f"From: {origin.get('from')}", f"To: {origin.get('to')}", f"Call-ID: {origin.call_id}",
             f"CSeq: {origin.cseq.number} CANCEL", "Content-Length: 0"]
    agents.alice.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert call.a.expect_response(200, method="CANCEL").to.tag == origin.to.tag
    cancel = call.b.expect_request("CANCEL")
    assert cancel.cseq.number == reinvite.cseq.number and cancel.top_via.branch == reinvite.top_via.branch
    agents.bob.respond(cancel, 200)
    agents.bob.respond(reinvite, 487)
    assert call.a.expect_response(487, method="INVITE").cseq.number == origin.cseq.number
    call.b.expect_request("ACK")  # the PBX's client transaction ACKs the 487 (§17.1.1.3)
    # The call itself goes on.
    hang_up(agents, call)
    assert [r["disposition"] for r in answered_rows(pbx)] == ["ANSWERED"]
