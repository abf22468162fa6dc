"""In-band DTMF: finding key tones in decoded audio, for phones that send
nothing else. Pure; numpy does the arithmetic.

Each analysis block is 205 samples (25.6 ms at 8 kHz, the classic size whose
bins fall near all eight DTMF frequencies), taken every 80 samples (10 ms).
For each block the power at the eight frequencies and at their second
harmonics is what the Goertzel algorithm computes; here it is one matrix
product of the blocks with the sixteen complex exponentials, the same
single-bin DFT without a per-sample Python loop.

A block is a key when all of these hold (after ITU-T Q.24 and common
practice):
- energy: the block is louder than ``min_level`` (RMS), so line noise is
  no key;
- one row and one column tone stand out: each at least ``peak_ratio``
  times the power of the others in its group;
- twist: the row/column power ratio within ``normal_twist_db`` (row
  louder) / ``reverse_twist_db`` (column louder);
- purity: the two tones carry at least ``min_tone_fraction`` of the
  block's energy (speech and music spread theirs), and neither has a
  strong second harmonic (a voice's or an instrument's would).

A key is reported when ``min_blocks`` consecutive blocks agree (about
45 ms of tone: Q.24 asks that 40 ms be recognised and 23 ms not), and the
next one only after ``release_blocks`` blocks without it, so a held key is
one digit and "1 1" needs a pause between the presses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pbx.media.codecs import SAMPLE_RATE
from pbx.media.events import Digit, DigitSource

BLOCK: Final = 205
HOP: Final = 80
ROWS: Final = (697.0, 770.0, 852.0, 941.0)
COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS: Final = ("123A", "456B", "789C", "*0#D")

_FREQUENCIES = np.array(ROWS + COLUMNS + tuple(2 * f for f in ROWS + COLUMNS))
_BASIS = np.exp(-2j * np.pi * np.outer(_FREQUENCIES, np.arange(BLOCK)) / SAMPLE_RATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorSettings:
    min_level: float = 150.0
    """Block RMS below this (about -47 dBm0) is silence."""
    peak_ratio: float = 6.0
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    min_tone_fraction: float = 0.65
    max_harmonic_ratio: float = 0.1
    min_blocks: int = 3
    release_blocks: int = 3


class InbandDetector:
    """Feed decoded 16-bit audio in any chunk sizes; get digits back."""

    def __init__(self, settings: DetectorSettings = DetectorSettings()) -> None:
        self.settings = settings
        self._pending = np.zeros(0)     # samples not yet covered by a whole block
        self._candidate: str | None = None
        self._run = 0                   # consecutive blocks holding _candidate
        self._reported: str | None = None
        self._quiet = 0                 # consecutive blocks without _reported

    def reset(self) -> None:
        """Forget the audio so far (the stream restarted)."""
        self._pending = np.zeros(0)
        self._candidate = self._reported = None
        self._run = self._quiet = 0

    def feed(self, linear: bytes, now: float) -> list[Digit]:
        samples = np.frombuffer(linear, dtype=np.int16).astype(np.float64)
        self._pending = np.concatenate((self._pending, samples))
        count = 0 if len(self._pending) < BLOCK else (len(self._pending) - BLOCK) // HOP + 1
        if count == 0:
            return []
        blocks = np.lib.stride_tricks.sliding_window_view(self._pending, BLOCK)[::HOP][:count]
        keys = classify(blocks, self.settings)
        self._pending = self._pending[count * HOP:]
        digits = []
        for key in keys:
            digit = self._step(key)
            if digit is not None:
                digits.append(Digit(digit=digit, source=DigitSource.INBAND, time=now))
        return digits

    def _step(self, key: str | None) -> str | None:
        s = self.settings
        if key is not None and key == self._candidate:
            self._run += 1
        else:
            self._candidate, self._run = key, 1 if key is not None else 0
        if key is None or key != self._reported:
            self._quiet += 1
            if self._quiet >= s.release_blocks:
                self._reported = None
        else:
            self._quiet = 0
        if key is not None and self._reported is None and self._run >= s.min_blocks:
            self._reported, self._quiet = key, 0
            return key
        return None


def classify(blocks: npt.NDArray[np.float64], settings: DetectorSettings = DetectorSettings()) -> list[str | None]:
    """The key each block (one per row of ``blocks``) holds, or None."""
    energy = np.sum(blocks * blocks, axis=1)
    # Power of a sinusoid in one bin is (A·N/2)²; its energy is A²·N/2: scale by 2/N to compare.
    power = np.abs(blocks @ _BASIS.T) ** 2 * (2.0 / BLOCK)
    rows, columns, harmonics = power[:, :4], power[:, 4:8], power[:, 8:]
    row, column = np.argmax(rows, axis=1), np.argmax(columns, axis=1)
    index = np.arange(len(blocks))
    row_power, column_power = rows[index, row], columns[index, column]
    others_row = np.sort(rows, axis=1)[:, -2]
    others_column = np.sort(columns, axis=1)[:, -2]
    twist_db = 10 * np.log10(np.maximum(row_power, 1e-9) / np.maximum(column_power, 1e-9))
    ok = (
        (energy / BLOCK > settings.min_level ** 2)
        & (row_power >= settings.peak_ratio * others_row)
        & (column_power >= settings.peak_ratio * others_column)
        & (twist_db <= settings.normal_twist_db)
        & (-twist_db <= settings.reverse_twist_db)
        & (row_power + column_power >= settings.min_tone_fraction * energy)
        & (harmonics[index, row] <= settings.max_harmonic_ratio * row_power)
        & (harmonics[index, 4 + column] <= settings.max_harmonic_ratio * column_power)
    )
    return [KEYS[r][c] if good else None for r, c, good in zip(row.tolist(), column.tolist(), ok.tolist())]


def dtmf_tone(key: str, seconds: float, *, level: float = 0.25, twist_db: float = 0.0) -> npt.NDArray[np.float64]:
    """A key's two tones (for tests and for sending in-band), as float
    samples at 8 kHz in -1..1; ``twist_db`` > 0 makes the row louder."""
    for r, line in enumerate(KEYS):
        if key in line:
            c = line.index(key)
            break
    else:
        raise ValueError(f"not a DTMF key: {key!r}")
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    row_level = level * 10 ** (twist_db / 40)
    column_level = level * 10 ** (-twist_db / 40)
    return np.asarray(row_level * np.sin(2 * np.pi * ROWS[r] * t) + column_level * np.sin(2 * np.pi * COLUMNS[c] * t))
