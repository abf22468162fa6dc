"""The anchor's asyncio edge on real UDP sockets on 127.0.0.1: two plain
sockets as the phones, each side's packets relayed to the other, a stereo
file written by the writer thread, ports given back at the end."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.media.anchor import MediaAnchor
from pbx.media.codecs import Codec
from pbx.media.endpoint import MediaEngine
from pbx.media.ports import PortAllocator, PortsExhausted
from pbx.media.rtp import pack_header, parse_rtp
from pbx.recording.files import file_name
from pbx.recording.policy import CallRecording, RecordingMode
from pbx.recording.writer import RecordingWriter

from .test_endpoint import HOST, Collector, phone_offer

UUID = "0123456789abcdef0123456789abcdef"


def tone(frequency: float, frame: int) -> bytes:
    n = np.arange(frame * 160, (frame + 1) * 160)
    return Codec.PCMU.encode((8000 * np.sin(2 * np.pi * frequency * n / 8000)).astype("=i2").tobytes())


def test_each_side_is_relayed_and_recorded_on_its_channel_then_ports_are_released(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], str | None, int]:
        loop = asyncio.get_running_loop()
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41200, 41299))
        writer = RecordingWriter(tmp_path, retention_days=0, max_bytes=0)
        a_transport, a_phone = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, 0))
        b_transport, b_phone = await loop.create_datagram_endpoint(Collector, local_addr=(HOST, 0))
        anchor = MediaAnchor(engine, call_uuid=UUID, recording=CallRecording(mode=RecordingMode.ALWAYS, announce=False),
                             writer=writer, prompts=None)
        anchor.answer_a(phone_offer(a_transport.get_extra_info("sockname")[1]).encode(), "none")
        assert b"PCMU" in anchor.offer_b("none") and b"PCMA" not in anchor.offer_b("none")  # A's codec only
        anchor.accept_b(phone_offer(b_transport.get_extra_info("sockname")[1]).encode())
        anchor.start()
        await asyncio.sleep(0.05)
        start = loop.time()
        for frame in range(100):   # two seconds, both sides talking
            a_transport.sendto(pack_header(0, frame, frame * 160, 0xA) + tone(440.0, frame), (HOST, anchor.ports[0]))
            b_transport.sendto(pack_header(0, frame, frame * 160, 0xB) + tone(660.0, frame), (HOST, anchor.ports[1]))
            await asyncio.sleep(max(0.0, start + (frame + 1) * 0.02 - loop.time()))
        await asyncio.sleep(0.1)
        saved = anchor.close()
        await asyncio.to_thread(writer.stop)
        a_transport.close()
        b_transport.close()
        await asyncio.sleep(0.01)
        return ([d for _, d in a_phone.arrivals], [d for _, d in b_phone.arrivals], saved, engine.ports.in_use)

    to_a, to_b, saved, in_use = asyncio.run(scenario())
    assert in_use == 0 and saved == file_name(UUID)
    assert len(to_a) >= 95 and len(to_b) >= 95
    assert {parse_rtp(p).ssrc for p in to_b} != {0xA}   # the anchor's own stream
    assert parse_rtp(to_b[10]).payload == tone(440.0, parse_rtp(to_b[10]).sequence - parse_rtp(to_b[0]).sequence)
    with wave.open(str(tmp_path / saved), "rb") as source:
        assert source.getnchannels() == 2 and source.getnframes() >= 1.5 * 8000
        samples = np.frombuffer(source.readframes(source.getnframes()), "<i2").astype(float)
    for channel, expected in ((samples[0::2], 440.0), (samples[1::2], 660.0)):
        spectrum = np.abs(np.fft.rfft(channel))
        assert np.fft.rfftfreq(len(channel), 1 / 8000)[int(np.argmax(spectrum[1:])) + 1] == \
            pytest.approx(expected, abs=10)


def test_an_anchor_needs_two_pairs_and_gives_the_first_back_when_only_one_is_free() -> None:
    async def scenario() -> int:
        engine = MediaEngine(bind_host=HOST, ports=PortAllocator(41300, 41301))   # one pair
        try:
            MediaAnchor(engine, call_uuid=UUID, recording=CallRecording(mode=RecordingMode.NEVER, announce=False),
                        writer=None, prompts=None)
        except PortsExhausted:
            return engine.ports.in_use
        raise AssertionError("two pairs from a range of one")

    assert asyncio.run(scenario()) == 0
