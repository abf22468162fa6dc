"""Where the PBX sends a call to a registered phone, on real sockets: the
Contact's address (RFC 3261), the REGISTER's source when NAT is seen or the
extension says ``nat: force``, and the connection a TCP phone registered
over while it is open."""

from __future__ import annotations

import secrets
import socket

import pytest

from pbx.sip import digest
from pbx.sip.message import Message, Request, Response
from pbx.sip.parser import StreamFramer, parse_message
from tests.server import free_port

from .harness import AGENT_EXTENSIONS, DOMAIN, Pbx
from .sipua import SipUA

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DIALPLAN = (
    "domain: pbx.example.com\n"
    + AGENT_EXTENSIONS
    + "  2003: {name: Carol, department: ops, password: carol-secret-2003, nat: force}\n"
    + "  2004: {name: Dan, department: ops, password: dan-secret-2004}\n"
)
PASSWORDS = {"2002": "bob-secret-2002", "2003": "carol-secret-2003", "2004": "dan-secret-2004"}


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


def is_invite(message: Message) -> bool:
    return isinstance(message, Request) and message.method == "INVITE"


def call_is_refused_busy(alice: SipUA, number: str, phone: SipUA) -> None:
    """Alice calls ``number``; ``phone`` must get the INVITE and says 486."""
    dialog = alice.invite(number)
    invite = phone.expect_request("INVITE")
    phone.respond(invite, 486, to_tag=secrets.token_hex(4))
    assert dialog.expect_response(486).status == 486


@pytest.mark.parametrize(("number", "reached"), [("2002", "listening"), ("2003", "registering")],
                         ids=["contact", "nat-force"])
def test_a_call_goes_to_the_contact_unless_nat_is_forced(pbx: Pbx, number: str, reached: str) -> None:
    # SIPp and some phones register from one socket and listen on another:
    # RFC 3261 sends to the Contact; 2003 says nat: force, so the source.
    with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice, \
            SipUA.start(pbx.udp, number, PASSWORDS[number], DOMAIN) as registering, \
            SipUA.start(pbx.udp, number, PASSWORDS[number], DOMAIN) as listening:
        alice.register()
        registering.register(contact=listening.contact)
        phone, other = (listening, registering) if reached == "listening" else (registering, listening)
        call_is_refused_busy(alice, number, phone)
        other.absent(is_invite, 0.5)


def test_a_private_contact_seen_from_another_address_means_nat(pbx: Pbx) -> None:
    # 10.0.0.5 while the REGISTER came from 127.0.0.1: a translator sits
    # between, and only the source reaches the phone.
    with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice, \
            SipUA.start(pbx.udp, "2002", PASSWORDS["2002"], DOMAIN) as behind_nat:
        alice.register()
        behind_nat.register(contact="<sip:2002@10.0.0.5:5060>")
        call_is_refused_busy(alice, "2002", behind_nat)


class TcpPhone:
    """A phone registered over one TCP connection, reading what comes on it."""

    def __init__(self, pbx: Pbx, number: str) -> None:
        self.number = number
        self.sock = socket.create_connection(("127.0.0.1", pbx.server.tcp_port), timeout=5.0)
        self._framer = StreamFramer()
        self._frames: list[bytes] = []

    def close(self) -> None:
        self.sock.close()

    def receive(self) -> Message:
        while not self._frames:
            chunk = self.sock.recv(65535)
            assert chunk, "the PBX closed the connection"
            self._frames.extend(f for f in self._framer.feed(chunk) if f.strip())
        return parse_message(self._frames.pop(0))

    def register(self, contact: str) -> None:
        host, port = self.sock.getsockname()[:2]
        call_id, tag, authorization = f"reg-{secrets.token_hex(4)}", secrets.token_hex(4), ""
        for cseq in (1, 2):
            self.sock.sendall((
                f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
                f"Via: SIP/2.0/TCP {host}:{port};branch=z9hG4bK{secrets.token_hex(8)}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.number}@{DOMAIN}>;tag={tag}\r\n"
                f"To: <sip:{self.number}@{DOMAIN}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: {contact}\r\nExpires: 600\r\n{authorization}Content-Length: 0\r\n\r\n").encode())
            answer = self.receive()
            assert isinstance(answer, Response), answer
            if answer.status == 200:
                return
            assert answer.status == 401 and not authorization, answer
            challenge = digest.choose_challenge(answer.get_all("www-authenticate"))
            assert challenge is not None
            authorization = "Authorization: " + digest.answer_challenge(
                challenge, username=self.number, password=PASSWORDS[self.number], method="REGISTER",
                uri=f"sip:{DOMAIN}", cnonce=secrets.token_hex(4), nc=1) + "\r\n"
        raise AssertionError("REGISTER over TCP not accepted")

    def refuse(self, invite: Request, status: int) -> None:
        lines = [f"SIP/2.0 {status} Busy Here"]
        lines += [f"Via: {value}" for value in invite.get_all("via")]
        lines += [f"From: {invite.get('from')}", f"To: {invite.get('to')};tag={secrets.token_hex(4)}",
                  f"Call-ID: {invite.call_id}", f"CSeq: {invite.cseq.number} INVITE", "Content-Length: 0"]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_a_tcp_phone_gets_its_calls_on_the_connection_it_registered_over(pbx: Pbx) -> None:
    # Its Contact names a port where nothing listens: while the connection
    # lives, the call goes over it (connection reuse), not to a new one.
    phone = TcpPhone(pbx, "2004")
    try:
        phone.register(f"<sip:2004@127.0.0.1:{free_port()};transport=tcp>")
        with SipUA.start(pbx.udp, "2001", "alice-secret-2001", DOMAIN) as alice:
            alice.register()
            dialog = alice.invite("2004")
            invite = phone.receive()
            assert isinstance(invite, Request) and invite.method == "INVITE"
            assert (invite.get("via") or "").startswith("SIP/2.0/TCP ")
            phone.refuse(invite, 486)
            assert dialog.expect_response(486).status == 486
    finally:
        phone.close()


@pytest.mark.parametrize(("caller", "reached"), [("2004", "listening"), ("2003", "calling")],
                         ids=["contact", "nat-force"])
def test_requests_to_the_caller_go_to_its_contact_unless_nat_is_forced(pbx: Pbx, caller: str, reached: str) -> None:
    # §12.1.1: the remote target of the caller's dialog is its INVITE's
    # Contact; a BYE from the PBX (the callee hung up) goes there.
    with SipUA.start(pbx.udp, caller, PASSWORDS[caller], DOMAIN) as calling, \
            SipUA.start(pbx.udp, caller, PASSWORDS[caller], DOMAIN) as listening, \
            SipUA.start(pbx.udp, "2002", PASSWORDS["2002"], DOMAIN) as bob:
        calling.register()
        bob.register()
        a = calling.invite("2002", body=b"", contact=listening.contact)
        b_invite = bob.expect_request("INVITE")
        b = bob.answer_dialog(b_invite)
        bob.respond(b_invite, 200, to_tag=b.local_tag, body=b"v=0\r\n")
        ok = a.expect_response(200, method="INVITE")
        a.confirm(ok)
        a.ack(body=b"v=0\r\n")
        bob.expect_request("ACK", call_id=b.call_id)
        b.send("BYE")
        phone, other = (listening, calling) if reached == "listening" else (calling, listening)
        bye = phone.expect_request("BYE")
        phone.respond(bye, 200)
        assert b.expect_response(200, method="BYE").status == 200
        other.absent(lambda m: isinstance(m, Request) and m.method == "BYE", 0.5)
