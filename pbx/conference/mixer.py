"""Mixing one room's 20 ms of audio, pure numpy.

Everyone hears everyone but themselves: the room's sum minus one's own
frame, so a member never hears their own voice come back late (an echo).
Sums are taken in 32 bits and saturated to int16 at the end: three loud
talkers clip instead of wrapping round into noise. A muted member's frame
is left out of everyone's sum (the member still hears the room). Sounds
for the whole room (join and leave tones) are added to every output; a
member's own prompts ("you are muted") only to theirs.

One call per room per tick, on whole (members × 160) arrays: the cost of a
room is a handful of vector operations, not a Python loop per sample.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pbx.media.codecs import FRAME_SAMPLES

Frames = npt.NDArray[np.int16]


def mix(frames: Frames, speaking: npt.NDArray[np.bool_], room_sound: Frames | None = None,
        private: npt.NDArray[np.int32] | None = None) -> Frames:
    """``frames``: (members, 160) received audio; ``speaking``: (members,),
    False for a muted member. Returns (members, 160): what each member
    hears. ``room_sound`` (160,) goes to everyone, ``private`` (members,
    160) to each member alone."""
    if frames.ndim != 2 or frames.shape[1] != FRAME_SAMPLES or speaking.shape != (frames.shape[0],):
        raise ValueError(f"mix wants (members, {FRAME_SAMPLES}) frames and one speaking flag per member")
    heard = frames.astype(np.int32) * speaking[:, np.newaxis]
    total = heard.sum(axis=0)
    if room_sound is not None:
        total += room_sound
    out = total[np.newaxis, :] - heard
    if private is not None:
        out += private
    mixed: Frames = np.clip(out, -32768, 32767).astype(np.int16)
    return mixed
