"""A small SIP-over-WebSocket user agent (RFC 7118), as a browser phone
(JsSIP, SIP.js) behaves: one connection with the ``sip`` subprotocol, a
``.invalid`` host in Via and Contact, every message in its own frame.
Enough to register, call and be called, for end-to-end tests."""

from __future__ import annotations

import asyncio
import secrets
import ssl
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from pbx.sip import digest
from pbx.sip.message import Request, Response, make_response
from pbx.sip.parser import parse_message

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       "a=fmtp:101 0-15\r\na=sendrecv\r\n")


@dataclass
class WsPhone:
    url: str
    user: str
    password: str
    domain: str
    media_port: int = 40000
    ssl_context: ssl.SSLContext | None = None
    host: str = field(default_factory=lambda: f"{secrets.token_hex(5)}.invalid")
    socket: ClientConnection | None = None
    transport: str = "WS"

    async def open(self) -> None:
        self.socket = await connect(self.url, subprotocols=[Subprotocol("sip")], ssl=self.ssl_context)
        self.transport = "WSS" if self.url.startswith("wss:") else "WS"

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host};transport={self.transport.lower()}>"

    def _via(self) -> str:
        return f"SIP/2.0/{self.transport} {self.host};branch=z9hG4bK{secrets.token_hex(8)}"

    async def send(self, text: str) -> None:
        assert self.socket is not None
        await self.socket.send(text)

    async def receive(self, timeout: float = 5.0) -> Request | Response:
        assert self.socket is not None
        frame = await asyncio.wait_for(self.socket.recv(), timeout)
        return parse_message(frame.encode() if isinstance(frame, str) else frame)

    async def final(self, timeout: float = 5.0) -> Response:
        while True:
            message = await self.receive(timeout)
            if isinstance(message, Response) and message.status >= 200:
                return message

    def _request(self, method: str, uri: str, *, call_id: str, cseq: int, from_tag: str, to: str,
                 headers: list[str] | None = None, body: str = "") -> str:
        lines = [f"{method} {uri} SIP/2.0", f"Via: {self._via()}", "Max-Forwards: 70",
                 f"From: <sip:{self.user}@{self.domain}>;tag={from_tag}", f"To: {to}", f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}", *(headers or [])]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def _answer(self, challenge: Response, header: str, method: str, uri: str) -> str:
        value = digest.choose_challenge(challenge.get_all(header))
        assert value is not None
        return digest.answer_challenge(value, username=self.user, password=self.password, method=method, uri=uri,
                                       cnonce=secrets.token_hex(4), nc=1)

    async def register(self, expires: int = 300) -> Response:
        call_id, tag, uri = secrets.token_hex(8), secrets.token_hex(4), f"sip:{self.domain}"
        headers = [f"Contact: {self.contact}", f"Expires: {expires}"]
        to = f"<sip:{self.user}@{self.domain}>"
        await self.send(self._request("REGISTER", uri, call_id=call_id, cseq=1, from_tag=tag, to=to, headers=headers))
        first = await self.final()
        if first.status != 401:
            return first
        authorization = self._answer(first, "www-authenticate", "REGISTER", uri)
        await self.send(self._request("REGISTER", uri, call_id=call_id, cseq=2, from_tag=tag, to=to,
                                      headers=[*headers, f"Authorization: {authorization}"]))
        return await self.final()

    async def call(self, number: str) -> tuple[Response, str, str]:
        """INVITE ``number`` (answering the 407), ACK the answer; the final
        response, the Call-ID and our tag."""
        call_id, tag, uri = secrets.token_hex(8), secrets.token_hex(4), f"sip:{number}@{self.domain}"
        to = f"<{uri}>"
        body = SDP.format(port=self.media_port)
        headers = [f"Contact: {self.contact}"]
        await self.send(self._request("INVITE", uri, call_id=call_id, cseq=1, from_tag=tag, to=to, headers=headers,
                                      body=body))
        first = await self.final(10.0)
        if first.status != 407:
            return first, call_id, tag
        await self.send(self._request("ACK", uri, call_id=call_id, cseq=1, from_tag=tag, to=first.get("to") or to))
        authorization = self._answer(first, "proxy-authenticate", "INVITE", uri)
        await self.send(self._request("INVITE", uri, call_id=call_id, cseq=2, from_tag=tag, to=to,
                                      headers=[*headers, f"Proxy-Authorization: {authorization}"], body=body))
        answer = await self.final(10.0)
        if answer.status < 300:
            target = (answer.get("contact") or "").strip("<>").split(">")[0]
            await self.send(self._request("ACK", target, call_id=call_id, cseq=2, from_tag=tag,
                                          to=answer.get("to") or to))
        return answer, call_id, tag

    async def hang_up(self, answer: Response, call_id: str, tag: str) -> Response:
        target = (answer.get("contact") or "").strip("<>").split(">")[0]
        await self.send(self._request("BYE", target, call_id=call_id, cseq=3, from_tag=tag,
                                      to=answer.get("to") or ""))
        return await self.final()

    async def answer_incoming(self, timeout: float = 10.0) -> Request:
        """Wait for an INVITE, answer 180 then 200 with our SDP; the INVITE."""
        while True:
            message = await self.receive(timeout)
            if isinstance(message, Request) and message.method == "INVITE":
                break
        for status in (180, 200):
            response = make_response(message, status, to_tag="wsphone", headers=[
                ("contact", self.contact), *([("content-type", "application/sdp")] if status == 200 else [])],
                body=SDP.format(port=self.media_port).encode() if status == 200 else b"")
            await self.send(response.encode().decode())
        return message

    async def expect_request(self, method: str, timeout: float = 10.0) -> Request:
        """The next request of ``method`` (answering a BYE with 200)."""
        while True:
            message = await self.receive(timeout)
            if isinstance(message, Request) and message.method == method:
                if method == "BYE":
                    await self.send(make_response(message, 200).encode().decode())
                return message
