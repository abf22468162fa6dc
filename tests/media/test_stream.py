"""The receive side: latching, SSRC changes, sequence wrap, loss, jitter,
and the jitter buffer."""

from __future__ import annotations

from pbx.media.events import RemoteLatched, SsrcChanged
from pbx.media.jitter import JitterBuffer
from pbx.media.rtp import RtpPacket
from pbx.media.stream import ReceivePolicy, RtpReceiver

PHONE = ("192.0.2.10", 4000)
NAT = ("198.51.100.7", 61000)
STRANGER = ("203.0.113.66", 5004)


def policy(**kwargs: object) -> ReceivePolicy:
    return ReceivePolicy(payload_types=frozenset({0, 101}), audio_payload_type=0, **kwargs)  # type: ignore[arg-type]


def rtp(sequence: int, *, ssrc: int = 1, timestamp: int | None = None, payload_type: int = 0) -> bytes:
    return RtpPacket(payload_type=payload_type, sequence=sequence % 65536,
                     timestamp=(sequence * 160 if timestamp is None else timestamp) % 2**32,
                     ssrc=ssrc, payload=b"\xff" * 160).serialise()


def test_first_valid_packet_latches_and_strangers_do_not_hijack() -> None:
    receiver = RtpReceiver(policy())
    assert receiver.receive(b"junk", STRANGER, 0.0) is None           # garbage latches nothing
    assert receiver.receive(rtp(1, payload_type=96), STRANGER, 0.0) is None   # nor a payload type not negotiated
    assert receiver.receive(rtp(1), NAT, 0.01) is not None
    assert receiver.remote == NAT
    for n in range(10):   # the phone keeps talking; a stranger sprays packets
        assert receiver.receive(rtp(2 + n), NAT, 0.02 * (n + 1)) is not None
        assert receiver.receive(rtp(500 + n, ssrc=1), STRANGER, 0.02 * (n + 1)) is None
    assert receiver.remote == NAT
    assert receiver.drops["wrong_source"] == 10
    assert receiver.drain_events() == [RemoteLatched(address=NAT, previous=None, time=0.01)]


def test_a_new_address_after_silence_is_followed() -> None:
    receiver = RtpReceiver(policy(relatch_silence=2.0, relatch_packets=3))
    receiver.receive(rtp(1), PHONE, 0.0)
    assert receiver.receive(rtp(2), NAT, 1.0) is None                # not silent long enough
    assert receiver.receive(rtp(3), NAT, 2.5) is None                # 1 of 3
    assert receiver.receive(rtp(4), NAT, 2.52) is None               # 2 of 3
    assert receiver.receive(rtp(5), NAT, 2.54) is not None           # 3: taken over
    assert receiver.remote == NAT
    assert receiver.drain_events()[-1] == RemoteLatched(address=NAT, previous=PHONE, time=2.54)


def test_allowed_hosts_limit_latching() -> None:
    receiver = RtpReceiver(policy(allowed_hosts=frozenset({NAT[0]})))
    assert receiver.receive(rtp(1), STRANGER, 0.0) is None
    assert receiver.receive(rtp(2), NAT, 0.0) is not None
    assert receiver.drops["source_not_allowed"] == 1


def test_ssrc_change_is_followed_after_a_few_packets_but_strays_never_win() -> None:
    receiver = RtpReceiver(policy(ssrc_switch_packets=3))
    for n in range(5):
        assert receiver.receive(rtp(n, ssrc=1), PHONE, n * 0.02) is not None
    # Stray packets of another SSRC interleaved with the real stream: ignored.
    for n in range(5, 15):
        assert receiver.receive(rtp(n, ssrc=1), PHONE, n * 0.02) is not None
        assert receiver.receive(rtp(9000 + n, ssrc=2), PHONE, n * 0.02) is None
    assert receiver.ssrc == 1
    # The phone restarts its stream with SSRC 3: followed from the third packet.
    results = [receiver.receive(rtp(700 + n, ssrc=3), PHONE, 0.4 + n * 0.02) for n in range(4)]
    assert [r is not None for r in results] == [False, False, True, True]
    assert results[2] is not None and results[2].restarted
    assert receiver.ssrc == 3
    assert SsrcChanged(old=1, new=3, time=0.4 + 2 * 0.02) in receiver.drain_events()


def test_sequence_wrap_duplicates_reordering_and_loss() -> None:
    receiver = RtpReceiver(policy())
    sequences = [65533, 65534, 65535, 1, 0, 2, 2, 4, 5]   # 0 late, 2 twice, 3 lost
    accepted = []
    for index, sequence in enumerate(sequences):
        result = receiver.receive(rtp(sequence), PHONE, index * 0.02)
        accepted.append(None if result is None else result.sequence)
    assert accepted == [65533, 65534, 65535, 65537, 65536, 65538, None, 65540, 65541]
    assert receiver.drops["duplicate"] == 1 and receiver.reordered == 1
    block = receiver.report_block(0.2)
    assert block is not None
    assert block.highest_sequence == 65541
    assert block.cumulative_lost == 1            # expected 9, received 8
    assert block.fraction_lost == 256 // 9
    second = receiver.report_block(0.3)
    assert second is not None and second.fraction_lost == 0


def test_a_big_jump_is_believed_when_the_next_packet_confirms_it() -> None:
    receiver = RtpReceiver(policy())
    for n in range(3):
        receiver.receive(rtp(n), PHONE, n * 0.02)
    assert receiver.receive(rtp(30000), PHONE, 0.1) is None          # one odd packet: dropped
    assert receiver.receive(rtp(5), PHONE, 0.12) is not None
    assert receiver.receive(rtp(40000), PHONE, 0.14) is None
    result = receiver.receive(rtp(40001), PHONE, 0.16)               # confirmed: a restart
    assert result is not None and result.restarted


def test_jitter_measures_irregular_arrival() -> None:
    steady, shaky = RtpReceiver(policy()), RtpReceiver(policy())
    for n in range(200):
        steady.receive(rtp(n), PHONE, n * 0.02)
        shaky.receive(rtp(n), PHONE, n * 0.02 + (0.01 if n % 2 else 0.0))
    assert steady.jitter_seconds < 0.0005
    assert 0.008 < shaky.jitter_seconds < 0.012
    # Telephone events repeat their start timestamp: they do not count.
    for n in range(200, 260):
        steady.receive(rtp(n, payload_type=101, timestamp=200 * 160), PHONE, n * 0.02)
    assert steady.jitter_seconds < 0.0005


def test_sender_report_is_echoed_in_the_report_block() -> None:
    receiver = RtpReceiver(policy())
    assert receiver.report_block(0.0) is None
    receiver.receive(rtp(1), PHONE, 0.0)
    receiver.on_sender_report(0x12345678, 1.0)
    block = receiver.report_block(1.5)
    assert block is not None and block.last_sr == 0x12345678 and block.delay_since_last_sr == 32768


def test_jitter_buffer_orders_fills_gaps_and_drops_late() -> None:
    buffer = JitterBuffer(depth=2)
    out: list[bytes | None] = []
    for sequence in (10, 12, 11, 14, 15, 16, 13, 17):
        out += buffer.push(sequence, bytes([sequence]))
    # 13 arrived after 15 made it due: released as lost, then dropped as late.
    assert out == [b"\x0a", b"\x0b", b"\x0c", None, b"\x0e", b"\x0f"]
    assert buffer.late == 1 and buffer.lost == 1
    assert buffer.flush() == [b"\x10", b"\x11"]


def test_jitter_buffer_resyncs_after_a_long_gap() -> None:
    buffer = JitterBuffer(depth=1)
    buffer.push(1, b"a")
    assert buffer.push(2, b"b") == [b"a"]
    assert buffer.push(1000, b"c") == []                 # no run of 997 losses
    assert buffer.push(1001, b"d") == [b"c"]
