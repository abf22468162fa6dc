"""G.711 (PCMU/PCMA, RFC 3551 §4.5.14) through the standard library's
``audioop``: C loops, never per-sample Python.

``audioop`` is in the standard library up to Python 3.12; on 3.13 and later
the ``audioop-lts`` package provides the same module (pyproject pulls it in).
Linear audio everywhere in :mod:`pbx.media` is 16-bit signed native-endian
mono at 8 kHz (``bytes``), the form ``audioop`` works on.

G.722: the ``g722`` package on PyPI (libg722, bit-exact, with an 8 kHz
linear mode) would give it cheaply; not wired in yet, as prompts are 8 kHz
and every phone we test offers G.711.
"""

from __future__ import annotations

import enum
import sys
import warnings
from typing import Final

__all__ = ["FRAME_BYTES", "FRAME_MS", "FRAME_SAMPLES", "SAMPLE_RATE", "SAMPLE_WIDTH", "Codec", "audioop", "rms"]

if sys.version_info < (3, 13):
    with warnings.catch_warnings():
        # Deprecated in 3.11/3.12 only because it moves to audioop-lts.
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
else:  # pragma: no cover - exercised on 3.13+
    import audioop

SAMPLE_RATE: Final = 8000
SAMPLE_WIDTH: Final = 2
FRAME_MS: Final = 20
FRAME_SAMPLES: Final = SAMPLE_RATE * FRAME_MS // 1000   # 160
FRAME_BYTES: Final = FRAME_SAMPLES * SAMPLE_WIDTH       # 320 bytes of linear audio


class Codec(enum.Enum):
    """Codecs we send and receive; value = (static payload type, SDP name)."""

    PCMU = (0, "PCMU")
    PCMA = (8, "PCMA")

    @property
    def payload_type(self) -> int:
        return self.value[0]

    @property
    def encoding_name(self) -> str:
        return self.value[1]

    @property
    def silence(self) -> int:
        """The byte for silence: μ-law 0xFF is 0, A-law 0xD5 is ±8, its quietest."""
        return 0xFF if self is Codec.PCMU else 0xD5

    def encode(self, linear: bytes) -> bytes:
        """16-bit linear → one byte per sample."""
        if self is Codec.PCMU:
            return audioop.lin2ulaw(linear, SAMPLE_WIDTH)
        return audioop.lin2alaw(linear, SAMPLE_WIDTH)

    def decode(self, payload: bytes) -> bytes:
        """One byte per sample → 16-bit linear."""
        if self is Codec.PCMU:
            return audioop.ulaw2lin(payload, SAMPLE_WIDTH)
        return audioop.alaw2lin(payload, SAMPLE_WIDTH)

    @classmethod
    def by_payload_type(cls, payload_type: int) -> Codec | None:
        for codec in cls:
            if codec.payload_type == payload_type:
                return codec
        return None

    @classmethod
    def by_name(cls, name: str) -> Codec | None:
        for codec in cls:
            if codec.encoding_name.lower() == name.lower():
                return codec
        return None


def rms(linear: bytes) -> int:
    """Root mean square of 16-bit linear audio (0 for silence)."""
    return int(audioop.rms(linear, SAMPLE_WIDTH)) if linear else 0
