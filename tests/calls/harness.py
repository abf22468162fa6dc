"""The call controller on an in-memory wire with a hand-held clock.

The controller runs with the real SIP endpoint (transactions, timers),
authenticator and binding table; only its edges are replaced: the CDR
writer by :class:`Recorder` (durable at once, every call kept), the event
loop's ``call_later`` by :class:`Scheduler` on the same clock as the
transaction timers. Phones are raw SIP text sent with :meth:`Harness.deliver`;
what the PBX sends is collected, parsed, per destination port.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pbx.calls.call import Call
from pbx.calls.controller import CallController
from pbx.registrar.auth import Authenticator
from pbx.registrar.bindings import Binding, BindingTable
from pbx.security.lockout import Lockout
from pbx.routing.dialplan import CallSettings, Department, Dialplan, Extension
from pbx.sip import digest
from pbx.sip.address import Peer
from pbx.sip.endpoint import SipEndpoint
from pbx.sip.events import RequestReceived
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import parse_message
from pbx.sip.transaction import build_cancel, build_non_2xx_ack

DOMAIN = "pbx.example.com"
PBX = ("127.0.0.1", 5060)
ALICE = Peer("udp", "127.0.0.1", 5071)
BOB = Peer("udp", "127.0.0.1", 5072)
BOB_2 = Peer("udp", "127.0.0.1", 5073)
"""A second phone of Bob's, for forks (:meth:`Harness.register`)."""
PASSWORDS = {"2001": "alice-secret-2001", "2002": "bob-secret-2002"}
WALL_EPOCH = 1_800_000_000.0
"""The wall clock at the harness's time 0 (CDR times, routing schedules)."""
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"


class Recorder:
    """The CDR writer's place: every call ended, durable at once."""

    def __init__(self) -> None:
        self.started: list[Call] = []
        self.ended: list[Call] = []
        self.alive: list[float] = []
        """Wall-clock times of the signs of life reported."""

    def call_started(self, call: Call) -> None:
        self.started.append(call)

    def call_answered(self, call: Call) -> None:
        pass

    def call_alive(self, call: Call, at: float) -> None:
        self.alive.append(at)

    def call_ended(self, call: Call, on_durable: Callable[[], None]) -> None:
        self.ended.append(call)
        on_durable()


class Harness:
    def __init__(self, calls: CallSettings) -> None:
        self.now = 0.0
        self.plan = Dialplan(
            domain=DOMAIN,
            calls=calls,
            departments={"ops": Department(key="ops", name="Ops")},
            extensions={number: Extension(number=number, name=f"User {number}", department="ops",
                                          password=password) for number, password in PASSWORDS.items()},
        )
        self.endpoint = SipEndpoint()
        self.recorder = Recorder()
        self.bindings = bindings = BindingTable()
        self.register("2002", BOB)
        nonces = digest.NonceIssuer(secrets.token_bytes(32), lifetime=300)
        tracker = Lockout(max_failures=10, window=60, block_seconds=60)
        self.controller = CallController(
            endpoint=self.endpoint, plan=self.plan, auth=Authenticator(self.plan, nonces, tracker),
            bindings=bindings, recorder=self.recorder, local_address=lambda transport: PBX, kick=self.flush,
            monotonic=lambda: self.now, wall_clock=lambda: WALL_EPOCH + self.now,
        )
        self.sent: dict[int, list[Message]] = {}
        self.timeline: list[tuple[float, int, Message]] = []
        """Everything the PBX sent: (clock, destination port, message), in order."""

    def register(self, aor: str, phone: Peer) -> None:
        """A contact of ``aor`` at ``phone`` (one more for a fork)."""
        self.bindings.put(Binding(aor=aor, contact=f"sip:{aor}@{phone.host}:{phone.port}", expires_at=4e9,
                                  call_id=f"reg-{phone.port}", cseq=1, source=phone))

    # ------------------------------------------------------------ the wire

    def flush(self) -> None:
        while True:
            sends, events = self.endpoint.drain()
            for send in sends:
                message = parse_message(send.data)
                self.sent.setdefault(send.dest.port, []).append(message)
                self.timeline.append((self.now, send.dest.port, message))
            if not events:
                return
            for event in events:
                if isinstance(event, RequestReceived):
                    if event.request.method in self.controller.methods:
                        self.controller.on_request(event, self.now)
                else:
                    self.controller.on_event(event, self.now)

    def deliver(self, text: str | bytes, source: Peer) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.endpoint.receive(data, source, self.now)
        self.flush()

    def advance(self, seconds: float) -> None:
        """Move the clock, firing transaction and call timers in deadline order."""
        until = self.now + seconds
        while True:
            candidates = [d for d in (self.endpoint.next_deadline(), self.controller.next_deadline())
                          if d is not None]
            due = min(candidates, default=None)
            if due is None or due > until:
                break
            self.now = max(self.now, due)
            self.endpoint.on_timer(self.now)
            self.flush()
            self.controller.on_timer(self.now)
            self.flush()
        self.now = until

    def take(self, peer: Peer) -> list[Message]:
        """What the PBX sent to ``peer`` since the last take."""
        return self.sent.pop(peer.port, [])


def requests(messages: list[Message], method: str) -> list[Request]:
    return [m for m in messages if isinstance(m, Request) and m.method == method]


def responses(messages: list[Message], method: str) -> list[Response]:
    return [m for m in messages if isinstance(m, Response) and m.cseq.method == method]


# ---------------------------------------------------------------- phones' text


def invite_text(*, call_id: str, cseq: int, branch: str, headers: Sequence[str], authorization: str | None = None,
                body: bytes = SDP) -> bytes:
    lines = [
        f"INVITE sip:2002@{PBX[0]}:{PBX[1]} SIP/2.0",
        f"Via: SIP/2.0/UDP {ALICE.host}:{ALICE.port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:2001@{DOMAIN}>;tag=alice",
        f"To: <sip:2002@{DOMAIN}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE",
        f"Contact: <sip:2001@{ALICE.host}:{ALICE.port}>",
        *headers,
        *([f"Proxy-Authorization: {authorization}"] if authorization else []),
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_text(request: Request, status: int, *, to_tag: str, headers: Sequence[str] = (),
                  body: bytes = b"", contact: Peer | None = None) -> bytes:
    reason = {200: "OK", 180: "Ringing"}.get(status, "Whatever")
    lines = [f"SIP/2.0 {status} {reason}"]
    for name, value in request.headers:
        if name in ("via", "from", "call-id", "cseq"):
            lines.append(f"{name}: {value}")
        elif name == "to":
            lines.append(f"to: {value}" if request.to.tag else f"to: {value};tag={to_tag}")
    if contact is not None:
        lines.append(f"Contact: <sip:{contact.host}:{contact.port}>")
    lines.extend(headers)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def in_dialog_text(method: str, *, target: str, call_id: str, from_: str, to: str, cseq: int, source: Peer,
                   headers: Sequence[str] = (), body: bytes = b"") -> bytes:
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {source.host}:{source.port};branch=z9hG4bK{secrets.token_hex(6)};rport",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *headers,
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class AnsweredCall:
    a_invite: bytes
    a_ok: Response
    b_invite: Request


def place_call(h: Harness, *, a_headers: Sequence[str] = (), body: bytes = SDP) -> bytes:
    """Alice calls 2002 (Call-ID c1): INVITE, 407, INVITE with credentials
    (CSeq 2, branch z9hG4bKa2), which is returned; nobody has answered.
    ``body`` empty: a delayed offer."""
    first = invite_text(call_id="c1", cseq=1, branch="z9hG4bKa1", headers=a_headers, body=body)
    h.deliver(first, ALICE)
    challenge = responses(h.take(ALICE), "INVITE")[-1]
    assert challenge.status == 407
    h.deliver(non_2xx_ack_text(first, challenge), ALICE)  # Alice's transaction ACKs it (§17.1.1.3)
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    assert value is not None
    authorization = digest.answer_challenge(value, username="2001", password=PASSWORDS["2001"], method="INVITE",
                                            uri=f"sip:2002@{PBX[0]}:{PBX[1]}", cnonce="c", nc=1)
    a_invite = invite_text(call_id="c1", cseq=2, branch="z9hG4bKa2", headers=a_headers, authorization=authorization,
                           body=body)
    h.deliver(a_invite, ALICE)
    return a_invite


def answer_call(h: Harness, *, a_headers: list[str], b_headers: list[str]) -> AnsweredCall:
    """Alice (authenticating) calls 2002; Bob answers with ``b_headers``.
    Alice does not ACK: the test decides."""
    a_invite = place_call(h, a_headers=a_headers)
    b_invite = requests(h.take(BOB), "INVITE")[0]
    h.deliver(response_text(b_invite, 200, to_tag="bob", headers=b_headers, body=SDP, contact=BOB), BOB)
    ok = [r for r in responses(h.take(ALICE), "INVITE") if r.status == 200][0]
    return AnsweredCall(a_invite, ok, b_invite)


def from_alice(method: str, ok: Response, cseq: int, *, headers: Sequence[str] = (), body: bytes = b"") -> bytes:
    """Alice's request in her dialog with the PBX, whose 2xx (or 1xx) ``ok`` set the To tag."""
    return in_dialog_text(method, target="sip:127.0.0.1:5060", call_id="c1", from_=f"<sip:2001@{DOMAIN}>;tag=alice",
                          to=ok.get("to") or "", cseq=cseq, source=ALICE, headers=headers, body=body)


def from_bob(method: str, invite: Request, cseq: int, *, headers: Sequence[str] = (), body: bytes = b"") -> bytes:
    """Bob's request in the dialog the PBX's ``invite`` made with him (his To tag "bob")."""
    return in_dialog_text(method, target=f"sip:{PBX[0]}:{PBX[1]}", call_id=invite.call_id,
                          from_=f"<sip:2002@{DOMAIN}>;tag=bob", to=invite.get("from") or "", cseq=cseq,
                          source=BOB, headers=headers, body=body)


def ack_text(call: AnsweredCall) -> bytes:
    return from_alice("ACK", call.a_ok, 2)


def cancel_text(invite: bytes) -> bytes:
    """The CANCEL of a phone's INVITE (§9.1: same branch, CSeq number)."""
    request = parse_message(invite)
    assert isinstance(request, Request)
    return build_cancel(request).encode()


def non_2xx_ack_text(invite: bytes, response: Response) -> bytes:
    """A phone's ACK of a 3xx-6xx final to its INVITE (§17.1.1.3)."""
    request = parse_message(invite)
    assert isinstance(request, Request)
    return build_non_2xx_ack(request, response).encode()


def add_extension(h: Harness, number: str, phone: Peer | None, **fields: object) -> None:
    """Extension ``number`` in the harness's plan (registered at ``phone``
    unless None); ``fields`` set or replace any Extension field, also of
    2001 and 2002 when ``number`` is theirs."""
    from dataclasses import replace

    extensions = dict(h.plan.extensions)
    current = extensions.get(number) or Extension(number=number, name=f"User {number}", department="ops",
                                                  password=f"secret-{number}")
    extensions[number] = replace(current, **fields)  # type: ignore[arg-type]
    h.plan = replace(h.plan, extensions=extensions)
    h.controller.use_plan(h.plan)
    h.controller.auth.use_plan(h.plan)
    if phone is not None:
        h.register(number, phone)
