"""Transfers the PBX performs (pbx/calls/transfer.py), on the in-memory wire.

Alice (2001) calls Bob (2002), Bob answers; Carol (2003) is the target.
Every message is checked the way a phone would see it: the REFER's 202,
NOTIFYs with sipfrag bodies, the offer-less INVITE to Carol, the re-INVITE
giving Alice Carol's offer, the ACK giving Carol Alice's answer, the BYE
to the transferor, and the CDR.
"""

from __future__ import annotations

from dataclasses import replace

from pbx.routing.classes_of_service import ClassOfService
from pbx.routing.dialplan import CallSettings, Department, Extension
from pbx.sip.address import Peer
from pbx.sip.message import Message, Request

from .harness import (
    ALICE,
    BOB,
    DOMAIN,
    PBX,
    SDP,
    AnsweredCall,
    Harness,
    ack_text,
    answer_call,
    from_alice,
    from_bob,
    in_dialog_text,
    requests,
    response_text,
    responses,
)

CAROL = Peer("udp", "127.0.0.1", 5074)
SDP_CAROL = SDP.replace(b"o=- 1 1", b"o=carol 9 9").replace(b"40000", b"40400")
SDP_ALICE_ANSWER = SDP.replace(b"o=- 1 1", b"o=alice 5 6")


def harness(*, bob_may_call_carol: bool = True) -> Harness:
    h = Harness(CallSettings())
    plan = h.plan
    extensions = dict(plan.extensions)
    extensions["2003"] = Extension(number="2003", name="Carol", department="ops", password="carol-secret-2003")
    classes = {}
    if not bob_may_call_carol:
        classes["no_internal"] = ClassOfService(key="no_internal", deny=frozenset({"internal"}))
        extensions["2002"] = replace(extensions["2002"], class_of_service="no_internal")
    h.plan = replace(plan, extensions=extensions, classes_of_service=classes,
                     departments={"ops": Department(key="ops", name="Ops")})
    h.controller.use_plan(h.plan)
    h.register("2003", CAROL)
    return h


def connected(h: Harness) -> AnsweredCall:
    call = answer_call(h, a_headers=[], b_headers=[])
    h.deliver(ack_text(call), ALICE)
    h.take(ALICE)
    h.take(BOB)
    return call


def notify_bodies(messages: list[Message]) -> list[tuple[bytes, str]]:
    return [(m.body, m.get("subscription-state") or "") for m in requests(messages, "NOTIFY")]


def answer_all(h: Harness, messages: list[Message], peer: Peer, method: str, status: int = 200) -> None:
    for request in requests(messages, method):
        h.deliver(response_text(request, status, to_tag="x"), peer)


def refer(call: AnsweredCall, target: str, cseq: int = 1) -> bytes:
    return from_bob("REFER", call.b_invite, cseq, headers=[f"Refer-To: <sip:{target}@{DOMAIN}>",
                                                           f"Referred-By: <sip:2002@{DOMAIN}>"])


def test_blind_transfer_by_the_callee_connects_caller_and_target_and_releases_the_transferor() -> None:
    h = harness()
    call = connected(h)
    h.deliver(refer(call, "2003"), BOB)
    to_bob = h.take(BOB)
    assert [r.status for r in responses(to_bob, "REFER")] == [202]
    assert notify_bodies(to_bob) == [(b"SIP/2.0 100 Trying\r\n", "active;expires=60")]
    notify = requests(to_bob, "NOTIFY")[0]
    assert notify.get("event") == "refer" and notify.get("content-type") == "message/sipfrag;version=2.0"
    answer_all(h, to_bob, BOB, "NOTIFY")

    (to_carol,) = requests(h.take(CAROL), "INVITE")
    assert to_carol.body == b""  # delayed offer: Carol offers, Alice answers
    assert to_carol.from_.uri == f"sip:2001@{DOMAIN}"  # Carol sees who is transferred to her
    h.deliver(response_text(to_carol, 180, to_tag="carol"), CAROL)
    assert notify_bodies(h.take(BOB)) == [(b"SIP/2.0 180 Ringing\r\n", "active;expires=60")]
    h.deliver(response_text(to_carol, 200, to_tag="carol", body=SDP_CAROL, contact=CAROL), CAROL)

    (reinvite,) = requests(h.take(ALICE), "INVITE")
    assert reinvite.body == SDP_CAROL
    h.deliver(response_text(reinvite, 200, to_tag="alice", body=SDP_ALICE_ANSWER, contact=ALICE), ALICE)
    assert [m.method for m in requests(h.take(ALICE), "ACK")] == ["ACK"]
    (ack,) = requests(h.take(CAROL), "ACK")
    assert ack.body == SDP_ALICE_ANSWER
    to_bob = h.take(BOB)
    assert notify_bodies(to_bob) == [(b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")]
    assert [m.method for m in to_bob if isinstance(m, Request)] == ["NOTIFY", "BYE"]
    assert h.recorder.ended == []

    # Alice and Carol talk; Alice hangs up: Carol gets the BYE.
    h.deliver(from_alice("BYE", call.a_ok, 3), ALICE)
    assert [r.status for r in responses(h.take(ALICE), "BYE")] == [200]
    assert [m.method for m in requests(h.take(CAROL), "BYE")] == ["BYE"]
    (ended,) = h.recorder.ended
    assert ended.transfers == ["blind 2002 -> 2003"]
    assert ended.destination == "2003"
    assert str(ended.disposition) == "ANSWERED"


def test_transfer_to_a_number_the_transferor_may_not_dial_is_refused_and_the_call_stays() -> None:
    h = harness(bob_may_call_carol=False)
    call = connected(h)
    h.deliver(refer(call, "2003"), BOB)
    to_bob = h.take(BOB)
    assert [r.status for r in responses(to_bob, "REFER")] == [202]
    assert notify_bodies(to_bob) == [(b"SIP/2.0 100 Trying\r\n", "active;expires=60"),
                                     (b"SIP/2.0 403 Forbidden\r\n", "terminated;reason=noresource")]
    assert h.take(CAROL) == []
    assert h.take(ALICE) == []
    # The call is as it was: a re-INVITE still passes, the BYE ends it.
    h.deliver(from_alice("BYE", call.a_ok, 3), ALICE)
    assert [m.method for m in requests(h.take(BOB), "BYE")] == ["BYE"]
    (ended,) = h.recorder.ended
    assert ended.transfers == [] and ended.destination == "2002"


def test_blind_transfer_by_the_caller_makes_the_callee_the_a_side() -> None:
    h = harness()
    call = connected(h)
    h.deliver(from_alice("REFER", call.a_ok, 3, headers=[f"Refer-To: <sip:2003@{DOMAIN}>"]), ALICE)
    assert [r.status for r in responses(h.take(ALICE), "REFER")] == [202]
    (to_carol,) = requests(h.take(CAROL), "INVITE")
    assert to_carol.from_.uri == f"sip:2002@{DOMAIN}"
    h.deliver(response_text(to_carol, 200, to_tag="carol", body=SDP_CAROL, contact=CAROL), CAROL)
    (reinvite,) = requests(h.take(BOB), "INVITE")
    assert reinvite.body == SDP_CAROL
    h.deliver(response_text(reinvite, 200, to_tag="bob", body=SDP, contact=BOB), BOB)
    assert [m.method for m in requests(h.take(ALICE), "BYE")] == ["BYE"]
    assert requests(h.take(CAROL), "ACK")[0].body == SDP
    # Bob hangs up: Carol gets the BYE, the one CDR row ends.
    h.deliver(from_bob("BYE", call.b_invite, 1), BOB)
    assert [m.method for m in requests(h.take(CAROL), "BYE")] == ["BYE"]
    (ended,) = h.recorder.ended
    assert ended.transfers == ["blind 2001 -> 2003"]


def test_target_not_answering_leaves_the_call_as_it_was() -> None:
    h = harness()
    call = connected(h)
    h.deliver(refer(call, "2003"), BOB)
    h.take(BOB)
    (to_carol,) = requests(h.take(CAROL), "INVITE")
    h.deliver(response_text(to_carol, 486, to_tag="carol"), CAROL)
    assert notify_bodies(h.take(BOB))[-1] == (b"SIP/2.0 486 Busy Here\r\n", "terminated;reason=noresource")
    assert requests(h.take(ALICE), "INVITE") == []
    h.deliver(from_bob("BYE", call.b_invite, 2), BOB)
    assert [m.method for m in requests(h.take(ALICE), "BYE")] == ["BYE"]


def test_a_refer_without_refer_to_gets_400_and_one_during_a_transfer_491() -> None:
    h = harness()
    call = connected(h)
    h.deliver(from_bob("REFER", call.b_invite, 1), BOB)
    assert [r.status for r in responses(h.take(BOB), "REFER")] == [400]
    h.deliver(refer(call, "2003", cseq=2), BOB)
    h.deliver(refer(call, "2003", cseq=3), BOB)
    assert [r.status for r in responses(h.take(BOB), "REFER")] == [202, 491]


def test_attended_transfer_with_replaces_joins_caller_and_target_and_ends_the_consultation() -> None:
    h = harness()
    call = connected(h)
    # Bob consults Carol: a call of his own (Call-ID c2), answered.
    consult = _bob_calls_carol(h)
    replaces = f"{consult.call_id}%3Bto-tag%3D{consult.pbx_tag}%3Bfrom-tag%3Dbobc"
    h.deliver(from_bob("REFER", call.b_invite, 1, headers=[
        f"Refer-To: <sip:2003@{DOMAIN}?Replaces={replaces}>"]), BOB)
    early = h.take(BOB)
    assert [r.status for r in responses(early, "REFER")] == [202]
    # Carol is asked for a fresh offer in her own dialog; Alice gets it.
    (fetch,) = requests(h.take(CAROL), "INVITE")
    assert fetch.call_id == consult.carol_call_id and fetch.body == b""
    h.deliver(response_text(fetch, 200, to_tag="carol", body=SDP_CAROL, contact=CAROL), CAROL)
    (reinvite,) = requests(h.take(ALICE), "INVITE")
    assert reinvite.body == SDP_CAROL
    h.deliver(response_text(reinvite, 200, to_tag="alice", body=SDP_ALICE_ANSWER, contact=ALICE), ALICE)
    assert requests(h.take(CAROL), "ACK")[0].body == SDP_ALICE_ANSWER
    to_bob = [*early, *h.take(BOB)]
    # Both of Bob's dialogs end: the consultation's at once, the transferred call's once Alice has Carol.
    assert sorted(m.call_id for m in requests(to_bob, "BYE")) == sorted([consult.call_id, call.b_invite.call_id])
    assert notify_bodies(to_bob)[-1] == (b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    consultation = [c for c in h.recorder.ended if c.a_call_id == "c2"]
    assert len(consultation) == 1 and consultation[0].reason == "transferred"
    h.deliver(from_alice("BYE", call.a_ok, 3), ALICE)
    assert [m.call_id for m in requests(h.take(CAROL), "BYE")] == [consult.carol_call_id]
    main = [c for c in h.recorder.ended if c.a_call_id == "c1"][0]
    assert main.transfers == ["attended 2002 -> 2003"]
    assert main.linked_call == consultation[0].uuid and consultation[0].linked_call == main.uuid


class Consultation:
    def __init__(self, call_id: str, pbx_tag: str, carol_call_id: str) -> None:
        self.call_id, self.pbx_tag, self.carol_call_id = call_id, pbx_tag, carol_call_id


def _bob_calls_carol(h: Harness) -> Consultation:
    return bob_calls(h, "2003", CAROL, SDP_CAROL, from_tag="bobc")


def bob_calls(h: Harness, number: str, callee: Peer, answer: bytes, *, from_tag: str) -> Consultation:
    """Bob calls ``number`` (Call-ID c2), which answers at ``callee`` with
    ``answer``; Bob ACKs. His From tag is ``from_tag``."""
    from pbx.sip import digest

    from .harness import PASSWORDS

    def invite(cseq: int, authorization: str | None = None) -> bytes:
        lines = [
            f"INVITE sip:{number}@{PBX[0]}:{PBX[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {BOB.host}:{BOB.port};branch=z9hG4bKb{cseq};rport",
            "Max-Forwards: 70",
            f"From: <sip:2002@{DOMAIN}>;tag={from_tag}",
            f"To: <sip:{number}@{DOMAIN}>",
            "Call-ID: c2",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:2002@{BOB.host}:{BOB.port}>",
            *([f"Proxy-Authorization: {authorization}"] if authorization else []),
            "Content-Type: application/sdp",
            f"Content-Length: {len(SDP)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + SDP

    h.deliver(invite(1), BOB)
    challenge = [r for r in responses(h.take(BOB), "INVITE") if r.status == 407][0]
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    authorization = digest.answer_challenge(value, username="2002", password=PASSWORDS["2002"], method="INVITE",
                                            uri=f"sip:{number}@{PBX[0]}:{PBX[1]}", cnonce="c", nc=1)
    h.deliver(invite(2, authorization), BOB)
    (to_callee,) = requests(h.take(callee), "INVITE")
    h.deliver(response_text(to_callee, 200, to_tag="callee", body=answer, contact=callee), callee)
    ok = [r for r in responses(h.take(BOB), "INVITE") if r.status == 200][0]
    assert ok.to.tag is not None
    ack = in_dialog_text("ACK", target=f"sip:{PBX[0]}:{PBX[1]}", call_id="c2", from_=f"<sip:2002@{DOMAIN}>;tag={from_tag}",
                         to=ok.get("to") or "", cseq=2, source=BOB)
    h.deliver(ack, BOB)
    h.take(callee)
    return Consultation("c2", ok.to.tag, to_callee.call_id)
