"""Call-progress tones per country, generated with numpy.

Frequencies and cadences as the countries report them for ITU-T E.180
(Supplement 2, "various tones used in national networks"); times in ms:

| country | ringback                 | busy                    | congestion              |
|---------|--------------------------|-------------------------|-------------------------|
| VN      | 425 Hz, 1000 on 4000 off | 425 Hz, 500 on 500 off  | 425 Hz, 250 on 250 off  |
| TW      | 440+480 Hz, 1000/2000    | 480+620 Hz, 500/500     | 480+620 Hz, 250/250     |
| CN      | 450 Hz, 1000/4000        | 450 Hz, 350/350         | 450 Hz, 700/700         |
| US      | 440+480 Hz, 2000/4000    | 480+620 Hz, 500/500     | 480+620 Hz, 250/250     |

A tone is one cadence cycle of linear audio, played in a loop by
:mod:`pbx.media.player`; a cycle lasts whole 20 ms frames, so the loop
never drifts against the packet clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import numpy as np

from pbx.media.codecs import FRAME_MS, SAMPLE_RATE
from pbx.media.audio_file import Audio

LEVEL: Final = 0.18
"""Peak of each frequency as a fraction of full scale (about -17 dBm0 per
component, within E.180's -10 to -20 dBm0 for a two-frequency tone)."""


class ToneKind(enum.Enum):
    RINGBACK = "ringback"
    BUSY = "busy"
    CONGESTION = "congestion"


@dataclass(frozen=True, slots=True, kw_only=True)
class ToneSpec:
    frequencies: tuple[float, ...]
    cadence: tuple[int, ...]
    """Milliseconds, alternately on and off, starting with on."""

    def __post_init__(self) -> None:
        if not self.frequencies or not self.cadence or len(self.cadence) % 2:
            raise ValueError("a tone needs frequencies and on/off pairs")
        if any(ms <= 0 for ms in self.cadence) or sum(self.cadence) % FRAME_MS:
            raise ValueError(f"cadence times must be positive and their cycle whole {FRAME_MS} ms frames")
        if any(not 0 < f < SAMPLE_RATE / 2 for f in self.frequencies):
            raise ValueError("tone frequencies must lie below 4 kHz")


_480_620 = (480.0, 620.0)
TONES: Final[dict[str, dict[ToneKind, ToneSpec]]] = {
    "VN": {
        ToneKind.RINGBACK: ToneSpec(frequencies=(425.0,), cadence=(1000, 4000)),
        ToneKind.BUSY: ToneSpec(frequencies=(425.0,), cadence=(500, 500)),
        ToneKind.CONGESTION: ToneSpec(frequencies=(425.0,), cadence=(250, 250)),
    },
    "TW": {
        ToneKind.RINGBACK: ToneSpec(frequencies=(440.0, 480.0), cadence=(1000, 2000)),
        ToneKind.BUSY: ToneSpec(frequencies=_480_620, cadence=(500, 500)),
        ToneKind.CONGESTION: ToneSpec(frequencies=_480_620, cadence=(250, 250)),
    },
    "CN": {
        ToneKind.RINGBACK: ToneSpec(frequencies=(450.0,), cadence=(1000, 4000)),
        ToneKind.BUSY: ToneSpec(frequencies=(450.0,), cadence=(350, 350)),
        ToneKind.CONGESTION: ToneSpec(frequencies=(450.0,), cadence=(700, 700)),
    },
    "US": {
        ToneKind.RINGBACK: ToneSpec(frequencies=(440.0, 480.0), cadence=(2000, 4000)),
        ToneKind.BUSY: ToneSpec(frequencies=_480_620, cadence=(500, 500)),
        ToneKind.CONGESTION: ToneSpec(frequencies=_480_620, cadence=(250, 250)),
    },
}


def tone_spec(country: str, kind: ToneKind) -> ToneSpec:
    """The tone for an ISO country code (VN, TW, CN, US); KeyError names what
    is known."""
    try:
        return TONES[country.upper()][kind]
    except KeyError:
        raise KeyError(f"no {kind.value} tone for {country!r}; known: {', '.join(sorted(TONES))}") from None


def render(spec: ToneSpec) -> Audio:
    """One cadence cycle of ``spec`` as 8 kHz linear audio."""
    pieces = []
    for index, ms in enumerate(spec.cadence):
        samples = SAMPLE_RATE * ms // 1000
        if index % 2:
            pieces.append(np.zeros(samples))
            continue
        t = np.arange(samples) / SAMPLE_RATE
        burst = sum(np.sin(2 * np.pi * f * t) for f in spec.frequencies) * LEVEL * 32767
        # 2 ms ramps at each end: a hard-switched sine clicks.
        ramp = min(16, samples // 2)
        envelope = np.ones(samples)
        envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
        envelope[samples - ramp:] = np.linspace(1.0, 0.0, ramp)
        pieces.append(burst * envelope)
    cycle = np.concatenate(pieces)
    return Audio(linear=np.rint(cycle).astype(np.int16).tobytes(), name=f"tone {spec.frequencies}")
