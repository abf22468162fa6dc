"""Both sides of a recorded call on one time line, pure."""

from __future__ import annotations

import numpy as np

from pbx.media.codecs import FRAME_BYTES
from pbx.recording.track import MAX_BACKLOG, RESERVE, StereoTrack, stereo


def frame(value: int) -> bytes:
    return np.full(FRAME_BYTES // 2, value, "=i2").tobytes()


def split(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    samples = np.frombuffer(data, "=i2")
    return samples[0::2], samples[1::2]


def test_stereo_puts_the_caller_left_and_the_callee_right() -> None:
    left, right = split(stereo(frame(100), frame(-200)))
    assert set(left) == {100} and set(right) == {-200}


def test_a_side_is_read_once_it_has_its_reserve_and_a_silent_side_is_silence() -> None:
    track = StereoTrack()
    track.push(0, frame(1))
    first = split(track.frame())
    assert set(first[0]) == {0} and set(first[1]) == {0}   # waiting for the reserve
    for n in range(2, RESERVE + 2):
        track.push(0, frame(n))
    values = [int(split(track.frame())[0][0]) for _ in range(RESERVE + 1)]
    assert values == list(range(1, RESERVE + 2))
    assert set(split(track.frame())[1]) == {0}


def test_a_side_that_runs_ahead_loses_its_oldest_audio() -> None:
    track = StereoTrack()
    for n in range(MAX_BACKLOG + 5):
        track.push(1, frame(n + 1))
    assert int(split(track.frame())[1][0]) == 6   # the first five went


def test_a_late_packet_takes_its_place_within_the_reserve() -> None:
    track = StereoTrack()
    track.push(0, frame(1))
    track.push(0, frame(2))
    got = [int(split(track.frame())[0][0])]
    track.push(0, frame(3))   # one tick late: frame 2 still covers the gap
    got += [int(split(track.frame())[0][0]), int(split(track.frame())[0][0])]
    assert got == [1, 2, 3]
