"""Caps on one extension's outside calls in the call controller, on the
in-memory wire of tests/trunks/test_trunk_calls.py (real SIP messages, a
hand-held clock): a burst over the cap is refused 486 before anything
reaches the trunk, with a REJECTED CDR and a ``call_limit_hit`` line; the
rate cap says when to retry; internal calls, calls from the trunk and
emergency calls are not held back; a reload's caps apply to the next call;
and a call's slot comes back however the call ends.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from pbx.calls.controller import CallRecorder

from pbx.registrar.bindings import Binding
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.message import Request, Response, make_request, make_response
from pbx.sip.transaction import build_non_2xx_ack
from tests.trunks.test_trunk_calls import GW1, GW2, PBX, PHONE, Wire, answer_200, phone_invite, provider_invite

DESK = Peer("udp", "192.0.2.60", 5062)
"""Binh's (1002) desk phone."""
AN_DESK = Peer("udp", "192.0.2.61", 5062)
"""An's (1001) desk phone, besides the phone An calls from."""
CHAU_DESK = Peer("udp", "192.0.2.63", 5062)
NATIONAL = "0912345678"


def plan_text(simultaneous: int, per_minute: int) -> str:
    return f"""\
domain: pbx.example.com
registrar: {{auth_algorithms: [MD5]}}
calls: {{max_call_seconds: 300}}
departments:
  sales: {{name: Sales, class_of_service: outside}}
extensions:
  1001: {{name: An Nguyen, department: sales, password: an-secret-1001, max_calls: 3}}  # on two calls, a third still rings
  1002: {{name: Binh Tran, department: sales, password: binh-secret-1002}}
  1003: {{name: Chau Le, department: sales, password: chau-secret-1003}}
number_plans:
  vietnam:
    - {{pattern: "11[345]", class: emergency}}
    - {{pattern: "0ZXXXXXXX.", class: national}}
classes_of_service:
  outside:
    allow: [national]
    outside_calls: {{simultaneous: {simultaneous}, per_minute: {per_minute}}}
trunks:
  viettel:
    gateways:
      - {{host: 198.51.100.1, port: 5070}}
      - {{host: 198.51.100.2, port: 5072}}
    username: "02873000000"
    password: trunk-secret
    domain: sip.provider.example
    invite_timeout: 4
    rewrites:
      - {{match: "0", strip: 1, prepend: "+84"}}
routes:
  - {{name: vn-emergency, pattern: "11[345]", trunk: viettel}}
  - {{name: vn-national, pattern: "0ZXXXXXXX.", trunk: viettel}}
groups:
  office:
    members:
      "21": {{name: An, extension: "1001"}}
      "22": {{name: Binh, extension: "1002", mobile: "0912000002"}}
      "23": {{name: Chau, extension: "1003", mobile: "0912000003", ring: desk_first, desk_seconds: 10}}
      "24": {{name: Dung, mobile: "0912000004"}}
inbound:
  "+842873000100": {{extension: "1001"}}
"""


def make_plan(tmp_path: Path, simultaneous: int, per_minute: int) -> Dialplan:
    path = tmp_path / f"plan-{simultaneous}-{per_minute}.yaml"
    path.write_text(plan_text(simultaneous, per_minute))
    return load_dialplan(path)


class LimitWire(Wire):
    """The trunk tests' wire, telling a new INVITE to a gateway from a
    retransmission (the B leg's Call-ID is new)."""

    def __init__(self, plan: Dialplan, *, wall_clock: Callable[[], float] = time.time,
                 recorder: CallRecorder | None = None) -> None:
        super().__init__(plan, wall_clock=wall_clock, recorder=recorder)
        self.placed: set[str] = set()
        for number, desk in (("1001", AN_DESK), ("1002", DESK), ("1003", CHAU_DESK)):
            self.bindings.put(Binding(aor=number, contact=f"sip:{number}@{desk.host}:{desk.port}",
                                      expires_at=wall_clock() + 3600, call_id=f"reg-{number}", cseq=1,
                                      source=desk))

    def to_gateway(self, gateway: Peer = GW1) -> list[Request]:
        """Calls placed through ``gateway`` since the last look: their first INVITE."""
        new = []
        for message in self.take(gateway):
            if isinstance(message, Request) and message.method == "INVITE" and message.call_id not in self.placed:
                self.placed.add(message.call_id)
                new.append(message)
        return new


def make_wire(tmp_path: Path, simultaneous: int, per_minute: int) -> LimitWire:
    return LimitWire(make_plan(tmp_path, simultaneous, per_minute))


_ids = itertools.count(1)
PASSWORDS = {"1001": "an-secret-1001", "1002": "binh-secret-1002"}


def dial(wire: LimitWire, number: str, user: str = "1001") -> Request:
    """The phone calls ``number``: INVITE, 407, INVITE with credentials
    (the outbox keeps what other calls were sent)."""
    call_id = f"limits-{next(_ids)}"
    first = phone_invite(number, call_id=call_id, from_user=user)
    wire.deliver(first, PHONE)
    (challenge,) = [r for r in for_call(wire, call_id) if r.status == 407]
    wire.deliver(build_non_2xx_ack(first, challenge), PHONE)
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    answer = digest.answer_challenge(value, username=user, password=PASSWORDS[user], method="INVITE",
                                     uri=first.uri, cnonce="c0ffee", nc=1)
    second = phone_invite(number, cseq=2, call_id=call_id, auth=answer, from_user=user)
    wire.deliver(second, PHONE)
    return second


def for_call(wire: LimitWire, call_id: str) -> list[Response]:
    return [r for r in wire.responses_to(PHONE) if r.call_id == call_id]


def final(wire: LimitWire, invite: Request) -> Response | None:
    finals = [r for r in for_call(wire, invite.call_id) if r.status >= 200 and r.cseq == invite.cseq]
    return finals[0] if finals else None


def out(wire: LimitWire, number: str = NATIONAL, user: str = "1001") -> tuple[Request, Request]:
    """A call that must reach the trunk: the phone's INVITE and the gateway's."""
    invite = dial(wire, number, user)
    placed = wire.to_gateway()
    assert len(placed) == 1, (final(wire, invite), placed)
    return invite, placed[0]


def refused(wire: LimitWire, number: str = NATIONAL, user: str = "1001") -> Response:
    """A call that must be refused for a cap, with nothing sent to the trunk."""
    invite = dial(wire, number, user)
    response = final(wire, invite)
    assert response is not None and response.status == 486, response
    assert wire.to_gateway(GW1) == [] and wire.to_gateway(GW2) == []
    return response


def phone_request(method: str, invite: Request, to: str, cseq: int) -> Request:
    return make_request(method, f"sip:{PBX[0]}:{PBX[1]}", [
        ("via", f"SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch=z9hG4bK{secrets.token_hex(6)};rport"),
        ("max-forwards", "70"), ("from", invite.get("from") or ""), ("to", to),
        ("call-id", invite.call_id), ("cseq", f"{cseq} {method}")])


def cancel_of(invite: Request) -> Request:
    return make_request("CANCEL", invite.uri, [
        ("via", invite.get("via") or ""), ("max-forwards", "70"), ("from", invite.get("from") or ""),
        ("to", invite.get("to") or ""), ("call-id", invite.call_id), ("cseq", f"{invite.cseq.number} CANCEL")])


# ---------------------------------------------------------------- the caps


def test_a_burst_over_the_cap_is_refused_486_before_the_trunk_with_a_rejected_cdr(tmp_path: Path) -> None:
    wire = make_wire(tmp_path, simultaneous=2, per_minute=100)
    with structlog.testing.capture_logs() as logs:
        out(wire)
        out(wire)
        responses = [refused(wire) for _ in range(3)]
    for response in responses:
        assert response.reason == "Outside Call Limit"
        assert response.get("reason") == 'SIP;cause=486;text="outside_calls_simultaneous_limit"'
        assert response.get("warning") == ('399 pbx.example.com "classes_of_service.outside.outside_calls.'
                                           'simultaneous: at most 2 outside calls at once"')
        assert response.get("retry-after") is None
    rejected = [c for c in wire.recorder.ended if c.disposition == "REJECTED"]
    assert [(c.caller_number, c.dialled, c.reason, c.hangup_status) for c in rejected] == [
        ("1001", NATIONAL, "outside_calls_simultaneous_limit", 486)] * 3
    assert len(wire.recorder.started) == 5  # every attempt has its CDR row
    hits = [e for e in logs if e["event"] == "call_limit_hit"]
    assert [(e["extension"], e["limit"], e["value"], e["current"], e["rule"], e["outcome"], e["log_level"])
            for e in hits] == [("1001", "simultaneous", 2, 2, "classes_of_service.outside.outside_calls.simultaneous",
                                "refused", "warning")] * 3
    out(wire, user="1002")  # another extension has its own slots


def test_the_rate_cap_refuses_until_the_oldest_call_leaves_the_minute(tmp_path: Path) -> None:
    wire = make_wire(tmp_path, simultaneous=100, per_minute=3)
    for _ in range(3):
        _, placed = out(wire)
        wire.deliver(make_response(placed, 486, to_tag="busy"), GW1)  # each one ends at once
        wire.advance(10.0)
    response = refused(wire)  # at t = 30: three started in the last minute
    assert response.get("reason") == 'SIP;cause=486;text="outside_calls_per_minute_limit"'
    assert response.get("retry-after") == "30"
    (rejected,) = [c for c in wire.recorder.ended if c.disposition == "REJECTED"]
    assert rejected.reason == "outside_calls_per_minute_limit"
    wire.advance(29.9)
    refused(wire)
    wire.advance(0.1)
    out(wire)  # the call at t = 0 has left the window


def test_internal_calls_calls_from_the_trunk_and_emergency_calls_are_not_held_back(tmp_path: Path) -> None:
    wire = make_wire(tmp_path, simultaneous=1, per_minute=100)
    out(wire)
    internal = dial(wire, "1002")
    assert final(wire, internal) is None and [m.method for m in wire.take(DESK) if isinstance(m, Request)] == [
        "INVITE"]
    wire.deliver(provider_invite("+842873000100"), GW1)  # in from the trunk, to 1001
    assert [m.method for m in wire.take(AN_DESK) if isinstance(m, Request)] == ["INVITE"]
    assert not [r for r in wire.responses_to(GW1) if r.status >= 300]
    out(wire, "113")  # emergency: never refused, and not counted
    refused(wire)  # the national call still holds 1001's one slot


def test_a_member_call_over_the_cap_rings_the_desk_without_the_mobile(tmp_path: Path) -> None:
    wire = make_wire(tmp_path, simultaneous=1, per_minute=100)
    out(wire)
    with structlog.testing.capture_logs() as logs:
        both = dial(wire, "22")  # Binh's desk and mobile
        assert final(wire, both) is None
        assert [m.method for m in wire.take(DESK) if isinstance(m, Request)] == ["INVITE"]
        assert wire.to_gateway() == []
        refused(wire, "24")  # Dung has only a mobile
        desk_first = dial(wire, "23")  # Chau's desk, her mobile 10 s later
        assert [m.method for m in wire.take(CHAU_DESK) if isinstance(m, Request)] == ["INVITE"]
        wire.advance(29.9)
        assert final(wire, desk_first) is None and wire.to_gateway() == []
        wire.advance(0.2)  # her desk's ring time (30 s), not 10 s more for a mobile that never rings
        ended = final(wire, desk_first)
        assert ended is not None and ended.status == 480
    assert [e["outcome"] for e in logs if e["event"] == "call_limit_hit"] == [
        "trunk_legs_dropped", "refused", "trunk_legs_dropped"]


def test_a_reload_applies_new_caps_to_the_next_call(tmp_path: Path) -> None:
    wire = make_wire(tmp_path, simultaneous=1, per_minute=100)
    out(wire)
    refused(wire)
    wire.controller.use_plan(make_plan(tmp_path, simultaneous=2, per_minute=100))
    out(wire)  # the count survived the reload: one up, two allowed
    refused(wire)
    wire.controller.use_plan(make_plan(tmp_path, simultaneous=1, per_minute=100))
    refused(wire)


# ---------------------------------------------------------------- no slot leaks
# With one slot: a call holds it while it rings or talks (a second call is
# refused), then ends one way or another, and the next call must go out.


def answered(wire: LimitWire) -> tuple[Request, Request, Response]:
    invite, placed = out(wire)
    wire.deliver(answer_200(placed), GW1)
    ok = final(wire, invite)
    assert ok is not None and ok.status == 200
    refused(wire)
    return invite, placed, ok


def ringing(wire: LimitWire) -> tuple[Request, Request, Response]:
    invite, placed = out(wire)
    wire.deliver(make_response(placed, 180, to_tag="prov-ring"), GW1)
    (ring,) = [r for r in for_call(wire, invite.call_id) if r.status == 180]
    refused(wire)
    return invite, placed, ring


def caller_hangs_up(wire: LimitWire) -> None:
    invite, _, ok = answered(wire)
    wire.deliver(phone_request("ACK", invite, ok.get("to") or "", 2), PHONE)
    wire.deliver(phone_request("BYE", invite, ok.get("to") or "", 3), PHONE)


def callee_hangs_up(wire: LimitWire) -> None:
    invite, placed, ok = answered(wire)
    wire.deliver(phone_request("ACK", invite, ok.get("to") or "", 2), PHONE)
    wire.deliver(make_request("BYE", f"sip:{PBX[0]}:{PBX[1]}", [
        ("via", f"SIP/2.0/UDP {GW1.host}:{GW1.port};branch=z9hG4bK{secrets.token_hex(6)}"),
        ("max-forwards", "70"), ("from", f"{placed.get('to')};tag=prov-ok"), ("to", placed.get("from") or ""),
        ("call-id", placed.call_id), ("cseq", "1 BYE")]), GW1)


def callee_busy(wire: LimitWire) -> None:
    _, placed = out(wire)
    refused(wire)
    wire.deliver(make_response(placed, 486, to_tag="busy"), GW1)


def every_gateway_fails(wire: LimitWire) -> None:
    _, placed = out(wire)
    wire.deliver(make_response(placed, 503, to_tag="x"), GW1)
    (second,) = wire.to_gateway(GW2)
    refused(wire)
    wire.deliver(make_response(second, 500, to_tag="y"), GW2)


def every_gateway_silent(wire: LimitWire) -> None:
    out(wire)
    wire.advance(4.1)
    assert len(wire.to_gateway(GW2)) == 1
    refused(wire)
    wire.advance(40.0)


def caller_cancels(wire: LimitWire) -> None:
    invite, _, _ = ringing(wire)
    wire.deliver(cancel_of(invite), PHONE)


def cancel_crosses_the_answer(wire: LimitWire) -> None:
    invite, placed, _ = ringing(wire)
    wire.deliver(cancel_of(invite), PHONE)
    wire.deliver(answer_200(placed), GW1)  # the callee answered before the CANCEL reached it


def caller_byes_while_ringing(wire: LimitWire) -> None:
    invite, _, ring = ringing(wire)
    wire.deliver(phone_request("BYE", invite, ring.get("to") or "", 3), PHONE)


def nobody_answers(wire: LimitWire) -> None:
    ringing(wire)
    wire.advance(181.0)


def caller_never_acks(wire: LimitWire) -> None:
    answered(wire)
    wire.advance(33.0)


def longest_call_ends(wire: LimitWire) -> None:
    invite, _, ok = answered(wire)
    wire.deliver(phone_request("ACK", invite, ok.get("to") or "", 2), PHONE)
    wire.advance(301.0)


ENDINGS: dict[str, tuple[Callable[[LimitWire], None], str]] = {
    "caller-bye": (caller_hangs_up, "bye"),
    "callee-bye": (callee_hangs_up, "bye"),
    "callee-busy": (callee_busy, "busy"),
    "every-gateway-fails": (every_gateway_fails, "trunk_unavailable"),
    "every-gateway-silent": (every_gateway_silent, "trunk_unavailable"),
    "caller-cancel": (caller_cancels, "caller_cancelled"),
    "cancel-crosses-200": (cancel_crosses_the_answer, "caller_cancelled"),
    "caller-bye-while-ringing": (caller_byes_while_ringing, "caller_bye"),
    "ring-timeout": (nobody_answers, "ring_timeout"),
    "no-ack": (caller_never_acks, "no_ack"),
    "max-duration": (longest_call_ends, "max_duration"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_the_slot_comes_back_however_the_call_ends(tmp_path: Path, ending: str) -> None:
    wire = make_wire(tmp_path, simultaneous=1, per_minute=100)
    end, reason = ENDINGS[ending]
    end(wire)
    ended = [c for c in wire.recorder.ended if c.reason != "outside_calls_simultaneous_limit"]
    assert [c.reason for c in ended] == [reason]
    assert wire.controller.outside_calls.up("1001") == 0
    out(wire)
