"""The mix: everyone but oneself, muted members left out, sums saturated,
room sounds to all and private sounds to one."""

from __future__ import annotations

import numpy as np
import pytest

from pbx.conference.mixer import mix
from pbx.media.codecs import FRAME_SAMPLES


def frames(*levels: int) -> np.ndarray:
    return np.array([[level] * FRAME_SAMPLES for level in levels], dtype=np.int16)


def test_each_member_hears_the_others_and_not_themselves() -> None:
    out = mix(frames(100, 20, 3), np.array([True, True, True]))
    assert out[:, 0].tolist() == [23, 103, 120]
    assert out.dtype == np.int16 and out.shape == (3, FRAME_SAMPLES)


def test_a_muted_member_is_heard_by_nobody_but_hears_everyone() -> None:
    out = mix(frames(100, 20, 3), np.array([True, False, True]))
    assert out[:, 0].tolist() == [3, 103, 100]


def test_loud_sums_saturate_instead_of_wrapping() -> None:
    out = mix(frames(30000, 30000, -30000, -30000, 30000), np.ones(5, dtype=np.bool_))
    assert out[0, 0] == 0 and out[2, 0] == 32767
    out = mix(frames(-30000, -30000, -30000), np.ones(3, dtype=np.bool_))
    assert out[0, 0] == -32768


def test_room_sound_goes_to_all_and_private_sound_to_one() -> None:
    room = np.full(FRAME_SAMPLES, 7, dtype=np.int16)
    private = np.zeros((2, FRAME_SAMPLES), dtype=np.int32)
    private[1] = 1000
    out = mix(frames(100, 20), np.array([True, True]), room, private)
    assert out[:, 0].tolist() == [27, 1107]


def test_a_lone_member_hears_only_the_room() -> None:
    assert mix(frames(500), np.array([True]))[0, 0] == 0


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError):
        mix(np.zeros((2, 80), dtype=np.int16), np.array([True, True]))
    with pytest.raises(ValueError):
        mix(frames(1, 2), np.array([True]))
