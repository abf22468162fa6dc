"""RFC 4733 telephone-events (DTMF as RTP packets), pure: a receiver that
reports each key press once, and a sender.

How a phone sends one key press: a run of packets that all carry the RTP
timestamp of the moment the key went down, the first with the marker bit,
each with the duration so far; then three packets with the E (end) bit and
the final duration (§2.5.1.4), and maybe retransmissions of those.

The receiver therefore keys an event by its timestamp, not by sequence
numbers (a sequence wrap or reordering changes nothing): the first packet
of a timestamp not seen recently is a key press, reported at once; every
other packet of that timestamp only updates its duration. A key held
longer than the 16-bit duration can say (8.2 s at 8 kHz) continues in a
new segment whose timestamp is where the last one ended (§2.5.1.3): that is
the same press, not a new one. Timestamps are compared modulo 2^32.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import Final

from pbx.media.events import DIGITS, Digit, DigitSource
from pbx.media.rtp import RtpPacket, timestamp_delta

MAX_DURATION: Final = 0xFFFF
END_REPEATS: Final = 3
_SEGMENT_SLACK: Final = 4800
"""A long press's last segment may have lost its final packets: a duration
within this much (600 ms at 8 kHz) of the maximum still counts as full."""
_EVENT = struct.Struct("!BBH")


class TelephoneEventError(ValueError):
    """A telephone-event payload we cannot read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int

    def serialise(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise TelephoneEventError("payload shorter than 4 bytes")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


@dataclass(slots=True)
class _Press:
    event: int
    start: int          # RTP timestamp of the current segment
    duration: int
    ended: bool


class TelephoneEventReceiver:
    """Turns telephone-event packets of one stream into :class:`Digit` s."""

    def __init__(self) -> None:
        self._current: _Press | None = None
        self._seen: collections.deque[int] = collections.deque(maxlen=16)   # recent event timestamps
        self.ignored = 0

    def reset(self) -> None:
        """The stream restarted (new SSRC): its timestamps start afresh."""
        self._current = None
        self._seen.clear()

    def receive(self, packet: RtpPacket, now: float) -> Digit | None:
        try:
            event = parse_event(packet.payload)
        except TelephoneEventError:
            self.ignored += 1
            return None
        if event.event >= len(DIGITS):   # flash-hook and the rest: not keys
            self.ignored += 1
            return None
        current = self._current
        timestamp = packet.timestamp
        if timestamp in self._seen:
            if current is not None and current.start == timestamp:
                current.duration = max(current.duration, event.duration)
                current.ended = current.ended or event.end
            return None
        if current is not None:
            delta = timestamp_delta(timestamp, current.start)
            if delta <= 0:   # an older event's late packet
                self.ignored += 1
                return None
            if (event.event == current.event and not current.ended
                    and current.duration >= MAX_DURATION - _SEGMENT_SLACK
                    and delta <= MAX_DURATION + _SEGMENT_SLACK):
                # §2.5.1.3: the next segment of a long press.
                self._seen.append(timestamp)
                current.start, current.duration, current.ended = timestamp, event.duration, event.end
                return None
        self._seen.append(timestamp)
        self._current = _Press(event=event.event, start=timestamp, duration=event.duration, ended=event.end)
        return Digit(digit=DIGITS[event.event], source=DigitSource.RFC4733, time=now)


def event_packets(digit: str, *, duration_ms: int = 100, volume: int = 10, clock_rate: int = 8000,
                  packet_ms: int = 20) -> list[tuple[bool, int, bytes]]:
    """The packets that send one key press: ``(marker, timestamp offset,
    payload)`` per packet time, the end packet repeated three times. A
    press longer than the duration field holds is split into segments."""
    if len(digit) != 1 or digit not in DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    code = DIGITS.index(digit)
    total = duration_ms * clock_rate // 1000
    step = packet_ms * clock_rate // 1000
    packets: list[tuple[bool, int, bytes]] = []
    segment_start = 0
    elapsed = step
    while True:
        in_segment = min(elapsed - segment_start, MAX_DURATION)
        if elapsed >= total:
            final = TelephoneEvent(event=code, end=True, volume=volume,
                                   duration=min(total - segment_start, MAX_DURATION)).serialise()
            packets += [(False, segment_start, final)] * END_REPEATS
            return packets
        packets.append((elapsed == step, segment_start,
                        TelephoneEvent(event=code, end=False, volume=volume, duration=in_segment).serialise()))
        if in_segment == MAX_DURATION:
            segment_start += MAX_DURATION
        elapsed += step
