"""Caps on one extension's outside calls, end to end: a real `pbx serve`
with the shipped defaults (4 at once, 10 a minute), SIPp as the trunk
provider (sipp-scenarios/provider_uas.xml) and extension 1001 as a raw SIP
client on a UDP socket, placing calls as fast as it can, as a stolen
password would.

A burst of 20 calls: 4 reach the provider and are answered, 16 are refused
486 at once with the cap in Reason and Warning, each with a REJECTED CDR
(``pbx cdr list --csv``) and a ``call_limit_hit`` log line. Once those end,
calls one after another go out until 10 started within the minute; the
11th is refused for the rate, with a Retry-After.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from pathlib import Path

import pytest

from pbx.sip import digest
from pbx.sip.message import Request, Response, make_request
from pbx.sip.parser import parse_message
from pbx.sip.transaction import build_non_2xx_ack
from tests.server import free_port

from .test_trunks import DOMAIN, Pbx, dialplan, provider

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp is not installed"),
]

NUMBER = "0912345678"
BURST = 20


class RawPhone:
    """Extension 1001 on one UDP socket: many calls at once, told apart by
    Call-ID; digest answers by our client half (pbx.sip.digest)."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.host, self.port = self.sock.getsockname()
        self.responses: dict[str, list[Response]] = {}

    def close(self) -> None:
        self.sock.close()

    def send(self, request: Request) -> None:
        self.sock.sendto(request.encode(), self.server)

    def request(self, method: str, call_id: str, cseq: int, *, to: str, uri: str | None = None,
                auth: str | None = None) -> Request:
        headers = [
            ("via", f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"),
            ("max-forwards", "70"), ("from", f"<sip:1001@{DOMAIN}>;tag=t-{call_id}"), ("to", to),
            ("call-id", call_id), ("cseq", f"{cseq} {method}"), ("contact", f"<sip:1001@{self.host}:{self.port}>"),
        ]
        if auth is not None:
            headers.append(("proxy-authorization", auth))
        body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"
        if method != "INVITE":
            body = b""
        else:
            headers.append(("content-type", "application/sdp"))
        return make_request(method, uri or f"sip:{NUMBER}@{self.server[0]}:{self.server[1]}", headers, body)

    def wait(self, done: list[tuple[str, int, str]], timeout: float = 10.0) -> dict[str, Response]:
        """Read until each (Call-ID, CSeq number, method) has a final response; those responses."""
        deadline = time.monotonic() + timeout
        found: dict[str, Response] = {}
        while True:
            for call_id, cseq, method in done:
                for response in self.responses.get(call_id, []):
                    if response.status >= 200 and (response.cseq.number, response.cseq.method) == (cseq, method):
                        found.setdefault(call_id, response)
            if len(found) == len(done):
                return found
            left = deadline - time.monotonic()
            assert left > 0, f"no final response for {[d for d in done if d[0] not in found]}"
            self.sock.settimeout(left)
            message = parse_message(self.sock.recv(65535))
            assert isinstance(message, Response), message  # the PBX sends this phone no request here
            self.responses.setdefault(message.call_id, []).append(message)

    def place(self, call_ids: list[str]) -> dict[str, tuple[Request, Response]]:
        """INVITE all, answer every 407, then send all the INVITEs with
        credentials back to back; each call's INVITE and final response
        (ACKed as §17.1.1.3 and §13.2.2.4 say)."""
        first = {call_id: self.request("INVITE", call_id, 1, to=f"<sip:{NUMBER}@{DOMAIN}>") for call_id in call_ids}
        for invite in first.values():
            self.send(invite)
        challenges = self.wait([(call_id, 1, "INVITE") for call_id in call_ids])
        second = {}
        for call_id, challenge in challenges.items():
            assert challenge.status == 407, challenge
            self.send(build_non_2xx_ack(first[call_id], challenge))
            value = digest.choose_challenge(challenge.get_all("proxy-authenticate"))
            assert value is not None
            auth = digest.answer_challenge(value, username="1001", password="an-secret-1001", method="INVITE",
                                           uri=first[call_id].uri, cnonce=secrets.token_hex(4), nc=1)
            second[call_id] = self.request("INVITE", call_id, 2, to=f"<sip:{NUMBER}@{DOMAIN}>", auth=auth)
        for invite in second.values():
            self.send(invite)
        finals = self.wait([(call_id, 2, "INVITE") for call_id in call_ids])
        for call_id, response in finals.items():
            if response.status >= 300:
                self.send(build_non_2xx_ack(second[call_id], response))
            else:
                self.send(self.request("ACK", call_id, 2, to=response.get("to") or ""))
        return {call_id: (second[call_id], finals[call_id]) for call_id in call_ids}

    def hang_up(self, answered: dict[str, Response]) -> None:
        for call_id, ok in answered.items():
            self.send(self.request("BYE", call_id, 3, to=ok.get("to") or ""))
        byes = self.wait([(call_id, 3, "BYE") for call_id in answered])
        assert {response.status for response in byes.values()} == {200}


def test_a_burst_of_outside_calls_is_capped_and_the_excess_refused_and_recorded(tmp_path: Path) -> None:
    sipp_dir = tmp_path / "sipp"
    sipp_dir.mkdir()
    # The provider takes the 4 calls of the burst and the 6 that follow; a
    # call over a cap must never reach it.
    sipp = provider(sipp_dir, calls=10)
    try:
        pbx = Pbx(tmp_path, dialplan((sipp.port, free_port()), register=False))  # no caps set: the defaults
        pbx.start()
        phone = RawPhone(("127.0.0.1", pbx.server.udp_port))
        try:
            burst = phone.place([f"burst-{index}" for index in range(BURST)])
            answered = {call_id: final for call_id, (_, final) in burst.items() if final.status == 200}
            refused = {call_id: final for call_id, (_, final) in burst.items() if final.status != 200}
            phone.hang_up(answered)
            # One after another: each ends before the next, so only the rate counts.
            for index in range(6):
                ((_, ok),) = phone.place([f"next-{index}"]).values()
                assert ok.status == 200, ok
                phone.hang_up({f"next-{index}": ok})
            ((_, over_rate),) = phone.place(["over-rate"]).values()
            deadline = time.monotonic() + 10
            while len([r for r in pbx.cdr_rows() if r["ended_at"]]) < BURST + 7 and time.monotonic() < deadline:
                time.sleep(0.2)
            rows = pbx.cdr_rows()
            hits = pbx.logged("call_limit_hit")
        finally:
            phone.close()
            pbx.stop()
        assert sipp.wait() == 0, sipp.describe()
    finally:
        sipp.stop()

    assert (len(answered), len(refused)) == (4, 16)
    for response in refused.values():
        assert (response.status, response.reason) == (486, "Outside Call Limit")
        assert response.get("reason") == 'SIP;cause=486;text="outside_calls_simultaneous_limit"'
        assert response.get("warning") == (f'399 {DOMAIN} "security.outside_calls.simultaneous:'
                                           ' at most 4 outside calls at once"')
    assert (over_rate.status, over_rate.get("reason")) == (486, 'SIP;cause=486;text="outside_calls_per_minute_limit"')
    assert 1 <= int(over_rate.get("retry-after") or "0") <= 60
    # Exactly the admitted calls reached the provider: 4 + 6 Call-IDs.
    placed = {invite.header("Call-ID") for invite in sipp.requests("INVITE")}
    assert len(placed) == 10, placed

    by_call_id = {row["call_id"]: row for row in rows}
    assert len(rows) == BURST + 7
    for call_id in refused:
        row = by_call_id[call_id]
        assert (row["caller_number"], row["dialed_number"], row["disposition"], row["reason"],
                row["hangup_status"]) == ("1001", NUMBER, "REJECTED", "outside_calls_simultaneous_limit", "486")
    assert (by_call_id["over-rate"]["disposition"], by_call_id["over-rate"]["reason"]) == (
        "REJECTED", "outside_calls_per_minute_limit")
    assert {by_call_id[call_id]["disposition"] for call_id in [*answered, *(f"next-{i}" for i in range(6))]} == {
        "ANSWERED"}
    assert sorted((e["extension"], e["limit"], e["value"], e["call_id"]) for e in hits) == sorted(
        [("1001", "simultaneous", 4, call_id) for call_id in refused] + [("1001", "per_minute", 10, "over-rate")])
