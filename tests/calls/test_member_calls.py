"""Calls to short-number group members in the call controller, on the
in-memory wire of tests/trunks/test_trunk_calls.py (real SIP messages, a
hand-held clock, no sockets): the desk's contacts and a trunk leg to the
mobile, together or desk first, first answer wins, the caller's short
number shown on the desk, the trunk's caller ID on the mobile leg, and how
the call ends when legs fail.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pbx.calls.call import Call
from pbx.registrar.bindings import Binding
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.sip.address import Peer
from pbx.sip.message import Request, Response, make_request, make_response
from tests.trunks.test_trunk_calls import (
    GW1,
    GW2,
    PHONE,
    Wire,
    answer_200,
    authenticated_call,
    final_to_phone,
    provider_challenge,
    provider_invite,
)

DESK_BINH = Peer("udp", "192.0.2.61", 5062)
DESK_CHAU = Peer("udp", "192.0.2.62", 5062)
SOFTPHONE_CHAU = Peer("tcp", "192.0.2.63", 5064)

PLAN = """\
domain: pbx.example.com
registrar: {auth_algorithms: [MD5]}
departments:
  sales: {name: Sales, class_of_service: outside, caller_id: "02873000100"}
  lobby: {name: Lobby}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1002: {name: Binh Tran, department: sales, password: binh-secret-1002}
  1003: {name: Chau Le, department: sales, password: chau-secret-1003, ring_timeout: 40}
  1099: {name: Lobby, department: lobby, password: lobby-secret-1099}
number_plans:
  vietnam:
    - {pattern: "0ZXXXXXXX.", class: national}
classes_of_service:
  outside: {allow: [national]}
trunks:
  viettel:
    gateways:
      - {host: 198.51.100.1, port: 5070}
      - {host: 198.51.100.2, port: 5072}
    username: "02873000000"
    password: trunk-secret
    domain: sip.provider.example
    invite_timeout: 4
    caller_id: "02873000000"
    rewrites:
      - {match: "0", strip: 1, prepend: "+84"}
routes:
  - {name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}
groups:
  office:
    members:
      "11": {name: An, extension: "1001"}
      "12": {name: Binh, extension: "1002", mobile: "0912000002"}
      "13": {name: Chau, extension: "1003", mobile: "0912000003", ring: desk_first, desk_seconds: 10}
      "14": {name: Dung, mobile: "0912000004"}
      "19": {name: Lobby, extension: "1099"}
inbound:
  "+842873000612": {member: office/12}
  "+842873000614": {member: office/14}
"""


@pytest.fixture
def plan(tmp_path: Path) -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return load_dialplan(path)


@pytest.fixture
def wire(plan: Dialplan) -> Wire:
    return Wire(plan)


def register(wire: Wire, number: str, peer: Peer) -> None:
    wire.bindings.put(Binding(aor=number, contact=f"sip:{number}@{peer.host}:{peer.port}",
                              expires_at=time.time() + 3600, call_id=f"reg-{peer.host}", cseq=1, source=peer))


def invites(wire: Wire, peer: Peer) -> list[Request]:
    return wire.requests_to(peer, "INVITE")


def ringing(invite: Request, tag: str) -> Response:
    return make_response(invite, 180, to_tag=tag)


def answer(wire: Wire, invite: Request, peer: Peer, tag: str) -> None:
    wire.deliver(make_response(invite, 200, to_tag=tag, headers=[("contact", f"<sip:x@{peer.host}:{peer.port}>")],
                               body=b"v=0\r\n"), peer)


def only_call(wire: Wire) -> Call:
    (call,) = wire.recorder.started
    return call


# ---------------------------------------------------------------- together


def test_short_number_rings_desk_and_mobile_together_and_the_desk_wins(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "12")
    (desk,) = invites(wire, DESK_BINH)
    (mobile,) = invites(wire, GW1)
    # The desk sees the caller's short number; the provider sees our caller ID
    # and the mobile rewritten for the trunk.
    assert desk.from_.uri == "sip:11@pbx.example.com"
    assert desk.from_.display == "11 An Nguyen"
    assert desk.uri == "sip:1002@192.0.2.61:5062"
    assert mobile.uri == "sip:+84912000002@sip.provider.example"
    assert mobile.from_.uri == "sip:02873000100@sip.provider.example"
    wire.deliver(ringing(mobile, "prov"), GW1)
    answer(wire, desk, DESK_BINH, "binh")
    assert final_to_phone(wire).status == 200
    assert wire.requests_to(GW1, "CANCEL"), "the mobile leg is cancelled once the desk answered"
    call = only_call(wire)
    assert call.member is not None
    assert (call.member.short_number, call.member.label) == ("12", "office/12 Binh")
    assert (call.resolved_number, call.destination, call.call_class) == ("1002", "1002", "internal")


def test_the_mobile_answers_after_the_providers_challenge(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "12")
    first = invites(wire, GW1)[0]
    wire.take(GW1)
    wire.deliver(provider_challenge(first), GW1)
    second = [m for m in wire.take(GW1) if isinstance(m, Request) and m.method == "INVITE"][0]
    assert second.get("proxy-authorization")
    wire.deliver(ringing(second, "prov"), GW1)
    (desk,) = invites(wire, DESK_BINH)
    wire.deliver(ringing(desk, "binh"), DESK_BINH)
    wire.deliver(answer_200(second), GW1)
    assert final_to_phone(wire).status == 200
    assert wire.requests_to(DESK_BINH, "CANCEL")
    call = only_call(wire)
    assert (call.resolved_number, call.destination, call.call_class) == ("0912000002", "+84912000002", "national")
    assert call.outbound is not None and call.winner is not None and call.winner.trunk == "viettel"


def test_a_long_number_dialled_in_the_group_rings_just_that(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "1002")
    (desk,) = invites(wire, DESK_BINH)
    assert desk.from_.uri == "sip:11@pbx.example.com"   # still an in-group call
    assert not invites(wire, GW1)
    call = only_call(wire)
    assert call.member is not None and call.member.short_number is None
    authenticated_call(wire, "0912000002")
    assert len(invites(wire, DESK_BINH)) == 1 and len(invites(wire, GW1)) == 1


# ---------------------------------------------------------------- desk first


def test_desk_first_adds_the_mobile_after_desk_seconds_without_cancelling_the_desk(wire: Wire) -> None:
    register(wire, "1003", DESK_CHAU)
    register(wire, "1003", SOFTPHONE_CHAU)
    authenticated_call(wire, "13")
    assert len(invites(wire, DESK_CHAU)) == 1 and len(invites(wire, SOFTPHONE_CHAU)) == 1
    wire.deliver(ringing(invites(wire, DESK_CHAU)[0], "chau"), DESK_CHAU)
    wire.advance(9.9)
    assert not invites(wire, GW1)
    wire.advance(0.2)
    (mobile,) = invites(wire, GW1)
    assert mobile.uri == "sip:+84912000003@sip.provider.example"
    assert not wire.requests_to(DESK_CHAU, "CANCEL") and not wire.requests_to(SOFTPHONE_CHAU, "CANCEL")
    # Both still ring; the softphone answers and everything else is cancelled.
    wire.deliver(ringing(mobile, "prov"), GW1)
    answer(wire, invites(wire, SOFTPHONE_CHAU)[0], SOFTPHONE_CHAU, "soft")
    assert final_to_phone(wire).status == 200
    assert wire.requests_to(GW1, "CANCEL") and wire.requests_to(DESK_CHAU, "CANCEL")


def test_desk_first_rings_the_mobile_at_once_when_the_extension_is_not_registered(wire: Wire) -> None:
    authenticated_call(wire, "13")
    assert len(invites(wire, GW1)) == 1
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]


def test_desk_first_busy_desk_moves_on_to_the_mobile_now(wire: Wire) -> None:
    register(wire, "1003", DESK_CHAU)
    authenticated_call(wire, "13")
    wire.deliver(make_response(invites(wire, DESK_CHAU)[0], 486, to_tag="busy"), DESK_CHAU)
    (mobile,) = invites(wire, GW1)
    wire.deliver(ringing(mobile, "prov"), GW1)
    wire.advance(20.0)   # the desk_seconds timer finds the mobile already ringing
    assert {invite.call_id for invite in invites(wire, GW1)} == {mobile.call_id}
    assert not invites(wire, GW2)


def test_desk_first_declined_desk_ends_the_call(wire: Wire) -> None:
    register(wire, "1003", DESK_CHAU)
    authenticated_call(wire, "13")
    wire.deliver(make_response(invites(wire, DESK_CHAU)[0], 603, to_tag="no"), DESK_CHAU)
    assert final_to_phone(wire).status == 603
    wire.advance(20.0)
    assert not invites(wire, GW1)


def test_desk_first_rings_for_desk_seconds_plus_the_ring_timeout(wire: Wire) -> None:
    register(wire, "1003", DESK_CHAU)
    authenticated_call(wire, "13")
    wire.advance(10.1)
    wire.deliver(ringing(invites(wire, GW1)[0], "prov"), GW1)
    wire.advance(39.5)   # ring_timeout 40 s, counted from when the mobile joined
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]
    wire.advance(1.0)
    # (the 480 is sent again until the phone ACKs it, §17.2.1)
    assert {r.status for r in wire.responses_to(PHONE) if r.status >= 200} == {480}
    call = only_call(wire)
    assert (call.disposition, call.reason) == ("NO_ANSWER", "ring_timeout")


# ---------------------------------------------------------------- legs that fail


def test_a_mobile_that_is_busy_leaves_the_desk_ringing(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "12")
    wire.deliver(make_response(invites(wire, GW1)[0], 486, to_tag="busy"), GW1)
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]
    assert not invites(wire, GW2)   # a callee's 486 is no reason to fail over
    answer(wire, invites(wire, DESK_BINH)[0], DESK_BINH, "binh")
    assert final_to_phone(wire).status == 200


def test_every_leg_failing_ends_with_the_most_telling_status(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "12")
    wire.deliver(make_response(invites(wire, GW1)[0], 503, to_tag="a"), GW1)
    wire.deliver(make_response(invites(wire, GW2)[0], 503, to_tag="b"), GW2)   # both gateways down
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]
    wire.deliver(make_response(invites(wire, DESK_BINH)[0], 486, to_tag="busy"), DESK_BINH)
    assert final_to_phone(wire).status == 486
    call = only_call(wire)
    assert (call.disposition, call.hangup_side) == ("BUSY", "callee")


def test_gateways_down_and_no_desk_is_unavailable(wire: Wire) -> None:
    authenticated_call(wire, "14")
    wire.deliver(make_response(invites(wire, GW1)[0], 503, to_tag="a"), GW1)
    wire.deliver(make_response(invites(wire, GW2)[0], 500, to_tag="b"), GW2)
    assert final_to_phone(wire).status == 480
    call = only_call(wire)
    assert (call.disposition, call.reason) == ("UNAVAILABLE", "member_unreachable")


def test_an_unregistered_member_without_a_mobile_is_not_registered(wire: Wire) -> None:
    authenticated_call(wire, "19")
    assert final_to_phone(wire).status == 480
    assert not invites(wire, GW1)
    assert only_call(wire).reason == "not_registered"


def test_the_mobile_leg_is_dropped_when_the_caller_may_not_call_it(wire: Wire) -> None:
    # The lobby has no class of service: internal calls only. Its call to
    # Binh's short number rings his desk and never his mobile.
    register(wire, "1002", DESK_BINH)
    authenticated_call(wire, "12", user="1099", password="lobby-secret-1099")
    (desk,) = invites(wire, DESK_BINH)
    assert desk.from_.uri == "sip:19@pbx.example.com"
    assert not invites(wire, GW1)


def test_the_caller_cancels_while_desk_and_mobile_ring(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    invite = authenticated_call(wire, "12")
    wire.deliver(ringing(invites(wire, GW1)[0], "prov"), GW1)
    wire.deliver(ringing(invites(wire, DESK_BINH)[0], "binh"), DESK_BINH)
    cancel = make_request("CANCEL", invite.uri, [
        ("via", invite.get("via") or ""), ("max-forwards", "70"), ("from", invite.get("from") or ""),
        ("to", invite.get("to") or ""), ("call-id", invite.call_id), ("cseq", f"{invite.cseq.number} CANCEL")])
    wire.deliver(cancel, PHONE)
    assert wire.requests_to(GW1, "CANCEL") and wire.requests_to(DESK_BINH, "CANCEL")
    assert 487 in [r.status for r in wire.responses_to(PHONE)]
    wire.advance(60.0)
    assert len(wire.recorder.ended) == 1 and wire.controller.active == 0


# ---------------------------------------------------------------- inbound DIDs


def test_a_did_given_to_a_member_rings_their_desk_and_their_mobile(wire: Wire) -> None:
    register(wire, "1002", DESK_BINH)
    wire.deliver(provider_invite("+842873000612"), GW1)
    (desk,) = invites(wire, DESK_BINH)
    (mobile,) = invites(wire, GW1)
    # The desk sees the outside caller; the mobile leg goes out with Binh's
    # rights and our caller ID, to the number the dialplan names.
    assert desk.from_.uri == "sip:0912345678@pbx.example.com"
    assert mobile.uri == "sip:+84912000002@sip.provider.example"
    assert mobile.from_.uri == "sip:02873000100@sip.provider.example"
    wire.deliver(ringing(desk, "binh"), DESK_BINH)
    answer(wire, mobile, GW1, "prov")
    assert [r.status for r in wire.responses_to(GW1) if r.status >= 200 and r.cseq.method == "INVITE"] == [200]
    assert wire.requests_to(DESK_BINH, "CANCEL"), "the desk is cancelled once the mobile answered"
    call = only_call(wire)
    assert call.member is not None
    assert (call.member.short_number, call.member.label) == (None, "office/12 Binh")
    # Answered on the mobile: the record says so, with the class of that leg
    # (what the company pays for), as for a member call from inside.
    assert (call.trunk, call.call_class, call.resolved_number) == ("viettel", "national", "0912000002")


def test_a_did_given_to_a_member_without_an_extension_is_not_relayed_out(wire: Wire) -> None:
    # Dung has only a mobile: no extension lends rights to a call out, so a
    # caller from outside is not put through to it.
    wire.deliver(provider_invite("+842873000614"), GW1)
    assert not invites(wire, GW1)
    assert [r.status for r in wire.responses_to(GW1) if r.status >= 200] == [480]
    (call,) = wire.recorder.ended
    assert (call.disposition, call.reason) == ("REJECTED", "member_unreachable")
