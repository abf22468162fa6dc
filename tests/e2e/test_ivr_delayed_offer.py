"""An INVITE without SDP to the auto attendant, played by hand on real
sockets: the PBX's 200 carries its offer (RFC 3264 with telephone-event),
the caller answers in the ACK, hears the greeting paced from the offered
address, keys 1 as RFC 4733 events from its own RTP socket, and after the
callee answers is re-INVITEd with the callee's offer, its answer going
back to the callee in the ACK. And a phone behind NAT: the greeting
follows its packets, not its SDP."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from pbx.media.codecs import Codec, rms
from pbx.media.rtp import RtpPacket, parse_rtp
from pbx.media.telephone_event import event_packets
from pbx.sip.message import Response

from .harness import AGENT_EXTENSIONS, Agents, Pbx
from .sipua import sdp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

DIALPLAN = "domain: pbx.example.com\n" + AGENT_EXTENSIONS + """\
media: {rtp_ports: "37000-37099", language: en, tones: VN}
ivr_menus:
  main:
    number: "800"
    greeting: welcome
    options:
      "1": {extension: "2002"}
    timeout: 10
"""


@pytest.fixture
def dialplan() -> str:
    return DIALPLAN


@pytest.fixture
def rtp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def offered(body: bytes) -> tuple[tuple[str, int], int]:
    """(address, port) of the offer's audio stream, its telephone-event type."""
    text = body.decode()
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", text, re.M)
    event = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", text, re.M)
    assert host and media and event, text
    assert "0" in media.group(2).split(), text  # PCMU offered
    return (host.group(1), int(media.group(1))), int(event.group(1))


def answer(port: int, event_type: int) -> bytes:
    return ("v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 {event_type}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{event_type} telephone-event/8000\r\na=sendrecv\r\n").encode()


def listen(sock: socket.socket, seconds: float) -> list[tuple[float, tuple[str, int], RtpPacket]]:
    """Every RTP packet that arrives within ``seconds``, with its arrival time."""
    got = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            break
        got.append((time.monotonic(), source, parse_rtp(data)))
    return got


def test_an_invite_without_sdp_gets_an_offer_hears_the_greeting_and_keys_through(
        pbx: Pbx, agents: Agents, rtp: socket.socket) -> None:
    a = agents.alice.invite("800")  # no body: the PBX must offer
    ok = a.expect_response(200, method="INVITE")
    a.confirm(ok)
    pbx_media, event_type = offered(ok.body)
    a.ack(body=answer(rtp.getsockname()[1], event_type))

    # The greeting: PCMU from the offered address, one packet per 20 ms, speech.
    packets = listen(rtp, 1.5)
    assert {source for _, source, _ in packets} == {pbx_media}
    assert {packet.payload_type for _, _, packet in packets} == {0}
    assert 65 <= len(packets) <= 80, len(packets)
    gaps = np.diff([arrived for arrived, _, _ in packets])
    assert abs(float(np.median(gaps)) - 0.020) < 0.003, gaps
    assert [p.sequence for _, _, p in packets] == [(packets[0][2].sequence + i) % 65536 for i in range(len(packets))]
    assert rms(b"".join(Codec.PCMU.decode(p.payload) for _, _, p in packets)) > 300

    # Key 1 as RFC 4733 events from the socket we answered with.
    for index, (marker, offset, payload) in enumerate(event_packets("1")):
        rtp.sendto(RtpPacket(payload_type=event_type, sequence=1000 + index, timestamp=8000 + offset,
                             ssrc=0x1234, marker=marker, payload=payload).serialise(), pbx_media)
        time.sleep(0.02)

    # Bob is offered nothing (the caller's media is the PBX's yet): his 200
    # offers, the caller is re-INVITEd with that offer and her answer goes
    # to Bob in the ACK; the PBX leaves the media path.
    b_invite = agents.bob.expect_request("INVITE")
    assert b_invite.body == b""
    b = agents.bob.answer_dialog(b_invite)
    agents.bob.respond(b_invite, 200, to_tag=b.local_tag, body=sdp(42000))
    reinvite = a.expect_request("INVITE")
    assert "m=audio 42000 " in reinvite.body.decode(), reinvite.body
    mine = answer(rtp.getsockname()[1], event_type)
    agents.alice.respond(reinvite, 200, body=mine)
    a.expect_request("ACK")
    assert agents.bob.expect_request("ACK", call_id=b.call_id).body == mine
    pbx.server.wait_lines("direct_media", timeout=5.0)
    time.sleep(0.3)
    listen(rtp, 0.1)  # what was on its way
    assert listen(rtp, 0.5) == []  # nothing more from the PBX

    a.send("BYE")
    bye = b.expect_request("BYE")
    agents.bob.respond(bye, 200)
    assert isinstance(a.expect_response(200, method="BYE"), Response)
    row = pbx.cdr_for("2001", "800")
    assert (row["disposition"], row["destination"], row["ivr_path"]) == ("ANSWERED", "2002", "main[1]")


def test_a_phone_behind_nat_hears_the_greeting_where_its_packets_come_from(
        pbx: Pbx, agents: Agents, rtp: socket.socket) -> None:
    """The SDP names one port (what a phone behind NAT believes is its
    address), the packets come from another: after the first of them the
    greeting goes where they come from (symmetric RTP), no longer to the
    address in the SDP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as named:
        named.bind(("127.0.0.1", 0))
        a = agents.alice.invite("800", body=answer(named.getsockname()[1], 101))  # an offer of the same shape
        ok = a.expect_response(200, method="INVITE")
        a.confirm(ok)
        a.ack()
        pbx_media, _ = offered(ok.body)
        assert listen(named, 0.5), "the greeting goes to the SDP's address first"
        assert listen(rtp, 0.1) == []
        for index in range(3):  # silence from the phone's real (mapped) address
            rtp.sendto(RtpPacket(payload_type=0, sequence=500 + index, timestamp=160 * index, ssrc=0x4321,
                                 payload=bytes([0xFF]) * 160).serialise(), pbx_media)
            time.sleep(0.02)
        listen(named, 0.1)  # on its way before the latch
        packets = listen(rtp, 1.0)
        assert len(packets) >= 45 and {source for _, source, _ in packets} == {pbx_media}, len(packets)
        assert listen(named, 0.3) == []
        assert rms(b"".join(Codec.PCMU.decode(p.payload) for _, _, p in packets)) > 300
    a.send("BYE")
    assert isinstance(a.expect_response(200, method="BYE"), Response)
