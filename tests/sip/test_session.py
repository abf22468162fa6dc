"""The INVITE session (pbx.sip.session) on its own: messages in, what it
sends and reports out, time as a number. No sockets, no transaction layer:
a recording wire stands for it, keyed as the layer keys client transactions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pbx.sip.address import Peer
from pbx.sip.dialog import Dialog
from pbx.sip.events import TransactionKey
from pbx.sip.message import Header, Request, Response, make_request, make_response
from pbx.sip.parser import parse_message
from pbx.sip.session import (
    AckIn,
    AckTimedOut,
    Answered,
    ByeIn,
    CancelReceived,
    Confirmed,
    Credentials,
    Failed,
    IntervalRaised,
    InviteSession,
    Provisional,
    RequestIn,
    ResponseIn,
    SessionState,
)
from pbx.sip.transaction import client_key

PBX = ("192.0.2.1", 5060)
CALLEE = Peer("udp", "192.0.2.20", 5062)
CALLER = Peer("udp", "192.0.2.10", 5062)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


@dataclass
class RecordingWire:
    requests: list[Request] = field(default_factory=list)
    responses: list[tuple[TransactionKey, Response]] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    cancels: list[tuple[TransactionKey, tuple[Header, ...]]] = field(default_factory=list)

    def send_request(self, session: InviteSession, request: Request, dest: Peer) -> TransactionKey:
        self.requests.append(request)
        return client_key(request)

    def send_response(self, key: TransactionKey, response: Response) -> None:
        self.responses.append((key, response))

    def send_ack(self, data: bytes, dest: Peer) -> None:
        self.acks.append(data)

    def cancel(self, key: TransactionKey, headers: tuple[Header, ...]) -> None:
        self.cancels.append((key, headers))

    def statuses(self) -> list[int]:
        return [response.status for _, response in self.responses]


def counter() -> Callable[[int], str]:
    """Tokens for branches: 0001, 0002 ... (randomness is injected)."""
    numbers = iter(range(1, 10_000))
    return lambda size: f"{next(numbers):0{2 * size}x}"


def uac(wire: RecordingWire, *, ack_at_once: bool = True, credentials: Credentials | None = None,
        random: Callable[[], float] | None = None) -> InviteSession:
    dialog = Dialog(call_id="b-leg-1", local_tag="pbx", remote_tag=None, local_uri="<sip:1001@pbx.example.com>",
                    remote_uri="<sip:1002@pbx.example.com>", remote_target="sip:1002@192.0.2.20:5062")
    return InviteSession.uac(dialog=dialog, dest=CALLEE, wire=wire, local=lambda _: PBX,
                             headers=[("content-type", "application/sdp")], body=SDP, tokens=counter(),
                             ack_at_once=ack_at_once, credentials=credentials, random=random)


def reply(request: Request, status: int, *, tag: str | None = "callee", headers: list[Header] | None = None,
          body: bytes = b"") -> Response:
    extra = [("contact", "<sip:1002@192.0.2.20:5062>"), *(headers or [])] if status < 300 else (headers or [])
    return make_response(request, status, to_tag=tag, headers=extra, body=body)


def incoming_invite(*, cseq: int = 1, body: bytes = SDP, uri: str = "sip:1002@pbx.example.com") -> Request:
    return make_request("INVITE", uri, [
        ("via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKcaller1"), ("max-forwards", "70"),
        ("from", "<sip:1001@pbx.example.com>;tag=caller"), ("to", "<sip:1002@pbx.example.com>"),
        ("call-id", "a-leg"), ("cseq", f"{cseq} INVITE"), ("contact", "<sip:1001@192.0.2.10:5062>"),
    ], body)


def uas(wire: RecordingWire) -> InviteSession:
    invite = incoming_invite()
    key = TransactionKey(True, "z9hG4bKcaller1", "192.0.2.10:5062", "INVITE")
    return InviteSession.uas(request=invite, key=key, source=CALLER, local_tag="pbx", wire=wire,
                             local=lambda _: PBX, tokens=counter())


def in_dialog(method: str, cseq: int, *, branch: str) -> tuple[TransactionKey, Request]:
    request = make_request(method, "sip:192.0.2.1:5060", [
        ("via", f"SIP/2.0/UDP 192.0.2.10:5062;branch={branch}"), ("max-forwards", "70"),
        ("from", "<sip:1001@pbx.example.com>;tag=caller"), ("to", "<sip:1002@pbx.example.com>;tag=pbx"),
        ("call-id", "a-leg"), ("cseq", f"{cseq} {method}"),
    ], SDP if method in ("INVITE", "UPDATE") else b"")
    return TransactionKey(True, branch, "192.0.2.10:5062", method), request


# ---------------------------------------------------------------- UAC


def test_uac_early_then_answered_acks_the_2xx_and_acks_a_retransmission_the_same() -> None:
    wire = RecordingWire()
    session = uac(wire)
    (invite,) = wire.requests
    assert invite.method == "INVITE" and invite.get("contact") == "<sip:192.0.2.1:5060>"
    assert session.on_response(session.invite_key, reply(invite, 100, tag=None), 0.0) == []
    ringing = reply(invite, 180)
    assert session.on_response(session.invite_key, ringing, 0.1) == [Provisional(ringing)]
    assert session.state is SessionState.EARLY and session.dialog.remote_tag == "callee"
    ok = reply(invite, 200, body=SDP)
    assert session.on_response(session.invite_key, ok, 0.2) == [Answered(ok)]
    (ack,) = wire.acks
    parsed = parse_message(ack)
    assert isinstance(parsed, Request) and parsed.method == "ACK"
    assert (parsed.cseq.number, parsed.uri, parsed.to.tag) == (invite.cseq.number, "sip:1002@192.0.2.20:5062",
                                                                "callee")
    # §13.2.2.4: the 2xx again (our ACK was lost): the very same ACK, no event.
    assert session.on_response(session.invite_key, ok, 0.7) == []
    assert session.on_stray(ok) == []
    assert wire.acks == [ack, ack, ack]


def test_uac_delayed_offer_acks_only_when_told_with_the_answer() -> None:
    wire = RecordingWire()
    session = uac(wire, ack_at_once=False)
    invite = wire.requests[0]
    session.on_response(session.invite_key, reply(invite, 200, body=SDP), 0.0)
    assert wire.acks == []
    session.ack(b"answer-sdp", [("content-type", "application/sdp")])
    session.ack(b"again")  # once only
    (ack,) = wire.acks
    parsed = parse_message(ack)
    assert parsed.body == b"answer-sdp" and parsed.get("content-type") == "application/sdp"


def test_uac_answers_one_challenge_then_gives_up_on_a_second() -> None:
    wire = RecordingWire()
    answers: list[Header | None] = [("authorization", 'Digest username="x"'), None]
    session = uac(wire, credentials=lambda response, invite: answers.pop(0))
    first = wire.requests[0]
    assert session.on_response(session.invite_key, reply(first, 401), 0.0) == []
    second = wire.requests[1]
    # §22.2: same Call-ID and From tag, the next CSeq, a new branch.
    assert (second.call_id, second.from_.tag) == (first.call_id, first.from_.tag)
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.branch != first.top_via.branch
    assert second.get("authorization") == 'Digest username="x"' and second.body == first.body
    refused = reply(second, 407)
    assert session.on_response(session.invite_key, refused, 0.1) == [Failed(407, "auth_refused", refused)]
    assert len(wire.requests) == 2 and session.state is SessionState.TERMINATED


def test_uac_retries_a_422_once_with_the_min_se_asked_for() -> None:
    wire = RecordingWire()
    session = uac(wire)
    first = wire.requests[0]
    too_small = reply(first, 422, headers=[("min-se", "1800")])
    assert session.on_response(session.invite_key, too_small, 0.0) == [IntervalRaised(1800)]
    second = wire.requests[1]
    assert second.cseq.number == first.cseq.number + 1
    assert (second.get("session-expires"), second.get("min-se")) == ("1800", "1800")
    again = reply(second, 422, headers=[("min-se", "3600")])
    assert session.on_response(session.invite_key, again, 0.1) == [Failed(422, "rejected", again)]


def test_uac_timeout_and_transport_failure_are_408_and_503() -> None:
    wire = RecordingWire()
    session = uac(wire)
    assert session.on_timeout(session.invite_key) == [Failed(408, "timeout")]
    other = uac(RecordingWire())
    assert other.on_transport_failed(other.invite_key) == [Failed(503, "transport")]


def test_uac_cancelled_then_answered_is_acked_and_byed() -> None:
    wire = RecordingWire()
    session = uac(wire)
    invite = wire.requests[0]
    reason = ("reason", 'SIP;cause=200;text="Call completed elsewhere"')
    session.cancel([reason])
    session.cancel([reason])  # once
    assert wire.cancels == [(session.invite_key, (reason,))]
    ok = reply(invite, 200, body=SDP)
    assert session.on_response(session.invite_key, ok, 0.0) == [Answered(ok)]
    session.hangup()
    assert [parse_message(a).method for a in wire.acks] == ["ACK"]  # type: ignore[union-attr]
    assert [r.method for r in wire.requests] == ["INVITE", "BYE"]
    assert session.settled


def test_uac_second_2xx_from_another_callee_gets_its_own_ack_and_bye() -> None:
    wire = RecordingWire()
    session = uac(wire)
    invite = wire.requests[0]
    session.on_response(session.invite_key, reply(invite, 200, tag="first"), 0.0)
    assert session.on_response(session.invite_key, reply(invite, 200, tag="second"), 0.1) == []
    acks = [parse_message(a) for a in wire.acks]
    assert [a.to.tag for a in acks] == ["first", "second"]
    bye = wire.requests[-1]
    assert bye.method == "BYE" and bye.to.tag == "second"
    assert session.dialog.remote_tag == "first"


# ---------------------------------------------------------------- UAS


def test_uas_answers_with_its_tag_and_contact_and_holds_a_bye_until_the_ack() -> None:
    wire = RecordingWire()
    session = uas(wire)
    session.respond(180)
    session.respond(200, body=SDP)
    session.respond(486)  # after the final: ignored
    assert wire.statuses() == [180, 200]
    for _, response in wire.responses:
        assert response.to.tag == "pbx" and response.get("contact") == "<sip:192.0.2.1:5060>"
    session.hangup([("reason", "SIP;cause=200")])
    assert wire.requests == []  # §15: no BYE before the ACK of our 2xx
    _, ack = in_dialog("ACK", 1, branch="z9hG4bKack")
    assert session.on_ack(ack) == []
    (bye,) = wire.requests
    assert bye.method == "BYE" and bye.uri == "sip:1001@192.0.2.10:5062" and bye.get("reason") == "SIP;cause=200"


def test_uas_ack_confirms_and_a_missing_ack_is_reported() -> None:
    wire = RecordingWire()
    session = uas(wire)
    session.respond(200, body=SDP)
    _, ack = in_dialog("ACK", 1, branch="z9hG4bKack")
    assert session.on_ack(ack) == [Confirmed(ack)]
    assert session.on_ack(ack) == []
    lost = uas(RecordingWire())
    lost.respond(200, body=SDP)
    assert lost.on_timeout(lost.invite_key) == [AckTimedOut()]


def test_uas_cancel_before_the_final_is_reported_and_after_it_has_no_effect() -> None:
    wire = RecordingWire()
    session = uas(wire)
    session.respond(180)
    cancel_key, cancel = in_dialog("CANCEL", 1, branch="z9hG4bKcaller1")
    assert session.on_cancel(session.invite_key, cancel_key, cancel) == [CancelReceived()]
    session.respond(487)
    assert wire.statuses() == [180, 200, 487]
    answered = uas(RecordingWire())
    answered.respond(200)
    assert answered.on_cancel(answered.invite_key, cancel_key, cancel) == []


# ---------------------------------------------------------------- in the dialog


def confirmed_uas(wire: RecordingWire) -> InviteSession:
    session = uas(wire)
    session.respond(200, body=SDP)
    session.on_ack(in_dialog("ACK", 1, branch="z9hG4bKack")[1])
    wire.responses.clear()
    return session


def test_in_dialog_request_is_reported_answered_and_its_ack_reported() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    key, reinvite = in_dialog("INVITE", 2, branch="z9hG4bKre1")
    assert session.on_request(key, reinvite) == [RequestIn(key, reinvite)]
    session.answer(key, reinvite, 200, body=SDP)
    _, ack = in_dialog("ACK", 2, branch="z9hG4bKre1ack")
    assert session.on_ack(ack) == [AckIn(ack)]
    assert session.on_ack(ack) == []


def test_old_cseq_gets_500() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    key, info = in_dialog("INFO", 1, branch="z9hG4bKold")
    assert session.on_request(key, info) == []
    assert wire.statuses() == [500]


def test_glare_an_offer_while_ours_is_pending_gets_491() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    session.send("INVITE", body=SDP, ref="ours")
    key, reinvite = in_dialog("INVITE", 2, branch="z9hG4bKglare")
    assert session.on_request(key, reinvite) == []
    assert wire.statuses() == [491]


def test_an_offer_while_the_previous_is_unanswered_gets_500_with_retry_after() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    first_key, first = in_dialog("INVITE", 2, branch="z9hG4bKfirst")
    session.on_request(first_key, first)
    key, update = in_dialog("UPDATE", 3, branch="z9hG4bKsecond")
    assert session.on_request(key, update) == []
    (response,) = [r for _, r in wire.responses]
    assert response.status == 500 and response.get("retry-after") is not None


@pytest.mark.parametrize(("role", "low", "high"), [("uac", 2.1, 4.0), ("uas", 0.0, 2.0)])
def test_our_reinvite_meeting_491_goes_again_after_the_section_14_1_backoff(role: str, low: float,
                                                                             high: float) -> None:
    for draw in (0.0, 0.999):
        wire = RecordingWire()
        if role == "uac":
            session = uac(wire, random=lambda: draw)
            session.on_response(session.invite_key, reply(wire.requests[0], 200), 0.0)
        else:
            session = InviteSession.uas(request=incoming_invite(), key=TransactionKey(True, "b", "h", "INVITE"),
                                        source=CALLER, local_tag="pbx", wire=wire, local=lambda _: PBX,
                                        random=lambda: draw)
            session.respond(200)
        sent = session.send("INVITE", body=SDP, ref="hold", retry_glare=True)
        assert session.on_response(client_key(sent), reply(sent, 491), 10.0) == []
        due = session.deadline()
        assert due is not None and low - 1e-9 <= due - 10.0 <= high + 1e-9
        assert session.on_timer(due - 0.01) == []
        count = len(wire.requests)
        assert session.on_timer(due) == []
        again = wire.requests[count]
        assert again.method == "INVITE" and again.cseq.number == sent.cseq.number + 1 and again.body == SDP
        ok = reply(again, 200)
        assert session.on_response(client_key(again), ok, due + 0.1) == [ResponseIn("hold", ok, 200)]


def test_bye_with_a_request_pending_answers_it_487() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    key, reinvite = in_dialog("INVITE", 2, branch="z9hG4bKre")
    session.on_request(key, reinvite)
    bye_key, bye = in_dialog("BYE", 3, branch="z9hG4bKbye")
    assert session.on_request(bye_key, bye) == [ByeIn(bye_key, bye)]
    assert [(k, r.status) for k, r in wire.responses] == [(key, 487)]
    session.hangup()  # the peer hung up: we send no BYE
    assert wire.requests == []


def test_a_timed_out_in_dialog_request_reports_408() -> None:
    wire = RecordingWire()
    session = confirmed_uas(wire)
    sent = session.send("INFO", ref="info")
    assert session.on_timeout(client_key(sent)) == [ResponseIn("info", None, 408)]


# ---------------------------------------------------------------- TLS and SIPS (RFC 5630)


@pytest.mark.parametrize(("request_uri", "contact"), [
    ("sips:1002@pbx.example.com", "<sips:192.0.2.1:5061>"),
    ("sip:1002@pbx.example.com", "<sip:192.0.2.1:5061;transport=tls>"),
])
def test_uas_over_tls_answers_with_a_sips_contact_only_for_a_sips_request(request_uri: str, contact: str) -> None:
    wire = RecordingWire()
    invite = incoming_invite(uri=request_uri)
    session = InviteSession.uas(request=invite, key=TransactionKey(True, "z9hG4bKcaller1", "h", "INVITE"),
                                source=Peer("tls", "192.0.2.10", 50000, 7), local_tag="pbx", wire=wire,
                                local=lambda _: ("192.0.2.1", 5061), tokens=counter())
    session.respond(200, body=SDP)
    [(_, response)] = wire.responses
    assert response.get("contact") == contact


@pytest.mark.parametrize(("target", "via", "contact"), [
    ("sips:1002@192.0.2.20:5061", "SIP/2.0/TLS 192.0.2.1:5061;", "<sips:192.0.2.1:5061>"),
    ("sip:1002@192.0.2.20:5061;transport=tls", "SIP/2.0/TLS 192.0.2.1:5061;", "<sip:192.0.2.1:5061;transport=tls>"),
])
def test_uac_over_tls_sends_a_tls_via_and_a_sips_contact_to_a_sips_target(target: str, via: str,
                                                                         contact: str) -> None:
    wire = RecordingWire()
    dialog = Dialog(call_id="b-leg-2", local_tag="pbx", remote_tag=None, local_uri="<sip:1001@pbx.example.com>",
                    remote_uri="<sip:1002@pbx.example.com>", remote_target=target)
    InviteSession.uac(dialog=dialog, dest=Peer("tls", "192.0.2.20", 5061), wire=wire,
                      local=lambda _: ("192.0.2.1", 5061), headers=[], body=SDP, tokens=counter())
    [invite] = wire.requests
    assert (invite.get("via") or "").startswith(via)
    assert invite.get("contact") == contact


def test_uas_copies_the_record_route_of_the_invite_into_responses_that_set_up_the_dialog() -> None:
    """§12.1.1: every Record-Route, in order, in the 18x and 2xx; without
    them the caller's ACK and BYE go round the proxy (a cluster's edge)."""
    wire = RecordingWire()
    route = ["<sip:192.0.2.5;transport=tcp;r2=on;lr>", "<sip:192.0.2.5;r2=on;lr>"]
    invite = make_request("INVITE", "sip:1002@pbx.example.com", [
        ("record-route", route[0]), ("record-route", route[1]),
        *[(name, value) for name, value in incoming_invite().headers],
    ], SDP)
    key = TransactionKey(True, "z9hG4bKcaller1", "192.0.2.10:5062", "INVITE")
    session = InviteSession.uas(request=invite, key=key, source=CALLER, local_tag="pbx", wire=wire,
                                local=lambda _: PBX, tokens=counter())
    session.respond(100)
    session.respond(180)
    session.respond(200, body=SDP)
    trying, ringing, ok = (response for _, response in wire.responses)
    assert trying.get_all("record-route") == []
    assert ringing.get_all("record-route") == route and ok.get_all("record-route") == route
    # A re-INVITE's 2xx changes no route set: nothing copied.
    _, ack = in_dialog("ACK", 1, branch="z9hG4bKack")
    session.on_ack(ack)
    reinvite_key, reinvite = in_dialog("INVITE", 2, branch="z9hG4bKre1")
    reinvite = make_request("INVITE", reinvite.uri, [("record-route", route[0]), *reinvite.headers], SDP)
    session.on_request(reinvite_key, reinvite)
    session.answer(reinvite_key, reinvite, 200, body=SDP)
    assert wire.responses[-1][1].get_all("record-route") == []
