"""A hand-driven SIP user agent over a real UDP socket, for end-to-end tests
that need exact control of what is sent when: reordering, retransmission,
loss, crossing requests.

It answers nothing on its own; the test decides every message. Messages it
receives wait in a buffer until a test asks for them with ``expect`` (which
takes the first match and leaves the rest), so a retransmission never gets
lost and never gets in the way.

    alice = SipUA.start(server, "2001", "secret", DOMAIN)
    alice.register()
    call = alice.invite("2002", sdp=SDP)            # answers the 407 itself
    ringing = call.expect_response(180)
"""

from __future__ import annotations

import itertools
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pbx.sip import digest
from pbx.sip.message import Message, Request, Response, parse_name_addr
from pbx.sip.parser import parse_message

Address = tuple[str, int]
_numbers = itertools.count(1)

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def sdp(port: int = 40000) -> bytes:
    return SDP.format(port=port).encode()


@dataclass
class Received:
    message: Message
    source: Address
    at: float


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class UaDialog:
    """One dialog of the UA (RFC 3261 §12), enough to send in it."""

    ua: SipUA
    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    remote_tag: str | None
    remote_target: str
    local_cseq: int
    invite: bytes = b""
    """The INVITE that made it (UAC side), to retransmit."""
    invite_cseq: int = 0
    route_set: tuple[str, ...] = ()
    contact: str | None = None
    """Our Contact in this dialog; None: the UA's own socket."""

    def request(self, method: str, *, headers: list[str] | None = None, body: bytes = b"",
                cseq: int | None = None, branch: str | None = None) -> bytes:
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        host, port = self.ua.local
        to = self.remote_uri + (f";tag={self.remote_tag}" if self.remote_tag else "")
        lines = [
            f"{method} {self.remote_target} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch={branch or _branch()};rport",
            "Max-Forwards: 70",
            f"From: {self.local_uri};tag={self.local_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *(f"Route: {route}" for route in self.route_set),
        ]
        if method in ("INVITE", "UPDATE"):
            lines.append(f"Contact: {self.contact or self.ua.contact}")
        lines.extend(headers or [])
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, method: str, *, headers: list[str] | None = None, body: bytes = b"",
             cseq: int | None = None) -> bytes:
        data = self.request(method, headers=headers, body=body, cseq=cseq)
        self.ua.send(data)
        return data

    def ack(self, *, body: bytes = b"") -> bytes:
        """ACK the 2xx to this dialog's INVITE (§13.2.2.4: its CSeq number)."""
        return self.send("ACK", cseq=self.invite_cseq, body=body)

    def expect_response(self, status: int | None = None, *, method: str | None = None,
                        timeout: float = 5.0) -> Response:
        """The next response in this dialog (optionally of this status/method)."""
        def match(message: Message) -> bool:
            return (isinstance(message, Response) and message.call_id == self.call_id
                    and (status is None or message.status == status)
                    and (method is None or message.cseq.method == method))
        found = self.ua.expect(match, timeout)
        assert isinstance(found, Response)
        return found

    def expect_request(self, method: str, timeout: float = 5.0) -> Request:
        return self.ua.expect_request(method, call_id=self.call_id, timeout=timeout)

    def confirm(self, response: Response) -> None:
        """Learn the remote tag and target from a 1xx/2xx (§12.1.2)."""
        self.remote_tag = response.to.tag
        contacts = response.get_all("contact")
        if contacts:
            self.remote_target = parse_name_addr(contacts[0]).uri
        self.route_set = tuple(reversed(response.get_all("record-route")))


@dataclass
class SipUA:
    server: Address
    user: str
    password: str
    domain: str
    sock: socket.socket = field(repr=False)
    buffer: list[Received] = field(default_factory=list, repr=False)
    log: list[Received] = field(default_factory=list, repr=False)
    """Every message received, in order (for assertions about counts)."""

    @classmethod
    def start(cls, server: Address, user: str, password: str, domain: str) -> SipUA:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        return cls(server, user, password, domain, sock)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipUA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def local(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def contact(self) -> str:
        host, port = self.local
        return f"<sip:{self.user}@{host}:{port}>"

    # ------------------------------------------------------------ wire

    def send(self, data: bytes, dest: Address | None = None) -> None:
        self.sock.sendto(data, dest or self.server)

    def _receive(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, source = self.sock.recvfrom(65535)
        except (socket.timeout, TimeoutError):
            return False
        received = Received(parse_message(data), (source[0], source[1]), time.monotonic())
        self.buffer.append(received)
        self.log.append(received)
        return True

    def expect(self, match: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The first buffered or arriving message that ``match``es; the
        others stay buffered. AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self.buffer)):
                if match(self.buffer[index].message):
                    return self.buffer.pop(index).message
            checked = len(self.buffer)
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [_summary(r.message) for r in self.buffer[-12:]]
                raise AssertionError(f"{self.user}: nothing matching within {timeout} s; buffered: {seen}")
            self._receive(left)

    def absent(self, match: Callable[[Message], bool], seconds: float) -> None:
        """Assert no matching message is buffered or arrives for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)
        found = [_summary(r.message) for r in self.buffer if match(r.message)]
        assert not found, f"{self.user}: unexpected {found}"

    def drain(self, seconds: float) -> list[Message]:
        """Everything that arrives in ``seconds`` (and was buffered), taken."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._receive(left)
        taken = [r.message for r in self.buffer]
        self.buffer.clear()
        return taken

    def expect_request(self, method: str, *, call_id: str | None = None, timeout: float = 5.0) -> Request:
        def match(message: Message) -> bool:
            return (isinstance(message, Request) and message.method == method
                    and (call_id is None or message.call_id == call_id))
        found = self.expect(match, timeout)
        assert isinstance(found, Request)
        return found

    def respond(self, request: Request, status: int, reason: str = "", *, to_tag: str | None = None,
                headers: list[str] | None = None, body: bytes = b"") -> bytes:
        """Answer ``request`` (to the address it came from, which for us is
        always the PBX); the bytes are returned for retransmitting."""
        lines = [f"SIP/2.0 {status} {reason or _REASONS.get(status, 'Whatever')}"]
        for name, value in request.headers:
            if name == "via" or name in ("from", "call-id", "cseq"):
                lines.append(f"{_CANONICAL.get(name, name)}: {value}")
            elif name == "to":
                tagged = to_tag is not None and request.to.tag is None
                lines.append(f"To: {value};tag={to_tag}" if tagged else f"To: {value}")
        if status < 300 and status > 100 and request.method in ("INVITE", "UPDATE"):
            lines.append(f"Contact: {self.contact}")
        lines.extend(headers or [])
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.send(data)
        return data

    # ------------------------------------------------------------ flows

    def register(self, expires: int = 600, *, contact: str | None = None) -> None:
        """REGISTER from this socket, answering the 401; ``contact``: a
        Contact other than this socket's own."""
        call_id = f"reg-{self.user}-{secrets.token_hex(4)}"
        tag = secrets.token_hex(4)
        authorization: list[str] = []
        for cseq in (1, 2):
            host, port = self.local
            lines = [
                f"REGISTER sip:{self.domain} SIP/2.0",
                f"Via: SIP/2.0/UDP {host}:{port};branch={_branch()};rport",
                "Max-Forwards: 70",
                f"From: <sip:{self.user}@{self.domain}>;tag={tag}",
                f"To: <sip:{self.user}@{self.domain}>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: {contact or self.contact}",
                f"Expires: {expires}",
                *authorization,
                "Content-Length: 0",
            ]
            self.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            answer = self._final(call_id, "REGISTER")
            if answer.status == 200:
                return
            assert answer.status == 401 and not authorization, _summary(answer)
            challenge = digest.choose_challenge(answer.get_all("www-authenticate"))
            assert challenge is not None
            authorization = ["Authorization: " + digest.answer_challenge(
                challenge, username=self.user, password=self.password, method="REGISTER",
                uri=f"sip:{self.domain}", cnonce=secrets.token_hex(4), nc=1)]
        raise AssertionError(f"{self.user}: REGISTER not accepted")

    def _final(self, call_id: str, method: str, timeout: float = 5.0) -> Response:
        found = self.expect(lambda m: isinstance(m, Response) and m.call_id == call_id
                            and m.cseq.method == method and m.status >= 200, timeout)
        assert isinstance(found, Response)
        return found

    def new_dialog(self, number: str, *, call_id: str | None = None) -> UaDialog:
        host, port = self.server
        return UaDialog(
            ua=self,
            call_id=call_id or f"call-{next(_numbers)}-{secrets.token_hex(4)}",
            local_tag=secrets.token_hex(4),
            local_uri=f"<sip:{self.user}@{self.domain}>",
            remote_uri=f"<sip:{number}@{self.domain}>",
            remote_tag=None,
            remote_target=f"sip:{number}@{host}:{port}",
            local_cseq=0,
        )

    def invite(self, number: str, *, body: bytes = b"", headers: list[str] | None = None,
               contact: str | None = None) -> UaDialog:
        """INVITE ``number`` through the PBX, answering its 407 (ACKed, as
        §17.1.1.3 says); returns the dialog, its INVITE sent and not yet
        answered (beyond 100 Trying). ``contact``: another Contact than
        this UA's socket."""
        dialog = self.new_dialog(number)
        dialog.contact = contact
        first = dialog.request("INVITE", headers=headers, body=body)
        self.send(first)
        challenge = self._final(dialog.call_id, "INVITE")
        assert challenge.status == 407, _summary(challenge)
        self._ack_non_2xx(first, challenge)
        value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
        assert value is not None
        answer = digest.answer_challenge(
            value, username=self.user, password=self.password, method="INVITE", uri=dialog.remote_target,
            cnonce=secrets.token_hex(4), nc=1)
        dialog.invite = dialog.request("INVITE", headers=[*(headers or []), f"Proxy-Authorization: {answer}"],
                                       body=body)
        dialog.invite_cseq = dialog.local_cseq
        self.send(dialog.invite)
        return dialog

    def _ack_non_2xx(self, invite: bytes, response: Response) -> None:
        request = parse_message(invite)
        assert isinstance(request, Request)
        lines = [f"ACK {request.uri} SIP/2.0", f"Via: {request.get('via')}", "Max-Forwards: 70",
                 f"From: {request.get('from')}", f"To: {response.get('to')}", f"Call-ID: {request.call_id}",
                 f"CSeq: {request.cseq.number} ACK", "Content-Length: 0"]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def answer_dialog(self, invite: Request, local_tag: str | None = None) -> UaDialog:
        """The UAS dialog an incoming INVITE makes once we answer it (§12.1.1)."""
        contacts = invite.get_all("contact")
        from_ = invite.from_
        return UaDialog(
            ua=self,
            call_id=invite.call_id,
            local_tag=local_tag or secrets.token_hex(4),
            local_uri=_without_tag(invite.get("to") or ""),
            remote_uri=_without_tag(invite.get("from") or ""),
            remote_tag=from_.tag,
            remote_target=parse_name_addr(contacts[0]).uri if contacts else from_.uri,
            local_cseq=100,
            route_set=tuple(invite.get_all("record-route")),
            invite_cseq=invite.cseq.number,
        )


def _without_tag(value: str) -> str:
    address = parse_name_addr(value)
    display = f'"{address.display}" ' if address.display else ""
    return f"{display}<{address.uri}>"


def _summary(message: Message) -> str:
    if isinstance(message, Response):
        return f"{message.status} {message.cseq} {message.call_id}"
    return f"{message.method} {message.cseq} {message.call_id}"


_REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 422: "Session Interval Too Small",
            481: "Call/Transaction Does Not Exist", 486: "Busy Here", 487: "Request Terminated"}
_CANONICAL = {"via": "Via", "from": "From", "call-id": "Call-ID", "cseq": "CSeq"}
