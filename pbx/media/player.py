"""What a stream sends, 20 ms at a time: a playlist of prompts, tones and
silence, pure.

:class:`Player` turns a playlist into G.711 payloads, one per call of
:meth:`Player.next_payload` (the shared clock tick calls it once per 20 ms
per stream). It slices the prompt's cached encoded bytes, so a frame costs
a slice, not an encoding: G.711 is one byte per sample. When the list is
exhausted it returns None and :attr:`Player.done` is true; the stream then
sends silence (keeping a NAT binding open) and reports the end.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Final

from pbx.media.audio_file import Audio
from pbx.media.codecs import FRAME_MS, FRAME_SAMPLES, Codec
from pbx.media.tones import ToneSpec, render

FRAMES_PER_SECOND: Final = 1000 // FRAME_MS


@dataclass(frozen=True, slots=True)
class Prompt:
    """Play this audio once."""

    audio: Audio


@dataclass(frozen=True, slots=True)
class Loop:
    """Play this audio over and over until stopped (music on hold); the
    end runs straight into the start, so a tune made to loop never pauses."""

    audio: Audio


@dataclass(frozen=True, slots=True)
class Tone:
    """Play a call-progress tone; ``seconds`` None: until stopped."""

    spec: ToneSpec
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    seconds: float


class LiveFeed:
    """Linear frames handed in from outside the stream, one per tick (a
    conference's mix); the mixer puts, the player takes. Never more than
    ``depth`` frames wait: a late reader hears the newest, not a growing delay."""

    __slots__ = ("_frames", "depth")

    def __init__(self, depth: int = 3) -> None:
        self._frames: collections.deque[bytes] = collections.deque(maxlen=depth)
        self.depth = depth

    def put(self, linear: bytes) -> None:
        self._frames.append(linear)

    def take(self) -> bytes | None:
        return self._frames.popleft() if self._frames else None


@dataclass(frozen=True, slots=True)
class Live:
    """Play what ``feed`` is given, until stopped; silence when it has nothing."""

    feed: LiveFeed


PlaylistItem = Prompt | Loop | Tone | Silence | Live


@functools.lru_cache(maxsize=64)
def _tone_cycle(spec: ToneSpec) -> Audio:
    return render(spec)


def _frames(seconds: float) -> int:
    return max(0, round(seconds * FRAMES_PER_SECOND))


class Player:
    """A playlist being played with one codec."""

    def __init__(self, items: list[PlaylistItem] | tuple[PlaylistItem, ...], codec: Codec) -> None:
        self._items = list(items)
        self._index = 0
        self._offset = 0          # bytes (= samples) into the current item
        self._frame_count = 0     # frames sent of the current item
        self.set_codec(codec)

    def set_codec(self, codec: Codec) -> None:
        """Go on in another codec (a re-INVITE changed it): G.711 is one
        byte per sample in both laws, so the position stays valid."""
        self.codec = codec
        self._silence = bytes([codec.silence]) * FRAME_SAMPLES

    @property
    def done(self) -> bool:
        return self._index >= len(self._items)

    def stop(self) -> None:
        self._index = len(self._items)

    def next_payload(self) -> bytes | None:
        """The next 20 ms of encoded audio, or None once the playlist ended."""
        while self._index < len(self._items):
            payload = self._from(self._items[self._index])
            if payload is not None:
                self._frame_count += 1
                return payload
            self._index += 1
            self._offset = self._frame_count = 0
        return None

    def _from(self, item: PlaylistItem) -> bytes | None:
        match item:
            case Prompt(audio):
                encoded = audio.payload(self.codec)
                if self._offset >= len(encoded):
                    return None
                chunk = encoded[self._offset:self._offset + FRAME_SAMPLES]
                self._offset += FRAME_SAMPLES
                if len(chunk) < FRAME_SAMPLES:
                    chunk += self._silence[len(chunk):]
                return chunk
            case Loop(audio):
                encoded = audio.payload(self.codec)
                if not encoded:
                    return None
                start = self._offset % len(encoded)
                chunk = encoded[start:start + FRAME_SAMPLES]
                while len(chunk) < FRAME_SAMPLES:  # wrap round (a loop shorter than a frame too)
                    chunk += encoded[:FRAME_SAMPLES - len(chunk)]
                self._offset = start + FRAME_SAMPLES
                return chunk
            case Tone(spec, seconds):
                if seconds is not None and self._frame_count >= _frames(seconds):
                    return None
                cycle = _tone_cycle(spec).payload(self.codec)
                start = self._offset % len(cycle)
                self._offset = start + FRAME_SAMPLES
                return cycle[start:start + FRAME_SAMPLES]
            case Silence(seconds):
                return self._silence if self._frame_count < _frames(seconds) else None
            case Live(feed):
                linear = feed.take()
                return self.codec.encode(linear) if linear is not None else self._silence
