"""A raw-socket SIP user agent for presence and chat tests against a real
``pbx serve``: it sends requests (answering one 407 with digest), reads
requests and responses as they come, and answers what it is sent."""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass, field
from xml.etree import ElementTree

from pbx.sip import digest
from pbx.sip.message import Message, Request, Response, make_response
from pbx.sip.parser import parse_message

DOMAIN = "pbx.example.com"
DIALOG_INFO = "{urn:ietf:params:xml:ns:dialog-info}"


@dataclass
class Agent:
    user: str
    password: str
    server: tuple[str, int]
    sock: socket.socket = field(init=False)
    inbox: list[Message] = field(init=False, default_factory=list)
    cseq: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def close(self) -> None:
        self.sock.close()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def build(self, method: str, uri: str, *, call_id: str, from_tag: str, to_tag: str | None = None,
              headers: list[str] | None = None, body: bytes = b"", auth: str | None = None,
              to_user: str | None = None) -> bytes:
        self.cseq += 1
        to = f"<sip:{to_user or uri.split(':', 1)[1].split('@')[0]}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
            *(headers or []),
        ]
        if auth is not None:
            lines.append(f"Proxy-Authorization: {auth}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def register(self, expires: int = 600) -> Response:
        """REGISTER this socket as the user's contact (answering the 401)."""
        call_id, from_tag, uri = secrets.token_hex(8), secrets.token_hex(4), f"sip:{DOMAIN}"
        headers = [f"Expires: {expires}"]
        self.send(self.build("REGISTER", uri, call_id=call_id, from_tag=from_tag, headers=headers,
                             to_user=self.user))
        response = self.response("REGISTER")
        if response.status == 401:
            challenge = digest.choose_challenge(response.get_all("www-authenticate"))
            assert challenge is not None
            answer = digest.answer_challenge(challenge, username=self.user, password=self.password,
                                             method="REGISTER", uri=uri, cnonce=secrets.token_hex(4), nc=1)
            self.send(self.build("REGISTER", uri, call_id=call_id, from_tag=from_tag, to_user=self.user,
                                 headers=[*headers, f"Authorization: {answer}"]))
            response = self.response("REGISTER")
        return response

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def request(self, method: str, uri: str, *, headers: list[str] | None = None, body: bytes = b"",
                call_id: str | None = None, from_tag: str | None = None, to_tag: str | None = None,
                authenticate: bool = True, timeout: float = 3.0) -> Response:
        """Send a request (answering a 407 once); its final response."""
        response = self.send_request(method, uri, headers=headers, body=body, call_id=call_id, from_tag=from_tag,
                                     to_tag=to_tag, authenticate=authenticate, timeout=timeout)
        return response if response is not None else self.response(method, timeout)

    def send_request(self, method: str, uri: str, *, headers: list[str] | None = None, body: bytes = b"",
                     call_id: str | None = None, from_tag: str | None = None, to_tag: str | None = None,
                     authenticate: bool = True, timeout: float = 3.0) -> Response | None:
        """Send a request; answer a 407 once and return without waiting for
        the authenticated request's answer (None), or the first final
        response when it was not a 407."""
        call_id = call_id or secrets.token_hex(8)
        from_tag = from_tag or secrets.token_hex(4)
        self.send(self.build(method, uri, call_id=call_id, from_tag=from_tag, to_tag=to_tag, headers=headers,
                             body=body))
        response = self.response(method, timeout)
        if response.status != 407 or not authenticate:
            return response
        challenge = digest.choose_challenge(response.get_all("proxy-authenticate"))
        assert challenge is not None
        answer = digest.answer_challenge(challenge, username=self.user, password=self.password, method=method,
                                         uri=uri, cnonce=secrets.token_hex(4), nc=1)
        self.send(self.build(method, uri, call_id=call_id, from_tag=from_tag, to_tag=to_tag, headers=headers,
                             body=body, auth=answer))
        return None

    def _read(self, timeout: float) -> Message | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except (socket.timeout, TimeoutError):
            return None
        return parse_message(data)

    def _next(self, want: type[Message], method: str, timeout: float) -> Message | None:
        for index, message in enumerate(self.inbox):
            if isinstance(message, want) and message.cseq.method == method:
                return self.inbox.pop(index)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            read = self._read(left)
            if read is None:
                return None
            message = read
            if isinstance(message, want) and message.cseq.method == method and not (
                    isinstance(message, Response) and message.status < 200):
                return message
            if not (isinstance(message, Response) and message.status < 200):
                self.inbox.append(message)
        return None

    def response(self, method: str, timeout: float = 3.0) -> Response:
        """The next final response to a ``method`` request."""
        found = self._next(Response, method, timeout)
        assert isinstance(found, Response), f"no final response to {method} within {timeout} s"
        return found

    def incoming(self, method: str, timeout: float = 3.0, *, status: int | None = 200) -> Request:
        """The next ``method`` request sent to us, answered ``status``."""
        found = self._next(Request, method, timeout)
        assert isinstance(found, Request), f"no {method} within {timeout} s; inbox {self.inbox}"
        if status is not None:
            self.answer(found, status)
        return found

    def answer(self, request: Request, status: int) -> None:
        response = make_response(request, status, to_tag=secrets.token_hex(4))
        via = request.top_via
        host, port = via.sent_by
        received = via.params.get("received") or host
        rport = via.params.get("rport")
        self.sock.sendto(response.encode(), (received, int(rport) if rport else port or 5060))

    def nothing(self, method: str, timeout: float) -> bool:
        """True when no ``method`` request comes within ``timeout``."""
        return self._next(Request, method, timeout) is None


def dialog_info(notify: Request) -> ElementTree.Element:
    """The NOTIFY's body checked against RFC 4235 §4: root ``dialog-info``
    in its namespace with ``version``, ``state`` and ``entity``; each
    ``dialog`` with an ``id`` and one ``state`` of the §4.1.3 values."""
    assert notify.get("content-type") == "application/dialog-info+xml"
    root = ElementTree.fromstring(notify.body)
    assert root.tag == f"{DIALOG_INFO}dialog-info"
    assert root.get("version", "").isdigit() and root.get("state") in ("full", "partial")
    assert (root.get("entity") or "").startswith("sip:")
    for dialog in root.findall(f"{DIALOG_INFO}dialog"):
        assert dialog.get("id")
        states = dialog.findall(f"{DIALOG_INFO}state")
        assert len(states) == 1 and states[0].text in ("trying", "proceeding", "early", "confirmed", "terminated")
        assert dialog.get("direction") in (None, "initiator", "recipient")
    return root


def dialog_states(root: ElementTree.Element) -> list[str]:
    return [dialog.findtext(f"{DIALOG_INFO}state") or "" for dialog in root.findall(f"{DIALOG_INFO}dialog")]
