"""The two sides of a recorded call as one stereo track, pure.

The relay hands over each side's decoded audio as its packets arrive
(:class:`pbx.media.relay.Heard`); the media clock's 20 ms tick takes one
frame of each side and interleaves them (left: the caller, right: the
callee), so both channels keep to the same time line whatever each
phone's jitter:

- a side starts being read once it has :data:`RESERVE` frames buffered,
  and again after running dry: a late packet then still fits in its place
  instead of leaving a gap and a frame too many after it;
- a side that ran dry (a phone that stopped sending: on hold, silence
  suppression) gives silence;
- a side that got more than :data:`MAX_BACKLOG` frames ahead (a phone whose
  clock runs fast) loses its oldest audio, so the channels never drift.

Interleaving is three ``audioop`` calls per frame, no loop over samples.
"""

from __future__ import annotations

from typing import Final

from pbx.media.codecs import FRAME_BYTES, SAMPLE_WIDTH, audioop

RESERVE: Final = 2
MAX_BACKLOG: Final = 10
_SILENCE: Final = bytes(FRAME_BYTES)


class _Channel:
    __slots__ = ("buffer", "reading")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.reading = False

    def push(self, linear: bytes) -> None:
        self.buffer += linear
        excess = len(self.buffer) - MAX_BACKLOG * FRAME_BYTES
        if excess > 0:
            del self.buffer[:excess]

    def frame(self) -> bytes:
        if not self.reading and len(self.buffer) >= RESERVE * FRAME_BYTES:
            self.reading = True
        if not self.reading:
            return _SILENCE
        if len(self.buffer) < FRAME_BYTES:
            self.reading = False      # ran dry: wait for the reserve again
            chunk = bytes(self.buffer) + _SILENCE[len(self.buffer):]
            self.buffer.clear()
            return chunk
        chunk = bytes(self.buffer[:FRAME_BYTES])
        del self.buffer[:FRAME_BYTES]
        return chunk


class StereoTrack:
    """Left: the caller (A); right: the callee (B)."""

    def __init__(self) -> None:
        self._channels = (_Channel(), _Channel())

    def push(self, channel: int, linear: bytes) -> None:
        self._channels[channel].push(linear)

    def frame(self) -> bytes:
        """One 20 ms stereo frame (16-bit interleaved, 640 bytes)."""
        return stereo(self._channels[0].frame(), self._channels[1].frame())


def stereo(left: bytes, right: bytes) -> bytes:
    """Two mono 16-bit frames of equal length as one interleaved stereo frame."""
    return audioop.add(audioop.tostereo(left, SAMPLE_WIDTH, 1, 0), audioop.tostereo(right, SAMPLE_WIDTH, 0, 1),
                       SAMPLE_WIDTH)
