"""The relay between an anchored call's two legs, pure: what each
datagram becomes (rewritten SSRC, sequence and timestamp, the receiving
leg's payload types and keys), announcements in place of the other side,
keys and decoded audio handed out. No sockets: packets built and read
with pbx.media.rtp, a hand-held clock."""

from __future__ import annotations

import random

import pytest

from pbx.media.codecs import FRAME_SAMPLES, Codec, audioop
from pbx.media.player import Silence
from pbx.media.relay import Leg, MediaRelay
from pbx.media.rtp import parse_rtp
from pbx.media.sdes import SrtpKeys, Suite
from pbx.media.sdp import Direction, Negotiated
from pbx.media.srtp import SrtpContext
from pbx.media.telephone_event import event_packets
from pbx.media.rtp import pack_header

A_PHONE = ("10.0.0.1", 4000)
B_PHONE = ("10.0.0.2", 5000)


def negotiated(address: tuple[str, int], *, codec: Codec = Codec.PCMU, event: int | None = 101,
               srtp: SrtpKeys | None = None, direction: Direction = Direction.SENDRECV) -> Negotiated:
    return Negotiated(codec=codec, payload_type=codec.payload_type, telephone_event=event, remote_address=address[0],
                      remote_port=address[1], remote_rtcp_port=address[1] + 1, direction=direction, srtp=srtp)


def relay(**b: object) -> MediaRelay:
    bridge = MediaRelay(rng=random.Random(7))
    bridge.set_negotiated(Leg.A, negotiated(A_PHONE))
    bridge.set_negotiated(Leg.B, negotiated(B_PHONE, **b))  # type: ignore[arg-type]
    return bridge


def voice(sequence: int, timestamp: int, ssrc: int = 0x1111, *, pt: int = 0, payload: bytes = b"\x55" * 160) -> bytes:
    return pack_header(pt, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def test_packets_go_on_at_once_in_the_other_legs_own_stream() -> None:
    bridge = relay()
    sent = [bridge.on_rtp(Leg.A, voice(100 + n, 8000 + 160 * n), A_PHONE, n * 0.02) for n in range(5)]
    assert all(out is not None and out[1] == B_PHONE for out in sent)
    packets = [parse_rtp(out[0]) for out in sent if out is not None]
    assert {p.ssrc for p in packets} == {bridge.leg(Leg.B).outgoing.ssrc} != {0x1111}
    assert [(b.sequence - a.sequence) & 0xFFFF for a, b in zip(packets, packets[1:])] == [1, 1, 1, 1]
    assert [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:])] == [160] * 4
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert all(p.payload == b"\x55" * 160 for p in packets)


def test_a_phone_that_restarts_its_stream_shows_no_jump_on_the_other_leg() -> None:
    bridge = relay()
    first = [bridge.on_rtp(Leg.A, voice(100 + n, 8000 + 160 * n), A_PHONE, n * 0.02) for n in range(3)]
    # After a re-INVITE the phone starts afresh: new SSRC, sequence and timestamp.
    later = [bridge.on_rtp(Leg.A, voice(40000 + n, 999_999 + 160 * n, ssrc=0x2222), A_PHONE, 1.0 + n * 0.02)
             for n in range(5)]
    packets = [parse_rtp(out[0]) for out in (*first, *later) if out is not None]
    assert len(packets) >= 6   # the new SSRC is taken after a few packets in sequence
    assert [(b.sequence - a.sequence) & 0xFFFF for a, b in zip(packets, packets[1:])] == [1] * (len(packets) - 1)
    jumps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(packets, packets[1:])]
    assert all(0 < jump < 8000 * 2 for jump in jumps), jumps   # forward, by about the time that passed
    assert len({p.ssrc for p in packets}) == 1


def test_events_pass_with_the_receiving_legs_payload_type_and_are_read_as_keys() -> None:
    bridge = relay(event=96)
    for n, (start, offset, payload) in enumerate(event_packets("*", duration_ms=60)):
        out = bridge.on_rtp(Leg.A, pack_header(101, 200 + n, 16000 + offset, 0x1111, start) + payload, A_PHONE,
                            n * 0.02)
        assert out is not None and parse_rtp(out[0]).payload_type == 96
    _, digits = bridge.drain()
    assert [(leg, d.digit) for leg, d in digits] == [(Leg.A, "*")]


def test_events_are_not_sent_to_a_leg_without_telephone_event() -> None:
    bridge = relay(event=None)
    start, offset, payload = event_packets("1")[0]
    assert bridge.on_rtp(Leg.A, pack_header(101, 1, 0, 0x1111, start) + payload, A_PHONE, 0.0) is None
    assert [d.digit for _, d in bridge.drain()[1]] == ["1"]   # still read as a key


def test_a_leg_with_another_codec_gets_its_own() -> None:
    bridge = relay(codec=Codec.PCMA)
    ulaw = audioop.lin2ulaw(bytes(range(256)) * 1 + bytes(64), 2)
    out = bridge.on_rtp(Leg.A, voice(1, 0, payload=ulaw), A_PHONE, 0.0)
    assert out is not None
    packet = parse_rtp(out[0])
    assert packet.payload_type == Codec.PCMA.payload_type
    assert packet.payload == Codec.PCMA.encode(Codec.PCMU.decode(ulaw))


def test_a_stranger_sending_to_the_port_is_not_relayed() -> None:
    bridge = relay()
    assert bridge.on_rtp(Leg.A, voice(1, 0), A_PHONE, 0.0) is not None
    assert bridge.on_rtp(Leg.A, voice(2, 160, ssrc=0x9999), ("203.0.113.9", 1234), 0.02) is None
    assert bridge.leg(Leg.A).dropped == 1


def test_srtp_on_one_leg_plain_rtp_on_the_other() -> None:
    keys_a = SrtpKeys(Suite.AES_CM_128_HMAC_SHA1_80, send=bytes(range(30)), receive=bytes(range(30, 60)))
    bridge = MediaRelay(rng=random.Random(1))
    bridge.set_negotiated(Leg.A, negotiated(A_PHONE, srtp=keys_a))
    bridge.set_negotiated(Leg.B, negotiated(B_PHONE))
    phone_a = SrtpContext(SrtpKeys(keys_a.suite, send=keys_a.receive, receive=keys_a.send))
    out = bridge.on_rtp(Leg.A, phone_a.protect(voice(1, 0)), A_PHONE, 0.0)
    assert out is not None and parse_rtp(out[0]).payload == b"\x55" * 160          # plain towards B
    assert bridge.on_rtp(Leg.A, voice(2, 160), A_PHONE, 0.02) is None               # plain from A: refused
    back = bridge.on_rtp(Leg.B, voice(7, 0, ssrc=0x3333), B_PHONE, 0.03)
    assert back is not None and back[1] == A_PHONE
    clear = phone_a.unprotect(back[0])                                               # encrypted towards A
    assert clear is not None and parse_rtp(clear).payload == b"\x55" * 160


def test_an_announcement_replaces_the_other_side_then_forwarding_goes_on() -> None:
    bridge = relay()
    assert bridge.on_rtp(Leg.A, voice(1, 0), A_PHONE, 0.0) is not None
    bridge.play(Leg.B, (Silence(0.06),))
    assert bridge.playing
    assert bridge.on_rtp(Leg.A, voice(2, 160), A_PHONE, 0.02) is None   # B hears the announcement instead
    ticks = [bridge.on_tick(0.02 * n) for n in range(2, 6)]
    announced = [parse_rtp(packet) for sent in ticks for leg, packet, where in sent if leg is Leg.B]
    assert len(announced) == 3 and not bridge.playing
    assert all(p.payload == bytes([Codec.PCMU.silence]) * FRAME_SAMPLES for p in announced)
    out = bridge.on_rtp(Leg.A, voice(3, 320), A_PHONE, 0.12)
    assert out is not None
    after = parse_rtp(out[0])
    assert after.sequence == (announced[-1].sequence + 1) & 0xFFFF
    assert 0 < (after.timestamp - announced[-1].timestamp) & 0xFFFFFFFF <= 2 * FRAME_SAMPLES


@pytest.mark.parametrize("decode", [False, True])
def test_audio_is_decoded_for_the_recording_only_while_recording(decode: bool) -> None:
    bridge = relay()
    bridge.decode = decode
    bridge.on_rtp(Leg.A, voice(1, 0), A_PHONE, 0.0)
    bridge.on_rtp(Leg.B, voice(1, 0, ssrc=0x4444), B_PHONE, 0.0)
    heard, _ = bridge.drain()
    assert [(h.leg, h.linear) for h in heard] == ([(Leg.A, Codec.PCMU.decode(b"\x55" * 160)),
                                                   (Leg.B, Codec.PCMU.decode(b"\x55" * 160))] if decode else [])


def test_nothing_is_sent_to_a_leg_that_holds() -> None:
    bridge = relay(direction=Direction.RECVONLY)   # B holds: we only receive from it
    assert bridge.on_rtp(Leg.A, voice(1, 0), A_PHONE, 0.0) is None
    assert bridge.on_rtp(Leg.B, voice(1, 0, ssrc=0x4444), B_PHONE, 0.0) is not None


def test_a_new_party_on_a_leg_is_latched_afresh_never_the_phone_it_replaced() -> None:
    bridge = relay()
    old = ("10.0.0.9", 7000)
    assert bridge.on_rtp(Leg.B, voice(1, 0, ssrc=0x4444), old, 0.0) is not None    # latched there
    bridge.set_negotiated(Leg.B, negotiated(B_PHONE), new_peer=True)                 # a transfer
    assert bridge.on_rtp(Leg.B, voice(2, 160, ssrc=0x4444), old, 0.02) is None      # its last packets
    assert bridge.on_rtp(Leg.B, voice(9, 99, ssrc=0x5555), B_PHONE, 0.03) is not None
