"""Make the shipped music on hold: pbx/media/music/default.wav.

    python -m pbx.media.make_music [--out FILE]

The tune is our own, synthesised here, so it is free of anyone's rights: a
slow pentatonic melody over a bass line, each note a soft plucked tone (a
sine and its octave, quick attack, exponential decay), eight bars of four
beats at 84 beats a minute, about 23 seconds, made to loop (the last bar
leads back to the first). Written as 8 kHz mono μ-law WAV, the form we
send: 8 KB a second, under 200 KB in all. Everything is numpy and the
standard library; nothing to install.

An administrator replaces it with any WAV file (``media: {music_on_hold:
FILE}``, or per department), as prompts are replaced.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path
from typing import Final

import numpy as np

from pbx.media.codecs import SAMPLE_RATE, audioop

MUSIC_DIR: Final = Path(__file__).with_name("music")
DEFAULT_MUSIC: Final = MUSIC_DIR / "default.wav"
BEAT: Final = 60.0 / 84
# C major pentatonic, as semitones above middle C (C D E G A).
_SCALE: Final = (0, 2, 4, 7, 9)
# (scale step, beats) per note; step 5 is the C an octave up, negatives below.
_MELODY: Final = (
    (2, 1), (3, 1), (4, 2), (3, 1), (2, 1), (1, 2),
    (0, 1), (1, 1), (2, 1), (4, 1), (3, 3), (-1, 1),
    (2, 1), (3, 1), (5, 2), (4, 1), (3, 1), (2, 2),
    (1, 1), (2, 1), (1, 1), (0, 1), (0, 3), (-1, 1),
)
# Bass: one root a bar, two octaves down, struck on beats 1 and 3 (C, A, D, G).
_BASS: Final = (0, 4, 1, 3, 0, 4, 1, 3)


def _frequency(step: int, octave: int = 0) -> float:
    octave += step // len(_SCALE)
    semitone = _SCALE[step % len(_SCALE)] + 12 * octave
    return 261.63 * 2 ** (semitone / 12)


def _pluck(frequency: float, seconds: float, amplitude: float, decay: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.minimum(t / 0.012, 1.0) * np.exp(-t * decay)
    wave = np.sin(2 * np.pi * frequency * t) + 0.3 * np.sin(4 * np.pi * frequency * t)
    result: np.ndarray = amplitude * envelope * wave
    return result


def render() -> np.ndarray:
    """The tune as float samples in [-1, 1] at 8 kHz."""
    beats = sum(length for _, length in _MELODY)
    total = np.zeros(int(beats * BEAT * SAMPLE_RATE) + SAMPLE_RATE)
    at = 0.0
    for step, length in _MELODY:
        note = _pluck(_frequency(step), length * BEAT + 0.4, 0.5, 3.0)
        start = int(at * SAMPLE_RATE)
        total[start:start + len(note)] += note
        at += length * BEAT
    for bar, step in enumerate(_BASS):
        for beat in (0, 2):
            note = _pluck(_frequency(step, -2), 2 * BEAT, 0.35, 1.8)
            start = int((bar * 4 + beat) * BEAT * SAMPLE_RATE)
            total[start:start + len(note)] += note
    # The tail past the last bar rings into the start of the next loop.
    loop = int(beats * BEAT * SAMPLE_RATE)
    tail = total[loop:]
    total = total[:loop]
    total[:len(tail)] += tail
    peak = float(np.max(np.abs(total)))
    normalised: np.ndarray = total * (0.7 / peak)  # -3 dBFS, as the prompts
    return normalised


def mulaw_wav(samples: np.ndarray) -> bytes:
    """A RIFF/WAVE file of 8 kHz mono μ-law (format 7) holding ``samples``."""
    linear = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    if sys.byteorder != "little":
        linear = np.frombuffer(linear, "<i2").astype("=i2").tobytes()
    data = audioop.lin2ulaw(linear, 2)
    fmt = struct.pack("<HHIIHHH", 7, 1, SAMPLE_RATE, SAMPLE_RATE, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4) + fact
            + b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b""))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MUSIC)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(mulaw_wav(render()))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
