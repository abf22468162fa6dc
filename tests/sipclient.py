"""A small blocking SIP client over real UDP/TCP sockets, for edge tests.

It speaks just enough SIP to register (answering a digest challenge with
``pbx.sip.digest.answer_challenge``, the client half of our digest code) and
to throw raw bytes at a server and read what comes back.
"""

from __future__ import annotations

import itertools
import secrets
import socket
from dataclasses import dataclass, field

from pbx.sip import digest
from pbx.sip.message import Response
from pbx.sip.parser import StreamFramer, parse_message

_counter = itertools.count(1)


@dataclass
class SipClient:
    transport: str  # "udp" or "tcp"
    server: tuple[str, int]
    timeout: float = 3.0
    sock: socket.socket = field(init=False)
    _framer: StreamFramer = field(init=False, default_factory=StreamFramer)
    _frames: list[bytes] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(self.timeout)
        if self.transport == "udp":
            self.sock.bind(("127.0.0.1", 0))
        else:
            self.sock.connect(self.server)

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def receive(self, timeout: float | None = None) -> Response | None:
        """The next message from the server, or None after ``timeout``."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            if self.transport == "udp":
                data, _ = self.sock.recvfrom(65535)
                message = parse_message(data)
            else:
                while not self._frames:
                    chunk = self.sock.recv(65535)
                    if not chunk:
                        return None
                    self._frames.extend(f for f in self._framer.feed(chunk) if f.strip())
                message = parse_message(self._frames.pop(0))
        except (socket.timeout, TimeoutError, ConnectionResetError):
            return None  # nothing came, or the server closed the connection
        assert isinstance(message, Response), message
        return message

    def final_response(self, timeout: float | None = None) -> Response | None:
        """Skip provisional responses; the first final one, or None."""
        while True:
            response = self.receive(timeout)
            if response is None or response.status >= 200:
                return response

    def register_request(
        self,
        user: str,
        domain: str,
        *,
        call_id: str,
        cseq: int,
        contact: str | None = "default",
        expires: int | None = 600,
        authorization: str | None = None,
        user_agent: str | None = None,
    ) -> bytes:
        host, port = self.local
        lines = [
            f"REGISTER sip:{domain} SIP/2.0",
            f"Via: SIP/2.0/{self.transport.upper()} {host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{domain}>;tag={secrets.token_hex(4)}",
            f"To: <sip:{user}@{domain}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
        ]
        if contact == "default":
            contact = f"<sip:{user}@{host}:{port};transport={self.transport}>"
        if contact is not None:
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization:
            lines.append(f"Authorization: {authorization}")
        if user_agent:
            lines.append(f"User-Agent: {user_agent}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def register(
        self,
        user: str,
        password: str,
        domain: str,
        *,
        contact: str | None = "default",
        expires: int | None = 600,
        username: str | None = None,
        user_agent: str | None = None,
    ) -> Response | None:
        """REGISTER, answer one 401 challenge, return the final answer."""
        call_id = f"reg-{next(_counter)}-{secrets.token_hex(4)}"
        self.send_raw(self.register_request(user, domain, call_id=call_id, cseq=1, contact=contact, expires=expires,
                                            user_agent=user_agent))
        first = self.final_response()
        if first is None or first.status != 401:
            return first
        challenge = digest.choose_challenge(first.get_all("www-authenticate"))
        assert challenge is not None
        answer = digest.answer_challenge(
            challenge,
            username=username or user,
            password=password,
            method="REGISTER",
            uri=f"sip:{domain}",
            cnonce=secrets.token_hex(4),
            nc=1,
        )
        self.send_raw(
            self.register_request(
                user, domain, call_id=call_id, cseq=2, contact=contact, expires=expires, authorization=answer,
                user_agent=user_agent,
            )
        )
        return self.final_response()

    def options_request(self, domain: str, n: int) -> bytes:
        """An out-of-dialog OPTIONS, the ``n``-th of a run (its tag and Call-ID), as floods send."""
        host, port = self.local
        return (f"OPTIONS sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:probe@{domain}>;tag={n}\r\nTo: <sip:{domain}>\r\n"
                f"Call-ID: flood-{n}-{secrets.token_hex(4)}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()

    def invite_request(self, user: str, number: str, domain: str, *, call_id: str, cseq: int, branch: str,
                       from_tag: str, proxy_authorization: str | None = None) -> bytes:
        host, port = self.local
        lines = [
            f"INVITE sip:{number}@{domain} SIP/2.0",
            f"Via: SIP/2.0/{self.transport.upper()} {host}:{port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{domain}>;tag={from_tag}",
            f"To: <sip:{number}@{domain}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{user}@{host}:{port};transport={self.transport}>",
        ]
        if proxy_authorization:
            lines.append(f"Proxy-Authorization: {proxy_authorization}")
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def ack(self, invite: bytes, response: Response) -> None:
        """ACK a non-2xx final response to ``invite`` (§17.1.1.3)."""
        head = invite.decode().split("\r\n")
        via = next(line for line in head if line.startswith("Via:"))
        call_id = next(line for line in head if line.startswith("Call-ID:"))
        from_ = next(line for line in head if line.startswith("From:"))
        cseq = next(line for line in head if line.startswith("CSeq:")).split()[1]
        lines = [head[0].replace("INVITE", "ACK", 1), via, "Max-Forwards: 70", from_,
                 f"To: {response.get('to')}", call_id, f"CSeq: {cseq} ACK", "Content-Length: 0"]
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    def invite(self, user: str, password: str, number: str, domain: str,
               *, username: str | None = None) -> tuple[Response | None, Response | None]:
        """INVITE ``number`` as ``user``; answer the 407 with ``password``.
        Returns the first and the second final response (None: none came)."""
        call_id, from_tag = f"inv-{next(_counter)}-{secrets.token_hex(4)}", secrets.token_hex(4)
        first_request = self.invite_request(user, number, domain, call_id=call_id, cseq=1, from_tag=from_tag,
                                            branch=f"z9hG4bK{secrets.token_hex(8)}")
        self.send_raw(first_request)
        first = self.final_response()
        if first is None or first.status != 407:
            return first, None
        self.ack(first_request, first)
        challenge = digest.choose_challenge(first.get_all("proxy-authenticate"))
        assert challenge is not None
        answer = digest.answer_challenge(
            challenge, username=username or user, password=password, method="INVITE",
            uri=f"sip:{number}@{domain}", cnonce=secrets.token_hex(4), nc=1,
        )
        second_request = self.invite_request(user, number, domain, call_id=call_id, cseq=2, from_tag=from_tag,
                                             branch=f"z9hG4bK{secrets.token_hex(8)}", proxy_authorization=answer)
        self.send_raw(second_request)
        second = self.final_response()
        if second is not None:
            self.ack(second_request, second)
        return first, second
