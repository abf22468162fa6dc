"""RTP packets (RFC 3550 §5.1): parse and build, nothing else.

:func:`parse_rtp` takes any bytes a socket hands us and either returns an
:class:`RtpPacket` or raises :class:`RtpError` (a ``ValueError``), never
anything else: garbage from the network is normal input, not a bug.

What it checks (§5.1 and the validity checks of §A.1):
- at least the 12-byte fixed header, version 2;
- the CSRC list and the header extension fit in the packet;
- with the padding bit set, the last byte counts the padding and it fits
  (a count of 0 is refused: §5.1 says the count includes itself);
- payload types 72-76 are refused: with the marker bit they are RTCP SR/RR
  (200-204) on a shared port (RFC 5761 §4), never audio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 2
HEADER_SIZE: Final = 12
_FIXED = struct.Struct("!BBHII")


class PacketError(ValueError):
    """Bytes from the network that are not a valid packet; ``reason`` is a
    snake_case tag, counted by the receiver rather than logged one by one."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RtpError(PacketError):
    """Not a valid RTP packet."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    """(profile-defined 16 bits, data whose length is a multiple of 4)."""
    padding: int = 0
    """Padding bytes after the payload (0: none), the count byte included."""

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload type is 7 bits")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError("sequence number is 16 bits")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("timestamp and SSRC are 32 bits")
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        if self.extension is not None and (len(self.extension[1]) % 4 or len(self.extension[1]) > 0x3FFFC):
            raise ValueError("extension data is whole 32-bit words, at most 65535 of them")
        if not 0 <= self.padding <= 255:
            raise ValueError("padding is 0-255 bytes")

    def serialise(self) -> bytes:
        first = VERSION << 6 | (0x20 if self.padding else 0) | (0x10 if self.extension else 0) | len(self.csrc)
        parts = [_FIXED.pack(first, (0x80 if self.marker else 0) | self.payload_type,
                             self.sequence, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, data = self.extension
            parts.append(struct.pack("!HH", profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def parse_rtp(data: bytes) -> RtpPacket:
    """The packet in ``data``; :class:`RtpError` when it is not valid RTP."""
    if len(data) < HEADER_SIZE:
        raise RtpError("too_short")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != VERSION:
        raise RtpError("bad_version")
    payload_type = second & 0x7F
    if 72 <= payload_type <= 76:
        raise RtpError("rtcp_payload_type")
    offset = HEADER_SIZE
    csrc_count = first & 0x0F
    end = len(data)
    if offset + 4 * csrc_count > end:
        raise RtpError("truncated_csrc")
    csrc = struct.unpack_from(f"!{csrc_count}I", data, offset) if csrc_count else ()
    offset += 4 * csrc_count
    extension: tuple[int, bytes] | None = None
    if first & 0x10:
        if offset + 4 > end:
            raise RtpError("truncated_extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if offset + 4 * words > end:
            raise RtpError("truncated_extension")
        extension = (profile, bytes(data[offset:offset + 4 * words]))
        offset += 4 * words
    padding = 0
    if first & 0x20:
        if end == offset:
            raise RtpError("bad_padding")
        padding = data[-1]
        if padding == 0 or offset + padding > end:
            raise RtpError("bad_padding")
        end -= padding
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=timestamp, ssrc=ssrc,
                     payload=bytes(data[offset:end]), marker=bool(second & 0x80), csrc=tuple(csrc),
                     extension=extension, padding=padding)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: version 2 and a second byte of 192-223 is RTCP, not RTP."""
    return len(data) >= 2 and data[0] >> 6 == VERSION and 192 <= data[1] <= 223


def sequence_delta(newer: int, older: int) -> int:
    """``newer - older`` for 16-bit sequence numbers, in -32768..32767 (wrap
    taken into account)."""
    return (newer - older + 0x8000) % 0x10000 - 0x8000


def timestamp_delta(newer: int, older: int) -> int:
    """``newer - older`` for 32-bit timestamps, wrap taken into account."""
    return (newer - older + 0x80000000) % 0x100000000 - 0x80000000


def pack_header(payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool = False) -> bytes:
    """The 12-byte fixed header alone: the send path's fast form of
    :meth:`RtpPacket.serialise` (no CSRC, extension or padding), used once
    per packet per stream every 20 ms."""
    return _FIXED.pack(0x80, (0x80 if marker else 0) | payload_type, sequence, timestamp, ssrc)
