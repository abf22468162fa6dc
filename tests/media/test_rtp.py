from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.media.rtp import RtpError, RtpPacket, is_rtcp, parse_rtp, sequence_delta, timestamp_delta


def test_fixed_header_round_trip() -> None:
    packet = RtpPacket(payload_type=0, sequence=65535, timestamp=0xFFFFFF60, ssrc=0xDEADBEEF,
                       payload=b"\xff" * 160, marker=True)
    data = packet.serialise()
    assert data[:2] == b"\x80\x80"
    assert len(data) == 172
    assert parse_rtp(data) == packet


def test_csrc_extension_and_padding_round_trip() -> None:
    packet = RtpPacket(payload_type=8, sequence=7, timestamp=1234, ssrc=42, payload=b"abc",
                       csrc=(1, 2, 3), extension=(0xBEDE, b"\x10\xaa\x00\x00"), padding=5)
    data = packet.serialise()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[-1] == 5
    assert parse_rtp(data) == packet


def test_a_known_capture_parses() -> None:
    # A PCMU packet as a desk phone sends it (header only, payload shortened).
    data = bytes.fromhex("8000 1e3f 0000 a0e0 5eb9 1d7b") + b"\xfe\xfd"
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (0, 0x1E3F, 0xA0E0, 0x5EB91D7B)
    assert packet.payload == b"\xfe\xfd" and not packet.marker


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "too_short"),
    (b"\x80\x00" + bytes(9), "too_short"),
    (b"\x40\x00" + bytes(10), "bad_version"),
    (b"\x83\x00" + bytes(10) + bytes(8), "truncated_csrc"),
    (b"\x90\x00" + bytes(10) + b"\x00\x00", "truncated_extension"),
    (b"\x90\x00" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), "truncated_extension"),
    (b"\xa0\x00" + bytes(10), "bad_padding"),
    (b"\xa0\x00" + bytes(10) + b"ab\x00", "bad_padding"),
    (b"\xa0\x00" + bytes(10) + b"ab\x04", "bad_padding"),
    (b"\x80\xc8" + bytes(10), "rtcp_payload_type"),
])
def test_invalid_packets_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as caught:
        parse_rtp(data)
    assert caught.value.reason == reason


def _parse_or_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    # Whatever parsed serialises back to the bytes it came from.
    assert packet.serialise() == data or packet.padding  # padding bytes are not kept verbatim


@given(st.binary(max_size=400))
def test_random_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    _parse_or_error(data)


@given(st.binary(min_size=12, max_size=80).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:]))
def test_random_version_2_headers_parse_or_raise_rtp_error(data: bytes) -> None:
    _parse_or_error(data)


def test_every_truncation_of_a_full_packet() -> None:
    data = RtpPacket(payload_type=0, sequence=1, timestamp=2, ssrc=3, payload=b"x" * 20, csrc=(9, 8),
                     extension=(1, b"1234"), padding=4).serialise()
    for end in range(len(data) + 1):
        _parse_or_error(data[:end])


def test_rtcp_is_told_apart() -> None:
    assert is_rtcp(b"\x80\xc8\x00\x06")
    assert not is_rtcp(RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0).serialise())


def test_wrapping_deltas() -> None:
    assert sequence_delta(2, 65534) == 4
    assert sequence_delta(65534, 2) == -4
    assert timestamp_delta(80, 0xFFFFFFB0) == 160


def test_constructor_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        RtpPacket(payload_type=128, sequence=0, timestamp=0, ssrc=0)
    with pytest.raises(ValueError):
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, extension=(0, b"abc"))
