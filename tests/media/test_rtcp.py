from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.media.rtcp import (
    Goodbye,
    OtherRtcp,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_from_unix,
    parse_rtcp,
    report_interval,
    serialise,
)

BLOCK = ReportBlock(ssrc=0x1234, fraction_lost=25, cumulative_lost=-3, highest_sequence=0x1_0005,
                    jitter=80, last_sr=0xABCD0000, delay_since_last_sr=65536)


def test_sender_report_compound_round_trip() -> None:
    report = SenderReport(ssrc=7, ntp_timestamp=ntp_from_unix(1_700_000_000.5), rtp_timestamp=160_000,
                          packet_count=1000, octet_count=160_000, reports=(BLOCK,))
    data = build_compound(report, "pbx@example", bye=True)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [report, SourceDescription(cnames=((7, "pbx@example"),)), Goodbye(ssrcs=(7,))]
    assert report.ntp_middle == ((1_700_000_000 + 2_208_988_800) & 0xFFFF) << 16 | 0x8000


def test_receiver_report_and_bye_reason_round_trip() -> None:
    report = ReceiverReport(ssrc=9, reports=(BLOCK, BLOCK))
    bye = Goodbye(ssrcs=(9, 10), reason="call ended")
    assert parse_rtcp(serialise(report) + serialise(bye)) == [report, bye]


def test_unknown_types_are_skipped_not_refused() -> None:
    app = b"\x80\xcc\x00\x02" + b"\x00\x00\x00\x01" + b"name"
    assert parse_rtcp(serialise(ReceiverReport(ssrc=1)) + app)[1] == OtherRtcp(packet_type=204)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x80\xc9", "too_short"),
    (b"\x40\xc9\x00\x01" + bytes(4), "bad_version"),
    (b"\x80\xc9\x00\x05" + bytes(4), "truncated_packet"),
    (b"\x81\xc9\x00\x01" + bytes(4), "truncated_report_blocks"),
    (b"\x80\xc8\x00\x01" + bytes(4), "truncated_sender_report"),
    (b"\xa0\xc9\x00\x01" + bytes(3) + b"\x09", "bad_padding"),
    (b"\x80\x10\x00\x00", "bad_packet_type"),
    (b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09ab", "truncated_sdes"),
])
def test_malformed_compounds_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(RtcpError) as caught:
        parse_rtcp(data)
    assert caught.value.reason == reason


@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass


@given(st.binary(min_size=4, max_size=120).map(lambda b: bytes([0x80 | (b[0] & 0x3F), 200 + b[1] % 4]) + b[2:]))
def test_random_reports_parse_or_raise_rtcp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtcpError:
        pass


def test_interval_is_the_randomised_minimum() -> None:
    assert report_interval(1.0) == pytest.approx(5 / 1.21828, rel=1e-4)
    assert report_interval(0.5, initial=True) == pytest.approx(1.25 / 1.21828, rel=1e-4)
    assert report_interval(1.5) == pytest.approx(7.5 / 1.21828, rel=1e-4)
    with pytest.raises(ValueError):
        report_interval(2.0)
