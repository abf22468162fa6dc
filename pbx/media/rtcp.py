"""RTCP (RFC 3550 §6): sender and receiver reports in compound packets, and
when to send them.

:func:`parse_rtcp` reads a compound packet into a list of reports (SR, RR,
SDES, BYE; other types are kept as :class:`OtherRtcp` and skipped) or raises
:class:`RtcpError`; :func:`build_compound` writes SR or RR + SDES CNAME, the
form §6.1 asks every compound packet to take.

The interval (§6.2, §6.3): with two parties and G.711 the bandwidth rule
gives well under the 5 s minimum, so the minimum is what counts; §6.3.1's
randomisation (×0.5–1.5, divided by e − 3/2 to compensate for the timer
reconsideration it no longer needs) keeps streams started together from
reporting in step, and the first report may go out after half the minimum.
The random factor is passed in: this module draws nothing.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

from pbx.media.rtp import PacketError

MIN_INTERVAL: Final = 5.0
NTP_UNIX_OFFSET: Final = 2_208_988_800   # seconds from 1900-01-01 to 1970-01-01
SR, RR, SDES, BYE = 200, 201, 202, 203
_CNAME = 1
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")


class RtcpError(PacketError):
    """Not a valid compound RTCP packet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """What one receiver says about one source (§6.4.1)."""

    ssrc: int
    fraction_lost: int
    """Lost since the last report, as a fraction of 256."""
    cumulative_lost: int
    """Signed 24 bits: duplicates can make it negative."""
    highest_sequence: int
    """Extended: cycles << 16 | highest sequence number."""
    jitter: int
    """Interarrival jitter in timestamp units (§6.4.1, A.8)."""
    last_sr: int = 0
    """Middle 32 bits of the NTP time of the last SR received (0: none)."""
    delay_since_last_sr: int = 0
    """Since that SR, in 1/65536 s."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    """64-bit NTP time: seconds since 1900 << 32 | fraction."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @property
    def ntp_middle(self) -> int:
        """The 32 bits a receiver echoes as LSR."""
        return (self.ntp_timestamp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription:
    """SDES: (SSRC, CNAME) pairs; other items are skipped."""

    cnames: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Goodbye:
    ssrcs: tuple[int, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherRtcp:
    """APP, feedback, XR...: recognised as RTCP, not read."""

    packet_type: int


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | OtherRtcp


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp of a Unix time."""
    whole = math.floor(seconds)
    fraction = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32 | fraction


def report_interval(random_factor: float, *, initial: bool = False) -> float:
    """Seconds until the next report (§6.3.1 with the 5 s minimum);
    ``random_factor`` drawn uniformly from [0.5, 1.5] by the caller."""
    if not 0.5 <= random_factor <= 1.5:
        raise ValueError("random_factor must lie in [0.5, 1.5]")
    minimum = MIN_INTERVAL / 2 if initial else MIN_INTERVAL
    return minimum * random_factor / (math.e - 1.5)


# ---------------------------------------------------------------- building

def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    # §6.4.1: the length field counts 32-bit words minus one, header included.
    return _HEADER.pack(0x80 | count, packet_type, (len(body) + 4) // 4 - 1) + body


def _blocks(reports: tuple[ReportBlock, ...]) -> bytes:
    if len(reports) > 31:
        raise ValueError("at most 31 report blocks in one packet")
    return b"".join(
        _BLOCK.pack(r.ssrc, (r.fraction_lost & 0xFF) << 24 | (r.cumulative_lost & 0xFFFFFF),
                    r.highest_sequence & 0xFFFFFFFF, r.jitter & 0xFFFFFFFF,
                    r.last_sr & 0xFFFFFFFF, r.delay_since_last_sr & 0xFFFFFFFF)
        for r in reports)


def serialise(packet: SenderReport | ReceiverReport | SourceDescription | Goodbye) -> bytes:
    match packet:
        case SenderReport():
            body = struct.pack("!IQIII", packet.ssrc, packet.ntp_timestamp, packet.rtp_timestamp & 0xFFFFFFFF,
                               packet.packet_count & 0xFFFFFFFF, packet.octet_count & 0xFFFFFFFF)
            return _packet(SR, len(packet.reports), body + _blocks(packet.reports))
        case ReceiverReport():
            return _packet(RR, len(packet.reports), struct.pack("!I", packet.ssrc) + _blocks(packet.reports))
        case SourceDescription():
            chunks = []
            for ssrc, cname in packet.cnames:
                text = cname.encode()[:255]
                chunk = struct.pack("!IBB", ssrc, _CNAME, len(text)) + text + b"\x00"
                chunks.append(chunk + bytes(-len(chunk) % 4))   # §6.5: null-terminated, padded to a word
            return _packet(SDES, len(packet.cnames), b"".join(chunks))
        case Goodbye():
            body = b"".join(struct.pack("!I", s) for s in packet.ssrcs)
            if packet.reason:
                text = packet.reason.encode()[:255]
                body += bytes([len(text)]) + text
                body += bytes(-len(body) % 4)
            return _packet(BYE, len(packet.ssrcs), body)


def build_compound(report: SenderReport | ReceiverReport, cname: str, *, bye: bool = False) -> bytes:
    """SR or RR, then SDES with our CNAME (§6.1), then BYE when leaving."""
    parts = [serialise(report), serialise(SourceDescription(cnames=((report.ssrc, cname),)))]
    if bye:
        parts.append(serialise(Goodbye(ssrcs=(report.ssrc,))))
    return b"".join(parts)


# ---------------------------------------------------------------- parsing

def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """The packets of a compound RTCP packet; :class:`RtcpError` if any part
    is malformed (§A.2: the lengths must add up to the datagram)."""
    if len(data) < 4:
        raise RtcpError("too_short")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpError("truncated_header")
        first, packet_type, words = _HEADER.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtcpError("bad_version")
        size = (words + 1) * 4
        if offset + size > len(data):
            raise RtcpError("truncated_packet")
        body = data[offset + 4:offset + size]
        if first & 0x20:
            # §6.4.1: only the last packet of a compound may be padded.
            if offset + size != len(data) or not body or not 0 < body[-1] <= len(body):
                raise RtcpError("bad_padding")
            body = body[:-body[-1]]
        packets.append(_parse_one(packet_type, first & 0x1F, body))
        offset += size
    return packets


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + count * _BLOCK.size > len(body):
        raise RtcpError("truncated_report_blocks")
    blocks = []
    for index in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(body, offset + index * _BLOCK.size)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc=ssrc, fraction_lost=lost >> 24, cumulative_lost=cumulative,
                                  highest_sequence=highest, jitter=jitter, last_sr=lsr,
                                  delay_since_last_sr=dlsr))
    return tuple(blocks)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == SR:
        if len(body) < 24:
            raise RtcpError("truncated_sender_report")
        ssrc, ntp, rtp, packets, octets = struct.unpack_from("!IQIII", body)
        return SenderReport(ssrc=ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp, packet_count=packets,
                            octet_count=octets, reports=_parse_blocks(body, 24, count))
    if packet_type == RR:
        if len(body) < 4:
            raise RtcpError("truncated_receiver_report")
        return ReceiverReport(ssrc=struct.unpack_from("!I", body)[0], reports=_parse_blocks(body, 4, count))
    if packet_type == SDES:
        return SourceDescription(cnames=_parse_sdes(body, count))
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise RtcpError("truncated_bye")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        rest = body[4 * count:]
        reason = rest[1:1 + rest[0]].decode("utf-8", "replace") if rest else ""
        return Goodbye(ssrcs=ssrcs, reason=reason)
    if not 192 <= packet_type <= 223:
        raise RtcpError("bad_packet_type")
    return OtherRtcp(packet_type=packet_type)


def _parse_sdes(body: bytes, count: int) -> tuple[tuple[int, str], ...]:
    cnames = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RtcpError("truncated_sdes")
        ssrc = struct.unpack_from("!I", body, offset)[0]
        offset += 4
        while True:
            if offset >= len(body):
                raise RtcpError("truncated_sdes")
            item = body[offset]
            if item == 0:   # end of this chunk's items; skip to the next word
                offset += 1
                offset += -offset % 4
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtcpError("truncated_sdes")
            length = body[offset + 1]
            if item == _CNAME:
                cnames.append((ssrc, body[offset + 2:offset + 2 + length].decode("utf-8", "replace")))
            offset += 2 + length
    return tuple(cnames)
