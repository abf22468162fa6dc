"""The conference bridge: every room's members on the media engine's one
clock tick. The glue between :mod:`pbx.conference.room` (who, keys),
:mod:`pbx.conference.mixer` (numpy) and the members' media sessions.

One ticker for all rooms (STYLE §11): on each 20 ms tick of the
:class:`~pbx.media.endpoint.MediaEngine`, before any stream sends, each
room with members takes one decoded frame from each member's stream (the
stream's jitter buffer has put it in order; nothing received is silence),
mixes, and hands each member its mix through a
:class:`~pbx.media.player.LiveFeed` that the member's stream sends in the
same tick. Join and leave tones go to the whole room, a member's own
prompts ("you are muted") to that member alone, both as part of the mix.

Nothing here blocks: prompts come loaded (the call's media side loads them
in a thread before the member enters).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import structlog

from pbx.conference.mixer import mix
from pbx.conference.room import Drop, Refusal, Room, Said
from pbx.media.audio_file import Audio
from pbx.media.codecs import FRAME_BYTES, FRAME_SAMPLES
from pbx.media.endpoint import MediaEngine, MediaSession
from pbx.media.player import Live, LiveFeed
from pbx.media.tones import ToneSpec, render
from pbx.routing.conferences import Conference

log = structlog.get_logger("pbx.conference")

JOIN_TONE: Final = ToneSpec(frequencies=(1000.0,), cadence=(100, 60, 100, 60))
"""Two short high beeps: someone came in."""
LEAVE_TONE: Final = ToneSpec(frequencies=(600.0,), cadence=(240, 60))
"""One low beep: someone left."""
CAPTURE_FRAMES: Final = 4
"""Received frames a member's stream keeps for the mixer; beyond it the
oldest go (a phone whose clock runs fast must not build up delay)."""
MEMBER_PHRASES: Final = ("conference_muted", "conference_unmuted", "conference_locked", "conference_unlocked",
                         "conference_moderator_only", "conference_dropped", "conference_nobody_to_drop")
"""What a member may be told while in a room (loaded before entering)."""


def frames_of(linear: bytes) -> list[bytes]:
    """``linear`` cut into 20 ms frames, the last padded with silence."""
    cut = [linear[i:i + FRAME_BYTES] for i in range(0, len(linear), FRAME_BYTES)]
    if cut and len(cut[-1]) < FRAME_BYTES:
        cut[-1] += bytes(FRAME_BYTES - len(cut[-1]))
    return cut


def _fit(linear: bytes) -> bytes:
    """A received frame as one tick's worth: a phone sending 30 ms packets
    (ptime 30) loses the tail of each, never the mix its shape."""
    if len(linear) == FRAME_BYTES:
        return linear
    return linear[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0")


@dataclass(eq=False, slots=True)
class Seat:
    """One member in a room: their stream's capture and feed."""

    id: int
    room: str
    session: MediaSession
    capture: collections.deque[bytes]
    feed: LiveFeed
    sounds: Mapping[str, Audio]
    on_drop: Callable[[], None]
    music: bytes = b""
    """What the member hears while alone in the room (linear; empty: silence)."""
    private: collections.deque[bytes] = field(default_factory=collections.deque)
    music_at: int = 0


@dataclass(eq=False, slots=True)
class _LiveRoom:
    room: Room
    seats: dict[int, Seat] = field(default_factory=dict)
    sound: collections.deque[bytes] = field(default_factory=collections.deque)


class ConferenceBridge:
    """Rooms with people in them, and the mixing tick."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self._rooms: dict[str, _LiveRoom] = {}
        self._ids = itertools.count(1)
        self._join = render(JOIN_TONE).linear
        self._leave = render(LEAVE_TONE).linear
        engine.add_ticker(self.tick)

    def members(self, key: str) -> int:
        live = self._rooms.get(key)
        return len(live.seats) if live is not None else 0

    def refusal(self, room: Conference, *, moderator: bool) -> Refusal | None:
        """Why nobody (``moderator`` or not) could enter ``room`` now."""
        live = self._rooms.get(room.key)
        if live is None:
            return Room(room.key, room.max_members).refusal(moderator=moderator)
        live.room.max_members = room.max_members  # a reload may have changed it
        return live.room.refusal(moderator=moderator)

    def enter(self, room: Conference, session: MediaSession, *, moderator: bool, sounds: Mapping[str, Audio],
              on_drop: Callable[[], None], music: Audio | None = None) -> Seat | Refusal:
        """Put ``session``'s caller into ``room``, or say why not.
        ``on_drop``: a moderator dropped them (end their call); ``music``:
        what they hear while nobody else is in the room."""
        live = self._rooms.get(room.key)
        if live is None:
            live = self._rooms[room.key] = _LiveRoom(Room(room.key, room.max_members))
        live.room.max_members = room.max_members
        seat_id = next(self._ids)
        refused = live.room.join(seat_id, moderator=moderator)
        if refused is not None:
            if live.room.empty:
                del self._rooms[room.key]
            return refused
        feed = LiveFeed()
        seat = Seat(id=seat_id, room=room.key, session=session, capture=session.stream.listen(CAPTURE_FRAMES),
                    feed=feed, sounds=sounds, on_drop=on_drop, music=music.linear if music is not None else b"")
        live.seats[seat_id] = seat
        live.sound.extend(frames_of(self._join))
        session.play([Live(feed)])
        log.info("conference_joined", room=room.key, member=seat_id, moderator=moderator,
                 members=len(live.seats))
        return seat

    def leave(self, seat: Seat) -> None:
        """``seat``'s caller is gone (hung up, dropped); safe to call twice."""
        live = self._rooms.get(seat.room)
        if live is None or live.seats.pop(seat.id, None) is None:
            return
        live.room.leave(seat.id)
        seat.session.stream.unlisten()
        log.info("conference_left", room=seat.room, member=seat.id, members=len(live.seats))
        if live.room.empty:
            del self._rooms[seat.room]
        else:
            live.sound.extend(frames_of(self._leave))

    def key(self, seat: Seat, digit: str, now: float) -> None:
        """A key ``seat``'s caller pressed."""
        live = self._rooms.get(seat.room)
        if live is None or seat.id not in live.seats:
            return
        for action in live.room.press(seat.id, digit, now):
            match action:
                case Said():
                    target = live.seats.get(action.member)
                    audio = target.sounds.get(action.phrase) if target is not None else None
                    if target is not None and audio is not None:
                        target.private.clear()
                        target.private.extend(frames_of(audio.linear))
                    log.info("conference_key", room=seat.room, member=seat.id, outcome=action.phrase)
                case Drop():
                    dropped = live.seats.get(action.member)
                    if dropped is not None:
                        log.info("conference_member_dropped", room=seat.room, member=action.member, by=seat.id)
                        self.leave(dropped)
                        dropped.on_drop()

    @staticmethod
    def _music_frame(seat: Seat) -> bytes:
        """The next 20 ms of ``seat``'s music, round and round."""
        music, start = seat.music, seat.music_at % len(seat.music)
        frame = music[start:start + FRAME_BYTES]
        while len(frame) < FRAME_BYTES:
            frame += music[:FRAME_BYTES - len(frame)]
        seat.music_at = start + FRAME_BYTES
        return frame

    def tick(self, now: float) -> None:
        """Mix every room for this tick (the engine calls it first)."""
        for live in self._rooms.values():
            seats = list(live.seats.values())
            count = len(seats)
            frames = np.zeros((count, FRAME_SAMPLES), dtype=np.int16)
            speaking = np.zeros(count, dtype=np.bool_)
            private: npt.NDArray[np.int32] | None = None
            for index, seat in enumerate(seats):
                if seat.capture:
                    frames[index] = np.frombuffer(_fit(seat.capture.popleft()), dtype=np.int16)
                speaking[index] = live.room.speaking(seat.id)
                if seat.private:
                    if private is None:
                        private = np.zeros((count, FRAME_SAMPLES), dtype=np.int32)
                    private[index] = np.frombuffer(seat.private.popleft(), dtype=np.int16)
            room_sound = np.frombuffer(live.sound.popleft(), dtype=np.int16) if live.sound else None
            if room_sound is None and count == 1 and seats[0].music:
                # Alone in the room (its join tone over): music, under whatever is said to them.
                room_sound = np.frombuffer(self._music_frame(seats[0]), dtype=np.int16)
            mixed = mix(frames, speaking, room_sound, private)
            for index, seat in enumerate(seats):
                seat.feed.put(mixed[index].tobytes())
