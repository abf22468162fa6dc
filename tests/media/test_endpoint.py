"""The asyncio edge on real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from pbx.ivr.prompts import PromptLibrary
from pbx.media.codecs import Codec, rms
from pbx.media.endpoint import MediaEngine, MediaSession
from pbx.media.events import Digit, DigitSource
from pbx.media.player import Prompt
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.rtcp import Goodbye, SenderReport, parse_rtcp
from pbx.media.rtp import RtpPacket, parse_rtp
from pbx.media.sdp import SdpError

HOST = "127.0.0.1"


class Collector(asyncio.DatagramProtocol):
    """A plain UDP socket standing in for a phone: keeps what arrives and when."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.arrivals.append((asyncio.get_running_loop().time(), data))


def phone_offer(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")


def test_a_prompt_is_played_paced_to_a_plain_socket_then_ports_are_released() -> None:
    audio = PromptLibrary().load("en", "please_hold")

    async def scenario() -> tuple[list[tuple[float, bytes]], bool, int]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41000, 41099))
        transport, phone = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, 0))
        port = transport.get_extra_info("sockname")[1]
        session = await engine.open_session()
        answer = session.answer(phone_offer(port))
        assert f"m=audio {session.rtp_port} RTP/AVP 0 101" in answer
        completed = await asyncio.wait_for(session.play([Prompt(audio)]), audio.seconds + 5)
        session.close()
        transport.close()
        await asyncio.sleep(0.01)
        return phone.arrivals, completed, engine.ports.in_use

    arrivals, completed, in_use = asyncio.run(scenario())
    assert completed and in_use == 0
    packets = [parse_rtp(data) for _, data in arrivals]
    frames = -(-len(audio.payload(Codec.PCMU)) // 160)
    assert len(packets) >= frames
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(packets, packets[1:]))
    # One frame per packet; a tick the loop missed (a loaded machine) shows
    # as a timestamp gap of whole frames, never as a burst.
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in zip(packets, packets[1:])]
    assert all(step >= 160 and step % 160 == 0 for step in steps)
    assert packets[0].marker and {p.payload_type for p in packets} == {0}
    # What arrived is the prompt, non-silent.
    payload = b"".join(p.payload for p in packets)[:len(audio.payload(Codec.PCMU))]
    assert payload == audio.payload(Codec.PCMU)
    assert rms(Codec.PCMU.decode(payload)) > 1000
    # Paced, not sent in a burst: a packet never leaves before its tick, so the
    # run takes about its length in ticks (half of it allows for a receiving
    # loop that was late for the first packets; a burst would take none).
    # How exact the pacing is under load is bench/media_streams.py's to say.
    times = [t for t, _ in arrivals]
    assert times[-1] - times[0] >= (len(times) - 1) * 0.020 * 0.5


async def connected_pair(engine_a: MediaEngine, engine_b: MediaEngine) -> tuple[MediaSession, MediaSession]:
    """A offers (as for an INVITE without SDP), B answers, A accepts."""
    a = await engine_a.open_session()
    b = await engine_b.open_session()
    a.accept(b.answer(a.offer()))
    return a, b


def test_rfc4733_digits_over_real_sockets_come_out_once_each() -> None:
    async def scenario() -> list[Digit]:
        pbx = MediaEngine(bind_host=HOST, ports=PortAllocator(41100, 41199))
        phone = MediaEngine(bind_host=HOST, ports=PortAllocator(41200, 41299))
        a, b = await connected_pair(pbx, phone)
        for key in "2#9":
            assert b.send_digit(key, duration_ms=80)
        digits: list[Digit] = []
        while len(digits) < 3:
            event = await asyncio.wait_for(a.next_event(), 5)
            if isinstance(event, Digit):
                digits.append(event)
        await asyncio.sleep(0.3)   # the redundant end packets arrive after the press
        digits += [e for e in a.events if isinstance(e, Digit)]
        await pbx.close()
        await phone.close()
        await asyncio.sleep(0.01)
        assert pbx.ports.in_use == phone.ports.in_use == 0
        return digits

    digits = asyncio.run(scenario())
    assert [(d.digit, d.source) for d in digits] == [("2", DigitSource.RFC4733), ("#", DigitSource.RFC4733),
                                                     ("9", DigitSource.RFC4733)]


def test_garbage_and_strangers_on_the_rtp_port_change_nothing() -> None:
    async def scenario() -> tuple[int, object]:
        loop = asyncio.get_running_loop()
        pbx = MediaEngine(bind_host=HOST, ports=PortAllocator(41300, 41399))
        phone = MediaEngine(bind_host=HOST, ports=PortAllocator(41400, 41499))
        a, b = await connected_pair(pbx, phone)
        await asyncio.sleep(0.2)                      # b's packets latch a to b
        stranger, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=(HOST, 0))
        for n in range(50):
            stranger.sendto(b"\x00" * n, (HOST, a.rtp_port))
            stranger.sendto(RtpPacket(payload_type=101, sequence=n, timestamp=n, ssrc=99,
                                      payload=bytes([1, 0x80, 0, 160])).serialise(), (HOST, a.rtp_port))
        await asyncio.sleep(0.2)
        destination = a.stream.destination
        digits = sum(isinstance(e, Digit) for e in a.events)
        stranger.close()
        await pbx.close()
        await phone.close()
        return digits, destination == (HOST, b.rtp_port)

    digits, still_latched = asyncio.run(scenario())
    assert digits == 0 and still_latched


def test_port_exhaustion_and_bad_sdp_are_clear_errors() -> None:
    async def scenario() -> None:
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41500, 41501))
        session = await engine.open_session()
        with pytest.raises(PortsExhausted):
            await engine.open_session()
        with pytest.raises(SdpError, match="no common codec"):
            session.answer(phone_offer(5000).replace("RTP/AVP 0 101", "RTP/AVP 18"))
        session.close()
        session.close()
        await asyncio.sleep(0.01)                    # asyncio closes sockets a loop turn later
        again = await engine.open_session()          # the pair is free again
        assert again.rtp_port == 41500
        again.close()

    asyncio.run(scenario())


def test_a_session_opened_at_once_answers_at_once_hears_digits_and_gives_its_ports_back() -> None:
    """open_session_now binds before it returns (the call layer puts the
    port in its 200 in the same step); asyncio takes the sockets a moment
    later, and what the phone sent meanwhile is not lost."""

    async def scenario() -> tuple[list[Digit], int, int]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41200, 41219))
        transport, _ = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, 0))
        port = transport.get_extra_info("sockname")[1]
        received: list[Digit] = []
        session = engine.open_session_now(on_event=lambda e: received.append(e) if isinstance(e, Digit) else None)
        session.answer(phone_offer(port))
        from pbx.media.telephone_event import event_packets
        from pbx.media.rtp import pack_header
        for index, (start, offset, payload) in enumerate(event_packets("7", duration_ms=100)):
            transport.sendto(pack_header(101, index, 1000 + offset, 1234, start) + payload, (HOST, session.rtp_port))
        await asyncio.sleep(0.3)
        busy = engine.ports.in_use
        # One more, closed before asyncio had its sockets: nothing leaks.
        engine.open_session_now().close()
        session.close()
        transport.close()
        await asyncio.sleep(0.05)
        return received, busy, engine.ports.in_use

    received, busy, in_use = asyncio.run(scenario())
    assert [d.digit for d in received] == ["7"]
    assert busy == 1 and in_use == 0


def test_rtcp_sender_reports_reach_the_phones_rtcp_port_at_the_interval_then_bye() -> None:
    """While a prompt plays, sender reports go to the port above the phone's
    RTP port (RFC 3550 §11), the first within the randomised initial
    interval (1.0-3.1 s), each counting what was sent so far under the RTP
    stream's SSRC; closing sends a BYE."""
    audio = PromptLibrary().load("en", "welcome")

    async def scenario() -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]], float]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41700, 41799))
        while True:  # an RTP port with its RTCP port free above it
            rtp, phone = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, 0))
            port = rtp.get_extra_info("sockname")[1]
            try:
                rtcp, reports = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, port + 1))
                break
            except OSError:
                rtp.close()
        session = await engine.open_session()
        session.answer(phone_offer(port))
        started = loop.time()
        session.play([Prompt(audio)])
        await asyncio.sleep(min(audio.seconds, 6.5))
        session.close()
        await asyncio.sleep(0.05)
        rtp.close()
        rtcp.close()
        return phone.arrivals, reports.arrivals, started

    arrivals, reports, started = asyncio.run(scenario())
    ssrc = parse_rtp(arrivals[0][1]).ssrc
    assert len(reports) >= 2
    *during, (_, last) = reports
    assert 1.0 - 0.1 <= during[0][0] - started <= 3.1 + 0.5, during[0][0] - started
    for (earlier, _), (later, _) in zip(during, during[1:]):
        assert 2.0 - 0.1 <= later - earlier <= 6.2 + 0.5, later - earlier
    for when, data in during:
        sender = next(p for p in parse_rtcp(data) if isinstance(p, SenderReport))
        sent_by_then = sum(1 for arrived, _ in arrivals if arrived <= when)
        assert sender.ssrc == ssrc and 0 < sender.packet_count <= sent_by_then + 1
        assert sender.octet_count == 160 * sender.packet_count
    assert any(isinstance(p, Goodbye) and ssrc in p.ssrcs for p in parse_rtcp(last))


def test_a_closed_session_and_its_owner_are_freed_by_reference_counting() -> None:
    # The server freezes what survives its collections (pbx/server/gc_tuning.py),
    # so a call left in a reference cycle would wait for an idle sweep. The
    # owner's event handler (a bound method) and the session it holds make
    # such a cycle until the session is closed.
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.session: MediaSession | None = None
            self.seen: list[object] = []

        def on_event(self, event: object) -> None:
            self.seen.append(event)

    async def scenario() -> tuple[bool, bool]:
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41400, 41499))
        owner = Owner()
        owner.session = await engine.open_session(on_event=owner.on_event)
        gone_owner, gone_session = weakref.ref(owner), weakref.ref(owner.session)
        owner.session.close()
        await asyncio.sleep(0.01)  # the sockets' closing, a turn later
        del owner
        return gone_owner() is None, gone_session() is None

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        owner_freed, session_freed = asyncio.run(scenario())
    finally:
        if enabled:
            gc.enable()
    assert owner_freed and session_freed
