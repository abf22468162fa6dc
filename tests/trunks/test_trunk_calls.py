"""Calls through trunks in the call controller, on an in-memory wire with a
hand-held clock: the phone, the provider's gateways and the PBX are SIP
endpoints exchanging real messages (built, encoded, parsed), no sockets.

Covers gateway failover (silence, 503, transport failure), answering the
provider's 407 (and a 401 followed by a 407), callee refusals that end the
call, a late answer from a gateway already given up on, inbound DIDs, and
the no-relay rules.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from pbx.calls.call import Call
from pbx.calls.controller import CallController, CallRecorder
from pbx.registrar.auth import Authenticator
from pbx.registrar.bindings import Binding, BindingTable
from pbx.security.lockout import Lockout
from pbx.routing.dialplan import Dialplan
from pbx.routing.loader import load_dialplan
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import RequestReceived
from pbx.sip.message import Message, Request, Response, make_request, make_response
from pbx.sip.parser import parse_message
from pbx.sip.transaction import build_non_2xx_ack
from pbx.trunks.sources import TrunkSources

PHONE = Peer("udp", "192.0.2.50", 5062)
GW1 = Peer("udp", "198.51.100.1", 5070)
GW2 = Peer("udp", "198.51.100.2", 5072)
STRANGER = Peer("udp", "203.0.113.9", 5060)
PBX = ("192.0.2.1", 5060)
PROVIDER_REALM = "sip.provider.example"

PLAN = """\
domain: pbx.example.com
registrar: {auth_algorithms: [MD5]}
departments:
  sales: {name: Sales, class_of_service: outside, caller_id: "02873000100"}
extensions:
  1001: {name: An Nguyen, department: sales, password: an-secret-1001}
  1002: {name: Binh Tran, department: sales, password: binh-secret-1002, caller_id: "02873000102"}
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
inbound:
  "+842873000100": {extension: "1001"}
"""


class Timers:
    """The hand-held clock."""

    def __init__(self) -> None:
        self.now = 0.0


@dataclass
class Recorder:
    started: list[Call] = field(default_factory=list)
    answered: list[Call] = field(default_factory=list)
    ended: list[Call] = field(default_factory=list)

    def call_started(self, call: Call) -> None:
        self.started.append(call)

    def call_answered(self, call: Call) -> None:
        self.answered.append(call)

    def call_alive(self, call: Call, at: float) -> None:
        pass

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None:
        self.ended.append(call)
        on_durable()


class Wire:
    """The PBX's controller and endpoint, and everything it sent, by peer."""

    def __init__(self, plan: Dialplan, *, wall_clock: Callable[[], float] = time.time,
                 recorder: CallRecorder | None = None) -> None:
        self.plan = plan
        self.timers = Timers()
        self.endpoint = SipEndpoint()
        self.recorder = Recorder()
        nonces = digest.NonceIssuer(secrets.token_bytes(32), lifetime=300)
        tracker = Lockout(max_failures=10, window=60, block_seconds=300)
        self.auth = Authenticator(plan, nonces, tracker, (digest.Algorithm.MD5,))
        self.bindings = BindingTable()
        self.controller = CallController(
            endpoint=self.endpoint, plan=plan, auth=self.auth, bindings=self.bindings,
            recorder=recorder or self.recorder,
            local_address=lambda _: PBX, kick=self.pump, monotonic=lambda: self.timers.now, wall_clock=wall_clock,
        )
        self.controller.trunk_sources = TrunkSources(plan.trunks)
        self.outbox: dict[Peer, list[Message]] = {}
        self._pumping = False

    def pump(self) -> None:
        if self._pumping:
            return   # the outer pump keeps draining
        self._pumping = True
        try:
            while True:
                sends, events = self.endpoint.drain()
                for send in sends:
                    self.outbox.setdefault(send.dest, []).append(parse_message(send.data))
                if not events and not sends:
                    break
                for event in events:
                    if isinstance(event, RequestReceived):
                        self.controller.on_request(event, self.timers.now)
                    else:
                        self.controller.on_event(event, self.timers.now)
        finally:
            self._pumping = False

    def deliver(self, message: Message, source: Peer) -> None:
        self.endpoint.receive(message.encode(), source, self.timers.now)
        self.pump()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing transaction and controller timers in order."""
        until = self.timers.now + seconds
        while True:
            deadline = self.endpoint.next_deadline()
            call_due = self.controller.next_deadline()
            nexts = [t for t in (deadline, call_due) if t is not None and t <= until]
            if not nexts:
                break
            self.timers.now = max(self.timers.now, min(nexts))
            if deadline is not None and deadline <= self.timers.now:
                self.endpoint.on_timer(self.timers.now)
                self.pump()
            if call_due is not None and call_due <= self.timers.now:
                self.controller.on_timer(self.timers.now)
                self.pump()
        self.timers.now = until

    def take(self, peer: Peer) -> list[Message]:
        return self.outbox.pop(peer, [])

    def requests_to(self, peer: Peer, method: str) -> list[Request]:
        return [m for m in self.outbox.get(peer, []) if isinstance(m, Request) and m.method == method]

    def responses_to(self, peer: Peer) -> list[Response]:
        return [m for m in self.outbox.get(peer, []) if isinstance(m, Response)]


@pytest.fixture
def plan(tmp_path: Path) -> Dialplan:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return load_dialplan(path)


@pytest.fixture
def wire(plan: Dialplan) -> Wire:
    return Wire(plan)


_ids = itertools.count(1)


def phone_invite(number: str, *, cseq: int = 1, call_id: str | None = None, auth: str | None = None,
                 source: Peer = PHONE, from_user: str = "1001") -> Request:
    headers = [
        ("via", f"SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{secrets.token_hex(6)};rport"),
        ("max-forwards", "70"),
        ("from", f'"An" <sip:{from_user}@pbx.example.com>;tag=ph{cseq}'),
        ("to", f"<sip:{number}@pbx.example.com>"),
        ("call-id", call_id or f"phone-{next(_ids)}"),
        ("cseq", f"{cseq} INVITE"),
        ("contact", f"<sip:{from_user}@{source.host}:{source.port}>"),
        ("content-type", "application/sdp"),
    ]
    if auth is not None:
        headers.append(("proxy-authorization", auth))
    return make_request("INVITE", f"sip:{number}@pbx.example.com", headers, b"v=0\r\no=- 1 1 IN IP4 192.0.2.50\r\n")


def authenticated_call(wire: Wire, number: str, user: str = "1001", password: str = "an-secret-1001") -> Request:
    """The phone calls ``number``: INVITE, 407, INVITE with credentials."""
    call_id = f"phone-{next(_ids)}"
    first = phone_invite(number, call_id=call_id, from_user=user)
    wire.deliver(first, PHONE)
    challenge = [r for r in wire.responses_to(PHONE) if r.status == 407]
    assert challenge, wire.outbox
    wire.take(PHONE)
    wire.deliver(build_non_2xx_ack(first, challenge[-1]), PHONE)   # the phone's transaction ACKs the 407
    value = digest.choose_challenge(challenge[-1].get_all("proxy-authenticate"))
    assert value is not None
    answer = digest.answer_challenge(value, username=user, password=password, method="INVITE",
                                     uri=first.uri, cnonce="c0ffee", nc=1)
    second = phone_invite(number, cseq=2, call_id=call_id, auth=answer, from_user=user)
    wire.deliver(second, PHONE)
    return second


def provider_challenge(invite: Request, status: int = 407) -> Response:
    """The gateway's 407 (Proxy-Authenticate) or 401 (WWW-Authenticate), a fresh nonce each time."""
    value = digest.format_challenge(PROVIDER_REALM, secrets.token_hex(8), digest.Algorithm.MD5)
    header = "www-authenticate" if status == 401 else "proxy-authenticate"
    return make_response(invite, status, to_tag="prov", headers=[(header, value)])


def answer_200(invite: Request, tag: str = "prov-ok") -> Response:
    return make_response(invite, 200, to_tag=tag, headers=[("contact", "<sip:provider@198.51.100.1:5070>"),
                                                          ("content-type", "application/sdp")],
                         body=b"v=0\r\no=provider 1 1 IN IP4 198.51.100.1\r\n")


def final_to_phone(wire: Wire) -> Response:
    finals = [r for r in wire.responses_to(PHONE) if r.status >= 200]
    assert len(finals) == 1, wire.responses_to(PHONE)
    return finals[0]


# ---------------------------------------------------------------- outbound


def test_invite_carries_normalised_number_and_caller_id(wire: Wire) -> None:
    authenticated_call(wire, "0912345678")
    invites = wire.requests_to(GW1, "INVITE")
    assert len(invites) == 1
    invite = invites[0]
    assert invite.uri == "sip:+84912345678@sip.provider.example"
    assert invite.to.uri == "sip:+84912345678@sip.provider.example"
    assert invite.from_.uri == "sip:02873000100@sip.provider.example"   # the department's caller ID
    assert invite.body.startswith(b"v=0")
    assert not wire.requests_to(GW2, "INVITE")


def test_extension_caller_id_wins(wire: Wire) -> None:
    authenticated_call(wire, "0912345678", user="1002", password="binh-secret-1002")
    assert wire.requests_to(GW1, "INVITE")[0].from_.uri == "sip:02873000102@sip.provider.example"


def test_provider_407_is_answered_with_credentials_then_call_answered(wire: Wire) -> None:
    authenticated_call(wire, "0912345678")
    first = wire.requests_to(GW1, "INVITE")[0]
    wire.take(GW1)
    challenge = provider_challenge(first)
    wire.deliver(challenge, GW1)
    sent = wire.take(GW1)
    assert [m.method for m in sent if isinstance(m, Request)] == ["ACK", "INVITE"]   # ACK from the transaction
    second = [m for m in sent if isinstance(m, Request) and m.method == "INVITE"][0]
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.params["branch"] != first.top_via.params["branch"]
    assert second.body == first.body
    credentials = digest.parse_credentials(second.get("proxy-authorization") or "")
    ha1 = digest.ha1(credentials.algorithm, "02873000000", PROVIDER_REALM, "trunk-secret")
    assert credentials.username == "02873000000" and credentials.uri == second.uri
    assert digest.verify(credentials, ha1, "INVITE")

    wire.deliver(make_response(second, 180, to_tag="prov-ok"), GW1)
    assert [r.status for r in wire.responses_to(PHONE)] == [100, 180]
    wire.deliver(answer_200(second), GW1)
    assert final_to_phone(wire).status == 200
    assert [m.method for m in wire.take(GW1) if isinstance(m, Request)] == ["ACK"]
    (call,) = wire.recorder.answered
    assert call.outbound is not None and call.outbound.trunk.key == "viettel"


def test_silent_gateway_fails_over_to_the_second(wire: Wire) -> None:
    with structlog.testing.capture_logs() as logs:
        authenticated_call(wire, "0912345678")
        assert len(wire.requests_to(GW1, "INVITE")) == 1
        wire.advance(3.9)
        assert not wire.requests_to(GW2, "INVITE")
        wire.advance(0.2)   # invite_timeout is 4 s
    invites = wire.requests_to(GW2, "INVITE")
    assert len(invites) == 1 and invites[0].uri == "sip:+84912345678@sip.provider.example"
    assert wire.requests_to(GW1, "INVITE")[0].call_id != invites[0].call_id
    failed = [e for e in logs if e["event"] == "trunk_gateway_failed"]
    assert [(e["gateway"], e["reason"], e["next"]) for e in failed] == [
        ("udp:198.51.100.1:5070", "timeout", "udp:198.51.100.2:5072")]
    # The second gateway answers: the caller is connected.
    wire.deliver(answer_200(invites[0], "gw2"), GW2)
    assert final_to_phone(wire).status == 200


def test_503_fails_over_at_once_and_all_gateways_failing_gives_503(wire: Wire) -> None:
    authenticated_call(wire, "0912345678")
    wire.deliver(make_response(wire.requests_to(GW1, "INVITE")[0], 503, to_tag="x"), GW1)
    second = wire.requests_to(GW2, "INVITE")
    assert len(second) == 1
    wire.deliver(make_response(second[0], 500, to_tag="y"), GW2)
    final = final_to_phone(wire)
    assert final.status == 503
    (call,) = wire.recorder.ended
    assert (call.disposition, call.reason) == ("CONGESTION", "trunk_unavailable")
    assert [leg.status for leg in call.legs] == [503, 500]


@pytest.mark.parametrize(("status", "disposition"), [(486, "BUSY"), (404, "REJECTED"), (603, "REJECTED"),
                                                     (480, "UNAVAILABLE")])
def test_callee_refusal_ends_the_call_without_failover(wire: Wire, status: int, disposition: str) -> None:
    authenticated_call(wire, "0912345678")
    wire.deliver(make_response(wire.requests_to(GW1, "INVITE")[0], status, to_tag="x"), GW1)
    assert final_to_phone(wire).status == status
    assert not wire.requests_to(GW2, "INVITE")
    (call,) = wire.recorder.ended
    assert (call.disposition, call.hangup_side) == (disposition, "callee")


def test_wrong_trunk_credentials_do_not_loop(wire: Wire) -> None:
    with structlog.testing.capture_logs() as logs:
        authenticated_call(wire, "0912345678")
        first = wire.requests_to(GW1, "INVITE")[0]
        wire.take(GW1)
        wire.deliver(provider_challenge(first), GW1)
        second = [m for m in wire.take(GW1) if isinstance(m, Request) and m.method == "INVITE"][0]
        wire.deliver(provider_challenge(second), GW1)
    assert not wire.requests_to(GW1, "INVITE") and not wire.requests_to(GW2, "INVITE")
    assert final_to_phone(wire).status == 503
    assert [e["reason"] for e in logs if e["event"] == "trunk_auth_failed"] == ["rejected"]
    assert "trunk-secret" not in str(logs)


def test_401_then_407_with_a_fresh_nonce_is_answered_once_then_the_call_fails(wire: Wire) -> None:
    # A challenge is answered once per gateway (again only for stale=true):
    # the UAS's 401 is, the 407 that follows it with a new nonce is not.
    authenticated_call(wire, "0912345678")
    (first,) = wire.requests_to(GW1, "INVITE")
    wire.take(GW1)
    wire.deliver(provider_challenge(first, 401), GW1)
    sent = [m for m in wire.take(GW1) if isinstance(m, Request)]
    assert [m.method for m in sent] == ["ACK", "INVITE"]
    ack, second = sent
    assert ack.cseq.number == first.cseq.number
    # §22.2, §8.1.3.5: same Call-ID, From tag and body, CSeq one up, new branch.
    assert (second.call_id, second.from_.tag, second.body) == (first.call_id, first.from_.tag, first.body)
    assert second.cseq.number == first.cseq.number + 1
    assert second.top_via.branch != first.top_via.branch
    assert second.get("proxy-authorization") is None
    credentials = digest.parse_credentials(second.get("authorization") or "")
    assert (credentials.username, credentials.realm, credentials.uri) == ("02873000000", PROVIDER_REALM, second.uri)
    assert digest.verify(credentials, digest.ha1(credentials.algorithm, "02873000000", PROVIDER_REALM,
                                                 "trunk-secret"), "INVITE")

    wire.deliver(provider_challenge(second, 407), GW1)
    sent = [m for m in wire.take(GW1) if isinstance(m, Request)]
    assert [(m.method, m.cseq.number) for m in sent] == [("ACK", second.cseq.number)]  # no third INVITE
    assert not wire.requests_to(GW2, "INVITE")  # nor another gateway: credentials are the trunk's
    assert final_to_phone(wire).status == 503
    (call,) = wire.recorder.ended
    assert (str(call.disposition), str(call.hangup_side), str(call.reason), call.hangup_status) == (
        "FAILED", "pbx", "trunk_auth_failed", 503)


def test_late_answer_from_an_abandoned_gateway_is_released(wire: Wire) -> None:
    authenticated_call(wire, "0912345678")
    late = wire.requests_to(GW1, "INVITE")[0]
    wire.advance(4.1)
    assert wire.requests_to(GW2, "INVITE")
    wire.take(GW1)
    # Gateway 1 wakes up and answers: it gets ACK and BYE, the caller is
    # not connected to it.
    wire.deliver(answer_200(late, "late"), GW1)
    methods = [m.method for m in wire.take(GW1) if isinstance(m, Request)]
    assert methods == ["ACK", "BYE"]
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]
    # Gateway 2 still gets the call.
    wire.deliver(answer_200(wire.requests_to(GW2, "INVITE")[0], "gw2"), GW2)
    assert final_to_phone(wire).status == 200


def test_caller_cancel_during_failover(wire: Wire) -> None:
    invite = authenticated_call(wire, "0912345678")
    wire.advance(4.1)
    to_gw2 = wire.requests_to(GW2, "INVITE")[0]
    wire.deliver(make_response(to_gw2, 180, to_tag="gw2"), GW2)
    cancel = make_request("CANCEL", invite.uri, [
        ("via", invite.get("via") or ""), ("max-forwards", "70"), ("from", invite.get("from") or ""),
        ("to", invite.get("to") or ""), ("call-id", invite.call_id), ("cseq", f"{invite.cseq.number} CANCEL")])
    wire.deliver(cancel, PHONE)
    assert [m.method for m in wire.outbox.get(GW2, []) if isinstance(m, Request)][-1] == "CANCEL"
    assert 487 in [r.status for r in wire.responses_to(PHONE)]
    # The silent gateway's timers run out later without reviving anything.
    wire.advance(40.0)
    assert len(wire.recorder.ended) == 1 and wire.controller.active == 0


def test_gateway_ringing_for_ever_is_given_up(wire: Wire) -> None:
    authenticated_call(wire, "0912345678")
    invite = wire.requests_to(GW1, "INVITE")[0]
    wire.deliver(make_response(invite, 180, to_tag="ring"), GW1)
    wire.advance(179.0)
    assert not [r for r in wire.responses_to(PHONE) if r.status >= 200]
    assert not wire.requests_to(GW2, "INVITE")   # a ringing gateway is not failed over
    wire.advance(1.5)
    # (the 480 is retransmitted until the phone ACKs it, §17.2.1)
    assert {r.status for r in wire.responses_to(PHONE) if r.status >= 200} == {480}
    assert wire.requests_to(GW1, "CANCEL")
    (call,) = wire.recorder.ended
    assert (call.disposition, call.reason) == ("NO_ANSWER", "ring_timeout")


# ---------------------------------------------------------------- inbound


def provider_invite(did: str, source: Peer = GW1, *, uri_user: str | None = None) -> Request:
    return make_request("INVITE", f"sip:{uri_user or did}@192.0.2.1:5060", [
        ("via", f"SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{secrets.token_hex(6)}"),
        ("max-forwards", "70"),
        ("from", '"Khach Hang" <sip:0912345678@sip.provider.example>;tag=prov'),
        ("to", f"<sip:{did}@sip.provider.example>"),
        ("call-id", f"prov-{next(_ids)}"),
        ("cseq", "1 INVITE"),
        ("contact", f"<sip:provider@{source.host}:{source.port}>"),
        ("content-type", "application/sdp"),
    ], b"v=0\r\n")


def register_phone(wire: Wire, number: str = "1001") -> None:
    wire.bindings.put(Binding(aor=number, contact=f"sip:{number}@{PHONE.host}:{PHONE.port}",
                              expires_at=time.time() + 3600, call_id="reg", cseq=1, source=PHONE))


@pytest.mark.parametrize("uri_user", [None, "02873000000"])
def test_inbound_did_rings_the_extension_without_a_challenge(wire: Wire, uri_user: str | None) -> None:
    register_phone(wire)
    # To our registration's Contact (user = trunk username) the DID is in To.
    wire.deliver(provider_invite("+842873000100", uri_user=uri_user), GW1)
    assert not [r for r in wire.responses_to(GW1) if r.status == 407]
    (ring,) = wire.requests_to(PHONE, "INVITE")
    assert ring.from_.uri == "sip:0912345678@pbx.example.com"
    assert ring.from_.display == "Khach Hang"
    wire.deliver(make_response(ring, 200, to_tag="phone", headers=[("contact", "<sip:1001@192.0.2.50:5062>")],
                               body=b"v=0\r\n"), PHONE)
    assert [r.status for r in wire.responses_to(GW1) if r.status >= 200] == [200]
    (call,) = wire.recorder.started
    assert (call.caller, call.trunk, call.caller_number, call.dialled) == (None, "viettel", "0912345678",
                                                                         "+842873000100")


def test_unknown_did_gets_404_and_a_record(wire: Wire) -> None:
    wire.deliver(provider_invite("+842873000999", GW2), GW2)
    finals = [r for r in wire.responses_to(GW2) if r.status >= 200]
    assert [r.status for r in finals] == [404]
    (call,) = wire.recorder.ended
    assert (call.disposition, call.trunk, call.reason) == ("REJECTED", "viettel", "unknown_did")


def test_trunk_call_to_an_outside_number_is_not_relayed(wire: Wire) -> None:
    wire.deliver(provider_invite("0987654321"), GW1)
    assert [r.status for r in wire.responses_to(GW1) if r.status >= 200] == [403]
    assert not wire.requests_to(GW1, "INVITE") and not wire.requests_to(GW2, "INVITE")


def test_gateway_address_on_another_port_is_not_the_trunk(wire: Wire) -> None:
    impostor = Peer("udp", GW1.host, 5999)
    wire.deliver(provider_invite("+842873000100", impostor), impostor)
    assert [r.status for r in wire.responses_to(impostor) if r.status >= 200] == [407]


def test_stranger_to_an_external_number_is_challenged_and_logged(wire: Wire) -> None:
    with structlog.testing.capture_logs() as logs:
        wire.deliver(phone_invite("0912345678", source=STRANGER), STRANGER)
    assert [r.status for r in wire.responses_to(STRANGER) if r.status >= 200] == [407]
    assert not wire.requests_to(GW1, "INVITE") and not wire.requests_to(GW2, "INVITE")
    (logged,) = [e for e in logs if e["event"] == "call_challenged"]
    assert (logged["source"], logged["dialled"], logged["external"]) == ("udp:203.0.113.9:5060", "0912345678", True)
