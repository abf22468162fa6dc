"""Legitimate calls for bench/flood.py: one extension that answers every
call at once, and a caller that places short calls to it through the PBX
(INVITE with SDP, its 407, the INVITE with credentials, 200, ACK, BYE,
200), each timed from the first INVITE to the 200.

Plain blocking sockets on 127.0.0.1, the callee on a thread: what the PBX
does per call (challenge, route, registrar lookup, B2BUA legs, CDR) is the
work a flood competes with, not the phones'.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from make_users import User

from pbx.sip import digest
from pbx.sip.errors import SipError
from pbx.sip.message import Request, Response, make_response, parse_name_addr
from pbx.sip.parser import parse_message

SDP: Final = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
              "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


class Callee:
    """``user`` registered from its own socket, answering on a thread."""

    def __init__(self, port: int, user: User, register: Callable[[socket.socket, int, User], float | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.user = user
        if register(self.sock, port, user) is None:
            raise SystemExit(f"the callee {user.extension} could not register")
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        host, port = self.sock.getsockname()[:2]
        contact = ("contact", f"<sip:{self.user.extension}@{host}:{port}>")
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
                message = parse_message(data)
            except (TimeoutError, socket.timeout):
                continue
            except SipError:
                continue
            if not isinstance(message, Request):
                continue
            if message.method == "INVITE":
                answer = make_response(message, 200, "OK", to_tag=secrets.token_hex(4),
                                       headers=[contact, ("content-type", "application/sdp")],
                                       body=SDP.format(port=42000).encode())
                self.answered += 1
            elif message.method in ("BYE", "OPTIONS", "CANCEL"):
                answer = make_response(message, 200, "OK")
            else:
                continue  # ACK
            self.sock.sendto(answer.encode(), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def call_once(sock: socket.socket, port: int, caller: User, callee: str, domain: str,
              timeout: float = 3.0) -> float | None:
    """One short call; seconds from the first INVITE to the 200, or None."""
    host, local_port = sock.getsockname()[:2]
    server = ("127.0.0.1", port)
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    target = f"sip:{callee}@{domain}"
    body = SDP.format(port=41000).encode()

    def request(method: str, cseq: int, uri: str = target, to_tag: str | None = None,
                extra: Sequence[str] = (), content: bytes = b"") -> bytes:
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {host}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
                 "Max-Forwards: 70", f"From: <sip:{caller.extension}@{domain}>;tag={tag}",
                 f"To: <{target}>" + (f";tag={to_tag}" if to_tag else ""), f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}", f"Contact: <sip:{caller.extension}@{host}:{local_port}>", *extra]
        if content:
            lines.append("Content-Type: application/sdp")
        return ("\r\n".join([*lines, f"Content-Length: {len(content)}"]) + "\r\n\r\n").encode() + content

    def final(cseq: int, deadline: float) -> Response | None:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                message = parse_message(sock.recv(65535))
            except (TimeoutError, socket.timeout):
                return None
            except SipError:
                continue
            if isinstance(message, Response) and message.status >= 200 and message.call_id == call_id \
                    and message.cseq.number == cseq:
                return message
        return None

    start = time.monotonic()
    deadline = start + timeout
    sock.sendto(request("INVITE", 1, content=body), server)
    challenge = final(1, deadline)
    if challenge is None or challenge.status != 407:
        return None
    sock.sendto(request("ACK", 1, to_tag=challenge.to.tag), server)
    value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
    if value is None:
        return None
    answer = digest.answer_challenge(value, username=caller.extension, password=caller.password or "",
                                     method="INVITE", uri=target, cnonce=secrets.token_hex(4), nc=1)
    sock.sendto(request("INVITE", 2, extra=[f"Proxy-Authorization: {answer}"], content=body), server)
    ok = final(2, deadline)
    if ok is None or ok.status != 200:
        return None
    took = time.monotonic() - start
    contacts = ok.get_all("contact")
    remote = parse_name_addr(contacts[0]).uri if contacts else target  # the PBX's side of the dialog
    sock.sendto(request("ACK", 2, uri=remote, to_tag=ok.to.tag), server)
    sock.sendto(request("BYE", 3, uri=remote, to_tag=ok.to.tag), server)
    bye = final(3, time.monotonic() + timeout)
    return took if bye is not None and bye.status == 200 else None
