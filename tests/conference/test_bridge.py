"""The bridge on real UDP sockets on 127.0.0.1: three plain sockets stand in
for phones, each sending a tone of its own to its member's media session;
each hears the other two and not itself; a fourth finds the room full;
``*6`` from a member mutes it for the others."""

from __future__ import annotations

import asyncio
import struct

import numpy as np

from pbx.conference.bridge import ConferenceBridge, Seat
from pbx.conference.room import Refusal
from pbx.media.audio_file import Audio
from pbx.media.codecs import Codec, rms
from pbx.media.endpoint import MediaEngine
from pbx.media.ports import PortAllocator
from pbx.media.rtp import parse_rtp
from pbx.routing.conferences import Conference

HOST = "127.0.0.1"
TONES = (500.0, 900.0, 1400.0)
ROOM = Conference(key="team", number="850", max_members=3)
MUSIC = Audio(linear=(np.sin(np.arange(8000) * 2 * np.pi * 300 / 8000) * 8000).astype(np.int16).tobytes())


class Phone(asyncio.DatagramProtocol):
    """A plain UDP socket: sends a tone as PCMU every 20 ms, keeps what comes back."""

    def __init__(self, frequency: float, index: int) -> None:
        self.heard: list[bytes] = []
        self.index = index
        samples = (6000 * np.sin(2 * np.pi * frequency * np.arange(8000) / 8000)).astype(np.int16)
        self.frames = [Codec.PCMU.encode(samples[i:i + 160].tobytes()) for i in range(0, 8000, 160)]
        self.sequence = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        packet = parse_rtp(data)
        if packet.payload_type == 0:
            self.heard.append(Codec.PCMU.decode(packet.payload))

    def packet(self) -> bytes:
        self.sequence += 1
        header = struct.pack("!BBHII", 0x80, 0, self.sequence, 160 * self.sequence, 0x1000 + self.index)
        return header + self.frames[self.sequence % len(self.frames)]


def offer(port: int) -> str:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")


def strength(heard: list[bytes], frequency: float) -> float:
    samples = np.frombuffer(b"".join(heard), dtype=np.int16).astype(float)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    bins = np.fft.rfftfreq(len(samples), 1 / 8000)
    return float(spectrum[(bins > frequency - 15) & (bins < frequency + 15)].max())


def test_each_member_hears_the_others_and_a_muted_one_is_left_out() -> None:
    async def scenario() -> tuple[list[list[bytes]], list[list[bytes]], Refusal | Seat]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(42000, 42099))
        bridge = ConferenceBridge(engine)
        phones, sockets, seats = [], [], []
        for index, frequency in enumerate(TONES):
            phone = Phone(frequency, index)
            transport, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=(HOST, 0))
            session = await engine.open_session(on_event=lambda event: None)
            session.answer(offer(transport.get_extra_info("sockname")[1]))
            seat = bridge.enter(ROOM, session, moderator=False, sounds={}, on_drop=lambda: None, music=MUSIC)
            assert isinstance(seat, Seat)
            phones.append(phone)
            sockets.append((transport, session.rtp_port))
            seats.append(seat)
        fourth = bridge.enter(ROOM, seats[0].session, moderator=True, sounds={}, on_drop=lambda: None)

        async def talk(ticks: int) -> None:
            for _ in range(ticks):
                for index, (transport, port) in enumerate(sockets):
                    transport.sendto(phones[index].packet(), (HOST, port))
                await asyncio.sleep(0.02)

        await talk(25)  # join tones over, jitter buffers filled
        for phone in phones:
            phone.heard.clear()
        await talk(50)
        mixed = [list(phone.heard) for phone in phones]
        bridge.key(seats[0], "*", loop.time())
        bridge.key(seats[0], "6", loop.time())  # member 0 mutes itself
        await talk(10)
        for phone in phones:
            phone.heard.clear()
        await talk(50)
        muted = [list(phone.heard) for phone in phones]
        for transport, _ in sockets:
            transport.close()
        await engine.close()
        return mixed, muted, fourth

    mixed, muted, fourth = asyncio.run(scenario())
    assert fourth is Refusal.FULL
    for index, heard in enumerate(mixed):
        own = strength(heard, TONES[index])
        others = [strength(heard, f) for i, f in enumerate(TONES) if i != index]
        assert min(others) > 20 * own, (index, own, others)
    for index in (1, 2):
        other = TONES[3 - index]
        assert strength(muted[index], other) > 20 * strength(muted[index], TONES[0]), index


def test_a_member_alone_hears_music_until_someone_joins() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(42100, 42199))
        bridge = ConferenceBridge(engine)
        phones = [Phone(TONES[0], 0), Phone(TONES[1], 1)]
        sockets = []
        for phone in phones:
            transport, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=(HOST, 0))
            session = await engine.open_session(on_event=lambda event: None)
            session.answer(offer(transport.get_extra_info("sockname")[1]))
            sockets.append((transport, session))
        bridge.enter(ROOM, sockets[0][1], moderator=False, sounds={}, on_drop=lambda: None, music=MUSIC)
        await asyncio.sleep(0.8)  # the join tone, then the music
        phones[0].heard.clear()
        await asyncio.sleep(1.0)
        alone = list(phones[0].heard)
        bridge.enter(ROOM, sockets[1][1], moderator=False, sounds={}, on_drop=lambda: None, music=MUSIC)
        for _ in range(40):  # the join tone; the second phone talks
            sockets[1][0].sendto(phones[1].packet(), (HOST, sockets[1][1].rtp_port))
            await asyncio.sleep(0.02)
        phones[0].heard.clear()
        for _ in range(50):
            sockets[1][0].sendto(phones[1].packet(), (HOST, sockets[1][1].rtp_port))
            await asyncio.sleep(0.02)
        together = list(phones[0].heard)
        for transport, _ in sockets:
            transport.close()
        await engine.close()
        return alone, together

    alone, together = asyncio.run(scenario())
    assert strength(alone, 300.0) > 1e5 and rms(b"".join(alone)) > 1000
    assert strength(together, TONES[1]) > 20 * strength(together, 300.0)
