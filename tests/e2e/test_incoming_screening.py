"""Black lists for incoming callers against a real `pbx serve`: the
provider's gateway (a UDP socket of the test's) sends an INVITE with SDP to
one of our DIDs from a number on the company's black list. With
``incoming.blocked: refuse`` (the default) the caller gets 603 and nothing
else; with ``announce`` it first hears "not available" (183 with SDP, RTP
to the port its offer names), then 603. Either way a REJECTED CDR with the
reason ``caller_blocked``."""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import pytest

from pbx.sip.message import Response
from pbx.sip.parser import parse_message
from tests.server import free_port

from .test_trunks import DOMAIN, PROVIDER_DOMAIN, Pbx, dialplan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SCREENING = """\
number_plans:
  vietnam:
    country_code: "84"
    national_prefix: "0"
    international_prefixes: ["00"]
    entries:
      - {pattern: "0ZXXXXXXX.", class: national}
number_lists:
  nuisance: ["+84 90 999 XXXX"]
incoming:
  blacklist: [nuisance]
"""


def plan(gateway: int, blocked: str) -> str:
    text = dialplan((gateway, free_port()), register=False)
    start = text.index("number_plans:")
    end = text.index("classes_of_service:")
    text = text[:start] + text[end:]  # this plan's number plan knows the country, for E.164 callers
    return text + SCREENING + f"  blocked: {blocked}\n"


def invite(sock: socket.socket, caller: str, rtp_port: int) -> bytes:
    host, port = sock.getsockname()
    branch = "z9hG4bK" + secrets.token_hex(6)
    sdp = (f"v=0\r\no=provider 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n")
    return (
        f"INVITE sip:+842873000100@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{caller}@{PROVIDER_DOMAIN}>;tag=r{branch[-4:]}\r\n"
        f"To: <sip:+842873000100@{DOMAIN}>\r\nCall-ID: screen-{branch}\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:gw@{host}:{port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def responses_until_final(sock: socket.socket) -> list[Response]:
    found: list[Response] = []
    while not found or found[-1].status < 200:
        message = parse_message(sock.recv(65535))
        if isinstance(message, Response):
            found.append(message)
    return found


@pytest.mark.parametrize("blocked", ["refuse", "announce"])
def test_a_blacklisted_caller_is_refused_or_told_and_the_cdr_says_rejected(tmp_path: Path, blocked: str) -> None:
    gateway = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gateway.bind(("127.0.0.1", 0))
    gateway.settimeout(10.0)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setblocking(False)
    pbx = Pbx(tmp_path, plan(gateway.getsockname()[1], blocked))
    pbx.start()
    try:
        gateway.sendto(invite(gateway, "0909990005", rtp.getsockname()[1]), ("127.0.0.1", pbx.server.udp_port))
        answers = responses_until_final(gateway)
        packets = 0
        while True:
            try:
                rtp.recv(2048)
                packets += 1
            except BlockingIOError:
                break
        row = pbx.cdr("+842873000100")
        time.sleep(0.2)
    finally:
        pbx.stop()
        gateway.close()
        rtp.close()
    statuses = [response.status for response in answers]
    if blocked == "announce":
        assert statuses[-1] == 603 and 183 in statuses, statuses
        early = next(response for response in answers if response.status == 183)
        assert b"m=audio" in early.body
        assert packets > 25, packets  # more than half a second of the prompt arrived before the 603
    else:
        assert statuses == [100, 603] or statuses == [603], statuses
        assert packets == 0
    assert (row["disposition"], row["reason"], row["hangup_status"]) == ("REJECTED", "caller_blocked", "603")
    assert row["caller_number"] == "0909990005"
